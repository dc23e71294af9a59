"""A local stand-in for speedtest.net that the real speedtest-cli code talks to.

One threaded HTTP server plays three parts:

- an HTTP proxy (speedtest-cli's urllib honours ``http_proxy``/``https_proxy``):
  absolute-URI requests and ``CONNECT`` tunnels arrive here; a tunnel to
  www.speedtest.net is answered with TLS under a test CA's certificate, so the
  library's default ``secure=True`` path runs when the client trusts that CA
  (``SSL_CERT_FILE``);
- www.speedtest.net / c.speedtest.net: ``speedtest-config.php`` and the server
  lists;
- the test servers: ``/srv{id}/speedtest/latency.txt``, ``random{N}x{N}.jpg`` and
  ``upload.php``. A server in state ``unreachable`` is listed at a port where nothing
  listens (the proxy answers 502 for it, as a proxy whose upstream is gone does);
  one in state ``broken`` answers latency but fails every transfer.

Switches for failure modes: ``config_status`` (e.g. 403), ``servers_status`` (e.g.
429). ``requests`` logs ``(method, host, path)`` of everything asked.

``python -m tests.netlab.fake_speedtest_net --host H --port P --ready FILE`` runs it
as a process (inside a network namespace for the emulated links).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

SPEEDTEST_HOSTS = {"www.speedtest.net", "c.speedtest.net"}
_BLOCK = os.urandom(256 * 1024)


@dataclass
class FakeServer:
    """One test server in the list."""

    id: int
    name: str = "Hanoi"
    sponsor: str = "VNPT"
    lat: float = 21.0285
    lon: float = 105.8542
    state: str = "ok"  # ok | unreachable | broken
    latency_delay: float = 0.0  # seconds added before answering latency.txt


@dataclass
class FakeConfig:
    """The speedtest-config.php figures the library reads."""

    testlength: int = 1
    threadcount: int = 1  # download threads = 2 x threadcount
    threadsperurl: int = 1
    upload_threads: int = 2
    upload_ratio: int = 5  # upload sizes 512 KiB, 1 MiB, 7 MiB
    upload_maxchunkcount: int = 3
    image_scale: float = 0.01  # bytes of randomNxN.jpg = 2 * N * N * scale


class FakeSpeedtestNet:
    """The stand-in server; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        servers: list[FakeServer] | None = None,
        config: FakeConfig | None = None,
        tls: tuple[Path, Path] | None = None,
        client_ip: str = "203.113.0.10",
    ) -> None:
        self.servers = servers if servers is not None else [FakeServer(1001)]
        self.config = config or FakeConfig()
        self.client_ip = client_ip
        self.config_status = 200
        self.servers_status = 200
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._tls = self._tls_context(tls)
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self
        self.host, self.port = self._httpd.server_address[:2]
        self._dead_port = _closed_port(host)
        self._thread: threading.Thread | None = None

    @staticmethod
    def _tls_context(tls: tuple[Path, Path] | None) -> ssl.SSLContext | None:
        if tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        return context

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.address}"

    def proxy_env(self) -> dict[str, str]:
        """Environment variables that route speedtest-cli through the stand-in."""
        return {"http_proxy": self.proxy_url, "https_proxy": self.proxy_url}

    def server_address(self, server: FakeServer) -> str:
        if server.state == "unreachable":
            return f"{self.host}:{self._dead_port}"
        return self.address

    def start(self) -> FakeSpeedtestNet:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="fake-speedtest", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeSpeedtestNet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self, method: str, host: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, host, path))

    def paths(self) -> list[str]:
        with self._lock:
            return [path for _, _, path in self.requests]

    def image_bytes(self, side: int) -> int:
        return max(1, int(2 * side * side * self.config.image_scale))

    def config_xml(self) -> bytes:
        c = self.config
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<settings>\n'
            f'<client ip="{self.client_ip}" lat="21.0285" lon="105.8542" '
            'isp="VNPT" isprating="3.7" rating="0" ispdlavg="0" ispulavg="0" '
            'loggedin="0" country="VN" />\n'
            f'<server-config threadcount="{c.threadcount}" ignoreids="" '
            'notonmap="" forcepingid="" preferredserverid="" />\n'
            f'<download testlength="{c.testlength}" initialtest="250K" '
            f'mintestsize="250K" threadsperurl="{c.threadsperurl}" />\n'
            f'<upload testlength="{c.testlength}" ratio="{c.upload_ratio}" '
            f'initialtest="0" mintestsize="32K" threads="{c.upload_threads}" '
            f'maxchunksize="512K" maxchunkcount="{c.upload_maxchunkcount}" '
            'threadsperurl="4" />\n</settings>\n'
        ).encode()

    def servers_xml(self) -> bytes:
        rows = []
        for s in self.servers:
            address = self.server_address(s)
            rows.append(
                f'<server url="http://{address}/srv{s.id}/speedtest/upload.php" '
                f'lat="{s.lat}" lon="{s.lon}" name="{s.name}" country="Vietnam" '
                f'cc="VN" sponsor="{s.sponsor}" id="{s.id}" host="{address}" />'
            )
        head = '<?xml version="1.0" encoding="UTF-8"?>\n<settings>\n<servers>\n'
        return (head + "\n".join(rows) + "\n</servers>\n</settings>\n").encode()

    def server_by_path(self, path: str) -> FakeServer | None:
        prefix = path.split("/")[1] if path.count("/") >= 2 else ""
        return next((s for s in self.servers if prefix == f"srv{s.id}"), None)

    def is_dead_address(self, host: str) -> bool:
        return host == f"{self.host}:{self._dead_port}"


