"""Emulated school links: network namespaces, veth pairs, ``tc`` shaping.

Topology (``sfx`` is a random suffix; every name starts with ``smt``)::

    school ns  smt{sfx}a 10.231.N.2/30 ── smt{sfx}b 10.231.N.1/30  link ns
    link ns    smt{sfx}c 10.231.N.5/30 ── smt{sfx}d 10.231.N.6/30  collector ns

The school side of the link is shaped with ``tbf`` on the egress of both veth ends
(``a`` for the school's upload, ``b`` for its download), identically, so the link is
symmetric. Added delay: this kernel has no ``sch_netem``, so when ``delay_ms`` is set
the link namespace routes both directions through a TUN delay line
(``tests.netlab.delayline``) that holds each packet ``delay_ms / 2``; a round trip
gains ``delay_ms``. Only the 10.231.x.y test hosts are ever addressed.

``EmulatedLink`` is a context manager; leaving it (also on failure) kills every
process it started and deletes the namespaces, which removes their devices.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.support.waiting import wait_until

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LinkSpec:
    """A school link: rate in Mbit/s both ways and round-trip delay added in ms."""

    rate_mbit: float
    delay_ms: float = 0.0

    def tbf(self) -> list[str]:
        """The ``tbf`` arguments: the rate, 5 ms of burst (at least 32 KiB), and a
        queue of 50 ms plus the delay so TCP can keep the link busy."""
        burst = max(32 * 1024, int(self.rate_mbit * 1e6 / 8 * 0.005))
        latency = int(50 + self.delay_ms)
        return ["rate", f"{self.rate_mbit:g}mbit", "burst", str(burst)] + [
            "latency",
            f"{latency}ms",
        ]


@cache
def unavailable_reason() -> str | None:
    """Why emulated links cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "emulated links need root (ip netns, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"emulated links need the '{tool}' command (iproute2)"
    probe = f"smt{secrets.token_hex(3)}p"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.decode().strip()}"
    try:
        return _probe_qdiscs(probe)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _probe_qdiscs(ns: str) -> str | None:
    pair = ["link", "add", "smtq0", "type", "veth", "peer", "name", "smtq1"]
    subprocess.run(["ip", "-n", ns, *pair], capture_output=True)
    tbf = ["tc", "-n", ns, "qdisc", "add", "dev", "smtq0", "root"]
    shaped = subprocess.run(tbf + ["tbf", *LinkSpec(20).tbf()], capture_output=True)
    if shaped.returncode != 0:
        return f"the kernel has no tbf qdisc: {shaped.stderr.decode().strip()}"
    if not Path("/dev/net/tun").exists():
        return "no /dev/net/tun for the delay line"
    return None


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def _ip(ns: str, *args: str) -> str:
    return _run("ip", "-n", ns, *args)


def _tc(ns: str, *args: str) -> str:
    return _run("tc", "-n", ns, *args)


