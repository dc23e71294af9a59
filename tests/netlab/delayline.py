"""A packet delay line between two TUN devices, for kernels without ``sch_netem``.

Every IP packet the kernel routes into ``--input`` is written back into
``--output`` ``--delay-ms`` later, in order. The link namespace routes both
directions of the school link through it, so each direction gets the delay and a
round trip gets twice ``--delay-ms``.

``python -m tests.netlab.delayline --input T --output U --delay-ms D --ready FILE``
(inside the link namespace; the devices exist already, made by ``ip tuntap``).
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import os
import struct
import threading
import time
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    """Attach to the TUN device ``name``; return its file descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class DelayLine:
    """Reads packets from one descriptor, writes them to another ``delay`` later."""

    def __init__(self, source: int, sink: int, delay: float) -> None:
        self.source, self.sink, self.delay = source, sink, delay
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.ready = threading.Condition()

    def read_forever(self) -> None:
        while True:
            packet = os.read(self.source, 65535)
            with self.ready:
                self.queue.append((time.monotonic() + self.delay, packet))
                self.ready.notify()

    def write_forever(self) -> None:
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait()
                due, packet = self.queue.popleft()
            time.sleep(max(0.0, due - time.monotonic()))
            os.write(self.sink, packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()

    line = DelayLine(open_tun(args.input), open_tun(args.output), args.delay_ms / 1e3)
    reader = threading.Thread(target=line.read_forever, daemon=True)
    reader.start()
    args.ready.write_text("attached", encoding="utf-8")
    line.write_forever()


if __name__ == "__main__":
    main()
