"""Connectivity probes: DNS, TCP connect and an HTTP(S) request per target.

Each check gives one probe sample (design.md). An answer that is not the expected
one (a captive portal's redirect, a wrong status, an HTML page where the collector's
JSON was expected) is a failure with a reason, never a success.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from schoolmon.agent._requests import requests
from schoolmon.agent.config import Target
from schoolmon.agent.inventory import iso_utc

logger = logging.getLogger(__name__)

BODY_LIMIT = 65536
Resolver = Callable[..., list]


@dataclass(frozen=True)
class Check:
    """The outcome of one check before it is stamped into a sample."""

    kind: str
    ok: bool
    duration_seconds: float | None
    reason: str | None
    detail: dict[str, Any]


def boot_id() -> str:
    """An id of the current boot: the kernel's on Linux, derived from boot time else."""
    path = Path("/proc/sys/kernel/random/boot_id")
    if sys.platform.startswith("linux") and path.exists():
        return path.read_text(encoding="ascii").strip()
    import psutil  # only here: a cycle on Linux does without it

    seed = f"{socket.gethostname()}|{round(psutil.boot_time())}"
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


class Prober:
    """Runs the three checks of a target with one ``requests.Session``."""

    def __init__(
        self,
        session: requests.Session,
        timeout: float = 10.0,
        resolver: Resolver = socket.getaddrinfo,
    ) -> None:
        self.session = session
        self.timeout = timeout
        self._resolve = resolver

    def check(self, target: Target) -> list[Check]:
        """DNS, TCP and HTTP checks of one target, in that order."""
        parts = urlsplit(target.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        dns, addresses = self._dns(parts.hostname or "", port)
        if not dns.ok:
            skipped = {"skipped": True}
            return [dns] + [
                Check(k, False, None, "dns failure", skipped) for k in ("tcp", "https")
            ]
        return [dns, self._tcp(addresses[0]), self._http(target)]

    def _dns(self, host: str, port: int) -> tuple[Check, list]:
        started = time.perf_counter()
        try:
            found = self._resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            detail = {"error": str(exc)}
            return Check("dns", False, _since(started), "dns failure", detail), []
        addresses = [entry[4][0] for entry in found]
        detail = {"addresses": sorted(set(addresses))}
        return Check("dns", True, _since(started), None, detail), found

    def _tcp(self, address: tuple) -> Check:
        family, kind, proto, _, sockaddr = address
        started = time.perf_counter()
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(self.timeout)
                sock.connect(sockaddr)
        except OSError as exc:
            detail = {"address": sockaddr[0], "error": str(exc)}
            return Check("tcp", False, _since(started), _socket_reason(exc), detail)
        return Check("tcp", True, _since(started), None, {"address": sockaddr[0]})

    def _http(self, target: Target) -> Check:
        started = time.perf_counter()
        try:
            response = self.session.get(
                target.url,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
                headers={"Cache-Control": "no-cache"},
            )
            body = _read_body(response)
        except requests.RequestException as exc:
            reason = request_reason(exc)
            return Check("https", False, _since(started), reason, {"error": str(exc)})
        return _judge(target, response, body, _since(started))


def _read_body(response: requests.Response) -> str:
    try:
        chunk = next(response.iter_content(BODY_LIMIT), b"")
    finally:
        response.close()
    return chunk.decode(response.encoding or "utf-8", errors="replace")


def _judge(
    target: Target, response: requests.Response, body: str, duration: float
) -> Check:
    detail: dict[str, Any] = {"status_code": response.status_code}
    if response.status_code != target.expect_status:
        location = response.headers.get("Location")
        if location:
            detail["location"] = location
        reason = f"unexpected status {response.status_code}"
        return Check("https", False, duration, reason, detail)
    if target.expect_body_contains and target.expect_body_contains not in body:
        detail["content_type"] = response.headers.get("Content-Type")
        return Check("https", False, duration, "unexpected body", detail)
    return Check("https", True, duration, None, detail)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 6)


def _socket_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if exc.errno in (101, 113, 10051, 10065):
        return "network unreachable"
    return "connection failed"


def request_reason(exc: requests.RequestException) -> str:
    """A short reason for a failed request: tls error, timeout, connection ..."""
    if isinstance(exc, requests.exceptions.SSLError) or _caused_by(exc, ssl.SSLError):
        return "tls error"
    if isinstance(exc, requests.Timeout) or _caused_by(exc, TimeoutError):
        return "timeout"
    if _caused_by(exc, ConnectionRefusedError):
        return "connection refused"
    return "connection failed"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        inner = current.args[0] if current.args else None
        nested = getattr(inner, "reason", None) if inner is not None else None
        current = current.__cause__ or current.__context__ or nested
    return False


def probe_cycle(
    prober: Prober,
    targets: list[Target],
    *,
    run: str,
    cycle: int,
    boot: str,
    wall: Callable[[], float],
    monotonic: Callable[[], float],
    allocate_seq: Callable[[int], int],
) -> list[dict[str, Any]]:
    """Probe every target; return the stamped samples in order.

    A target's samples carry the moment its checks began: a cycle that times out on
    a cut link observed the cut when it started, not when the timeouts ran out.
    """
    samples = []
    for target in targets:
        began = (wall(), monotonic())
        for check in prober.check(target):
            samples.append(_sample(target, check, run, cycle, boot, began))
    first = allocate_seq(len(samples)) if samples else 0
    for offset, sample in enumerate(samples):
        sample["seq"] = first + offset
    failed = [
        f"{s['target']}/{s['kind']}: {s['reason']}" for s in samples if not s["ok"]
    ]
    logger.debug(
        "cycle %d probes: %d samples, failures %s", cycle, len(samples), failed
    )
    return samples


def _sample(
    target: Target,
    check: Check,
    run: str,
    cycle: int,
    boot: str,
    began: tuple[float, float],
) -> dict[str, Any]:
    wall, monotonic = began
    return {
        "run": run,
        "seq": None,
        "cycle": cycle,
        "wall_time": iso_utc(wall),
        "monotonic": round(monotonic, 6),
        "boot_id": boot,
        "target": target.name,
        "scope": target.scope,
        "kind": check.kind,
        "ok": check.ok,
        "duration_seconds": check.duration_seconds,
        "reason": check.reason,
        "detail": check.detail,
    }