class EmulatedLink:
    """School, link and collector namespaces joined by a shaped link."""

    def __init__(self, spec: LinkSpec) -> None:
        self.spec = spec
        suffix = secrets.token_hex(3)
        self.name = f"smt{suffix}"
        self.school_ns, self.link_ns = f"{self.name}s", f"{self.name}l"
        self.collector_ns = f"{self.name}c"
        net = f"10.231.{secrets.randbelow(256)}"
        self.school_ip, self.link_school_ip = f"{net}.2", f"{net}.1"
        self.link_collector_ip, self.collector_ip = f"{net}.5", f"{net}.6"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.processes: list[subprocess.Popen] = []

    def dev(self, end: str) -> str:
        return f"{self.name}{end}"

    def __enter__(self) -> EmulatedLink:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _build(self) -> None:
        for ns in (self.school_ns, self.link_ns, self.collector_ns):
            _run("ip", "netns", "add", ns)
            _ip(ns, "link", "set", "lo", "up")
        self._pair(self.school_ns, "a", self.school_ip, "b", self.link_school_ip)
        self._pair(
            self.collector_ns, "d", self.collector_ip, "c", self.link_collector_ip
        )
        _ip(self.school_ns, "route", "add", "default", "via", self.link_school_ip)
        _ip(self.collector_ns, "route", "add", "default", "via", self.link_collector_ip)
        _run(
            "ip",
            "netns",
            "exec",
            self.link_ns,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        )

        for ns, end in ((self.school_ns, "a"), (self.link_ns, "b")):
            _tc(
                ns,
                "qdisc",
                "add",
                "dev",
                self.dev(end),
                "root",
                "tbf",
                *self.spec.tbf(),
            )
        if self.spec.delay_ms > 0:
            self._delay_line()
        logger.info("emulated link %s up: %s", self.name, self.spec)

    def _pair(self, ns: str, end: str, ip: str, link_end: str, link_ip: str) -> None:
        peer = ["peer", "name", self.dev(link_end), "netns", self.link_ns]
        _run("ip", "link", "add", self.dev(end), "netns", ns, "type", "veth", *peer)
        _ip(ns, "addr", "add", f"{ip}/30", "dev", self.dev(end))
        _ip(self.link_ns, "addr", "add", f"{link_ip}/30", "dev", self.dev(link_end))
        _ip(ns, "link", "set", self.dev(end), "up")
        _ip(self.link_ns, "link", "set", self.dev(link_end), "up")

    def _delay_line(self) -> None:
        tun_in, tun_out = self.dev("t"), self.dev("u")
        for tun in (tun_in, tun_out):
            _ip(self.link_ns, "tuntap", "add", "dev", tun, "mode", "tun")
            _ip(self.link_ns, "link", "set", tun, "up")
        ready = self.workdir / "delayline.ready"
        one_way = f"{self.spec.delay_ms / 2:g}"
        tuns = ["--input", tun_in, "--output", tun_out]
        self.spawn(self.link_ns, "tests.netlab.delayline", *tuns, "--delay-ms", one_way,
                   "--ready", str(ready))  # fmt: skip
        self.wait_ready(ready, "delay line")
        _ip(self.link_ns, "route", "add", "default", "dev", tun_in, "table", "100")
        for inbound in (self.dev("b"), self.dev("c")):
            _ip(self.link_ns, "rule", "add", "iif", inbound, "lookup", "100")

    def spawn(self, ns: str, module: str, *args: str, env: dict | None = None):
        """Start ``python -m module args`` inside namespace ``ns``; it dies with us."""
        command = ["ip", "netns", "exec", ns, sys.executable, "-m", module, *args]
        environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        log = open(self.workdir / f"{module.rsplit('.', 1)[-1]}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.processes.append(process)
        return process

    def wait_ready(self, ready: Path, what: str, timeout: float = 20.0) -> None:
        """Wait for a spawned process to write its ready file."""
        wait_until(
            lambda: ready.exists() or any(p.poll() is not None for p in self.processes),
            timeout=timeout,
            message=f"{what} did not start in {self.name}",
        )
        if not ready.exists():
            raise RuntimeError(f"{what} exited early: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
            for log in sorted(self.workdir.glob("*.log"))
        )

    def qdiscs(self) -> dict[str, list[dict]]:
        """The qdiscs on both ends of the school's veth pair, as ``tc -j`` says."""
        return {
            "school_egress": self._qdisc(self.school_ns, self.dev("a")),
            "link_egress": self._qdisc(self.link_ns, self.dev("b")),
        }

    def _qdisc(self, ns: str, dev: str) -> list[dict]:
        shown = json.loads(_run("tc", "-n", ns, "-j", "qdisc", "show", "dev", dev))
        return [{"kind": q["kind"], "options": q.get("options", {})} for q in shown]

    def close(self) -> None:
        """Stop our processes and delete our namespaces; safe to call twice."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        self.processes.clear()
        for ns in (self.school_ns, self.link_ns, self.collector_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        logger.info("emulated link %s torn down", self.name)
