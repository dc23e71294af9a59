"""Shared parts of the agent tests: a scripted collector on loopback, clocks, paths."""

from __future__ import annotations

import gzip
import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

Reply = tuple[int, dict[str, str], bytes]


class StubCollector:
    """A small real HTTP server speaking the collector's wire format (design.md).

    By default it stores reports and answers 200 with accepted/duplicates counted on
    ``(run, seq)``. ``script`` holds replies used first, one per report; ``rule``
    may return a reply for a given report (a 413 above a size, a 422 for an item).
    """

    def __init__(self, port: int = 0) -> None:
        self.script: deque[Reply | str] = deque()
        self.rule: Callable[[dict, bytes], Reply | None] | None = None
        self.instructions: deque[list[dict]] = deque()
        self.reports: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.raw_bodies: list[bytes] = []
        self.seen: set[tuple[str, int]] = set()
        self.stored: list[tuple[str, dict]] = []
        self.enrollments: list[dict] = []
        self.enroll_reply: Reply | None = None
        self.health_body = b'{"status": "ok", "service": "schoolmon"}'
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def stored_probes(self) -> list[dict]:
        """Every probe sample stored once, in arrival order."""
        return [item for kind, item in self.stored if kind == "probes"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._reply(
                        (
                            200,
                            {"Content-Type": "application/json"},
                            collector.health_body,
                        )
                    )
                else:
                    self._reply((404, {}, b'{"error": "not_found", "message": "no"}'))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                body = (
                    gzip.decompress(raw)
                    if self.headers.get("Content-Encoding") == "gzip"
                    else raw
                )
                if self.path == "/api/v1/enroll":
                    self._reply(collector._enroll(json.loads(body)))
                    return
                collector.headers.append(dict(self.headers))
                collector.raw_bodies.append(raw)
                reply = collector._report(json.loads(body), body)
                if reply is None:
                    self.close_connection = True
                    return
                self._reply(reply)

            def _reply(self, reply: Reply) -> None:
                status, headers, payload = reply
                self.send_response(status)
                for key, value in {
                    "Content-Type": "application/json",
                    **headers,
                }.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _enroll(self, payload: dict) -> Reply:
        self.enrollments.append(payload)
        if self.enroll_reply is not None:
            return self.enroll_reply
        answer = {
            "device_id": f"d_{len(self.enrollments):04d}",
            "credential": f"secret-{len(self.enrollments)}",
            "school": "C01",
            "role": "lab",
            "report_interval_seconds": 300,
        }
        return 201, {}, json.dumps(answer).encode()

    def _report(self, report: dict, body: bytes) -> Reply | None:
        if self.script:
            scripted = self.script.popleft()
            if scripted == "store-then-drop":
                self._accept(report)
                return None
            if scripted != "accept":
                return scripted
        if self.rule is not None:
            ruled = self.rule(report, body)
            if ruled is not None:
                return ruled
        return self._accept(report)

    def _accept(self, report: dict) -> Reply:
        accepted = {"probes": 0, "speedtests": 0, "inventory": 0}
        duplicates = {"probes": 0, "speedtests": 0, "inventory": 0}
        for kind in ("probes", "speedtests"):
            for item in report[kind]:
                key = (item["run"], item["seq"])
                fresh = key not in self.seen
                self.seen.add(key)
                if fresh:
                    self.stored.append((kind, item))
                (accepted if fresh else duplicates)[kind] += 1
        accepted["inventory"] = int(report["inventory"] is not None)
        self.reports.append(report)
        answer = {
            "device_id": "d_0001",
            "accepted": accepted,
            "duplicates": duplicates,
            "next_report_in_seconds": 287,
            "instructions": self.instructions.popleft() if self.instructions else [],
        }
        return 200, {}, json.dumps(answer).encode()


@pytest.fixture
def collector():
    """A scripted collector on a free loopback port, stopped after the test."""
    stub = StubCollector()
    yield stub
    stub.stop()


class FakeClocks:
    """Wall and monotonic clocks that move only when told, and a recording sleep."""

    def __init__(
        self, wall: float = 1_796_260_000.0, monotonic: float = 1000.0
    ) -> None:
        self.now = wall
        self.mono = monotonic
        self.slept: list[float] = []

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


@pytest.fixture
def clocks() -> FakeClocks:
    return FakeClocks()