def _closed_port(host: str) -> int:
    """A port on ``host`` that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-speedtest/1"

    @property
    def fake(self) -> FakeSpeedtestNet:
        return self.server.fake

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        logger.debug("fake speedtest: %s %s", format, args)

    def _target(self) -> tuple[str, str]:
        if self.path.startswith(("http://", "https://")):
            parts = urlsplit(self.path)
            return parts.netloc, parts.path
        return self.headers.get("Host", ""), urlsplit(self.path).path

    def do_CONNECT(self) -> None:  # noqa: N802 - http.server's naming
        self.fake.log("CONNECT", self.path, "")
        host = self.path.rsplit(":", 1)[0]
        if self.fake._tls is None or host not in SPEEDTEST_HOSTS:
            self._answer(502, b"no tunnel to " + self.path.encode())
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.connection = self.fake._tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb", -1)
        self.wfile = self.connection.makefile("wb", 0)
        self.close_connection = False  # urllib tunnels with HTTP/1.0

    def do_GET(self) -> None:  # noqa: N802
        host, path = self._target()
        self.fake.log("GET", host, path)
        if self.fake.is_dead_address(host):
            self._answer(502, b"upstream refused the connection")
        elif path == "/speedtest-config.php":
            self._answer(self.fake.config_status, self.fake.config_xml(), "text/xml")
        elif path in ("/speedtest-servers-static.php", "/speedtest-servers.php"):
            self._answer(self.fake.servers_status, self.fake.servers_xml(), "text/xml")
        else:
            self._test_server_get(path)

    def _test_server_get(self, path: str) -> None:
        server = self.fake.server_by_path(path)
        name = path.rsplit("/", 1)[-1]
        if server is None:
            self._answer(404, b"not found")
        elif name == "latency.txt":
            time.sleep(server.latency_delay)
            self._answer(200, b"test=test\n", "text/plain")
        elif server.state == "broken":
            self._answer(503, b"broken test server")
        elif name.startswith("random") and name.endswith(".jpg"):
            side = int(name[len("random") :].split("x", 1)[0])
            self._send_random(self.fake.image_bytes(side))
        else:
            self._answer(404, b"not found")

    def do_POST(self) -> None:  # noqa: N802
        host, path = self._target()
        self.fake.log("POST", host, path)
        length = int(self.headers.get("Content-Length", "0"))
        received = self._drain(length)
        server = self.fake.server_by_path(path)
        if self.fake.is_dead_address(host):
            self._answer(502, b"upstream refused the connection")
        elif server is None or server.state == "broken":
            self._answer(503, b"broken test server")
        elif received == length:
            self._answer(200, f"size={received}".encode(), "text/plain")

    def _drain(self, length: int) -> int:
        received = 0
        try:
            while received < length:
                chunk = self.rfile.read(min(65536, length - received))
                if not chunk:
                    break
                received += len(chunk)
        except OSError:
            # speedtest-cli abandons an upload mid-body when its test time is up.
            self.close_connection = True
        if received < length:
            self.close_connection = True
        return received

    def _send_random(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        view, sent = memoryview(_BLOCK), 0
        try:
            while sent < size:
                piece = view[: min(len(view), size - sent)]
                self.wfile.write(piece)
                sent += len(piece)
        except OSError:
            # The library stops reading when its test time is up.
            self.close_connection = True

    def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


def main() -> None:
    """Serve the stand-in until killed; write ``--ready`` once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--testlength", type=int, default=10)
    parser.add_argument("--threadcount", type=int, default=4)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    args = parser.parse_args()

    config = FakeConfig(
        testlength=args.testlength,
        threadcount=args.threadcount,
        threadsperurl=4,
        upload_threads=2,
        upload_maxchunkcount=50,
        image_scale=1.0,
    )
    tls = (args.cert, args.key) if args.cert else None
    fake = FakeSpeedtestNet(args.host, args.port, config=config, tls=tls)
    fake.start()
    args.ready.write_text(json.dumps({"address": fake.address}), encoding="utf-8")
    threading.Event().wait()


if __name__ == "__main__":
    main()
