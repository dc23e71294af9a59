"""Probes against real loopback servers: success, captive portal, refusals."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from schoolmon.agent.config import Target
from schoolmon.agent.probes import Prober, boot_id, probe_cycle


class PortalServer:
    """A loopback HTTP server answering every GET with one scripted reply."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        reply = (status, body, headers)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_GET(self) -> None:
                status, body, headers = reply
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.server.serve_forever, args=(0.02,), daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def portal():
    servers = []

    def start(status: int, body: bytes = b"", headers: dict | None = None) -> str:
        server = PortalServer(status, body, headers or {})
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def outcome(checks) -> list[tuple]:
    return [(c.kind, c.ok, c.reason, c.detail.get("status_code")) for c in checks]


@pytest.fixture
def prober():
    session = requests.Session()
    session.trust_env = False
    yield Prober(session, timeout=3.0)
    session.close()


def test_healthy_collector_passes_all_three_checks(collector, prober):
    """DNS, TCP and the healthz body check all succeed against a live collector."""
    target = Target(
        "collector", f"{collector.url}/healthz", "collector", 200, "schoolmon"
    )

    checks = prober.check(target)

    assert outcome(checks) == [
        ("dns", True, None, None),
        ("tcp", True, None, None),
        ("https", True, None, 200),
    ]
    assert checks[0].detail == {"addresses": ["127.0.0.1"]}


def test_captive_portal_redirect_is_a_failure_with_its_status(portal, prober):
    """A 302 to a login page fails the check with 'unexpected status 302'."""
    url = portal(302, b"", {"Location": "http://portal.example/login"})

    checks = prober.check(Target("google", f"{url}/generate_204"))

    assert outcome(checks)[2] == ("https", False, "unexpected status 302", 302)
    assert checks[2].detail["location"] == "http://portal.example/login"


def test_html_page_where_json_expected_is_unexpected_body(portal, prober):
    """A 200 HTML page instead of the collector's JSON is 'unexpected body'."""
    url = portal(200, b"<html>Dang nhap Wi-Fi</html>", {"Content-Type": "text/html"})
    target = Target("collector", f"{url}/healthz", "collector", 200, "schoolmon")

    checks = prober.check(target)

    assert outcome(checks)[2] == ("https", False, "unexpected body", 200)
    assert checks[2].detail == {"status_code": 200, "content_type": "text/html"}


def test_closed_port_is_connection_refused(prober):
    """Nothing listening gives 'connection refused' for TCP and HTTP."""
    url = f"http://127.0.0.1:{closed_port()}/generate_204"

    assert outcome(prober.check(Target("local", url))) == [
        ("dns", True, None, None),
        ("tcp", False, "connection refused", None),
        ("https", False, "connection refused", None),
    ]


def test_tls_to_a_plain_server_is_a_tls_error(collector, prober):
    """Speaking TLS to a server that does not gives 'tls error'."""
    url = collector.url.replace("http://", "https://") + "/healthz"

    assert outcome(prober.check(Target("collector", url, "collector", 200)))[2] == (
        "https",
        False,
        "tls error",
        None,
    )


def test_unresolvable_name_is_dns_failure_and_skips_the_rest(prober):
    """A name that does not resolve fails DNS; TCP and HTTP are not attempted."""
    checks = prober.check(Target("nowhere", "https://schoolmon-test.invalid/"))

    assert outcome(checks) == [
        ("dns", False, "dns failure", None),
        ("tcp", False, "dns failure", None),
        ("https", False, "dns failure", None),
    ]
    assert [c.duration_seconds for c in checks[1:]] == [None, None]


def test_samples_carry_run_seq_cycle_clocks_and_boot(collector, prober, clocks):
    """Samples are stamped as design.md says, with consecutive seqs."""
    target = Target(
        "collector", f"{collector.url}/healthz", "collector", 200, "schoolmon"
    )
    seqs = iter([41])

    samples = probe_cycle(
        prober,
        [target],
        run="9f2c61d0",
        cycle=17,
        boot="5b1c",
        wall=clocks.wall,
        monotonic=clocks.monotonic,
        allocate_seq=lambda n: next(seqs),
    )

    for sample in samples:
        assert sample.pop("duration_seconds") >= 0
    assert [s.pop("detail") for s in samples][2] == {"status_code": 200}
    assert samples == [
        {
            "run": "9f2c61d0",
            "seq": 41 + i,
            "cycle": 17,
            "wall_time": "2026-12-03T01:06:40Z",
            "monotonic": 1000.0,
            "boot_id": "5b1c",
            "target": "collector",
            "scope": "collector",
            "kind": kind,
            "ok": True,
            "reason": None,
        }
        for i, kind in enumerate(("dns", "tcp", "https"))
    ]


def test_boot_id_is_the_kernel_one_on_linux():
    """On Linux the boot id is the kernel's random boot_id."""
    kernel = Path("/proc/sys/kernel/random/boot_id").read_text("ascii").strip()

    assert boot_id() == kernel
