"""Speed tests: speedtest.net through speedtest-cli, or the school-to-collector path.

``run_speedtest`` returns one speed-test dict as design.md "Speed test" describes. It
fills everything it measured and leaves ``run``, ``seq``, ``monotonic`` and
``boot_id`` as ``None`` for the caller (the service owns those counters).

A failed test is ``ok: False`` with a reason from ``REASONS`` and null figures; it is
never a measurement of zero. ``bytes_used`` is always the bytes the test moved (the
library's own count for speedtest-net, payload bytes for the collector backend), so a
failed test still says what it cost the school's link.

Configuration keys (all optional unless said otherwise):

- both: ``timeout_seconds`` (socket timeout, 10), ``state_dir`` (backoff state file,
  speedtest-net only; without it there is no backoff between calls)
- speedtest-net: ``secure`` (HTTPS to www.speedtest.net, True), ``deadline_seconds``
  (150), ``max_attempts`` (servers tried per call, 2), ``server_list_limit`` (3),
  ``test_length_seconds`` (cap on the service's test length, None),
  ``backoff_base_seconds`` (600), ``backoff_max_seconds`` (21600)
- collector: ``server_url`` (required, the collector's base URL), ``credential``
  (Bearer credential), ``streams`` (4), ``duration_seconds`` (8), ``warmup_seconds``
  (1), ``latency_samples`` (10), ``request_bytes`` (64 MiB per download request),
  ``upload_request_bytes`` (8 MiB per upload POST, well under the collector's
  limit), ``budget_bytes`` (256 MiB per direction: the window closes early once
  spent, so a fast link or loopback moves no more)

A failed collector test also carries ``message``, naming what failed (for example
``upload refused with HTTP 413: ...``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from schoolmon.agent._requests import requests
from schoolmon.agent.probes import request_reason

logger = logging.getLogger(__name__)

BACKENDS = ("speedtest-net", "collector")
REASONS = (
    "server unreachable",
    "test service refused",
    "rate limited",
    "timeout",
    "no console",
    "error",
)
# speedtest-cli scores a server that never answered its latency probe as 3600 s per
# try averaged over 6, i.e. 1,800,000 ms: that is "no answer", not a latency.
LATENCY_SENTINEL_SECONDS = 1800.0
STATE_FILE = "speedtest-net.json"
SKIPPED_FLAG = "skipped_backoff"

_FIGURES = (
    "server",
    "download_bytes_per_second",
    "upload_bytes_per_second",
    "latency_seconds",
    "jitter_seconds",
    "streams",
)
_REFUSAL_REASONS = {401: "test service refused", 403: "test service refused"}
_REFUSAL_REASONS[429] = "rate limited"
_library: Any = None


def run_speedtest(
    backend: str,
    config: dict | None = None,
    *,
    session: requests.Session | None = None,
    clock: Callable[[], float] | None = None,
) -> dict:
    """Run one speed test with ``backend`` and return the speed-test dict.

    ``clock`` gives the wall time in seconds since the epoch (default ``time.time``);
    it stamps ``started_at`` and decides backoff expiry. Durations and rates are
    measured with the real monotonic clock.
    """
    config = dict(config or {})
    clock = clock or time.time
    if backend == "speedtest-net":
        return _run_speedtest_net(config, clock)
    if backend == "collector":
        return _run_collector(config, session or requests.Session(), clock)
    raise ValueError(
        f"unknown speed-test backend {backend!r}; accepted: {', '.join(BACKENDS)}"
    )


# Result dicts ------------------------------------------------------------------


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _blank_result(backend: str, tool: str, version: str | None, started: float) -> dict:
    result = {"run": None, "seq": None, "wall_time": _iso(started)}
    result.update({"monotonic": None, "boot_id": None, "ok": False, "reason": None})
    result.update({"backend": backend, "tool": tool, "tool_version": version})
    result.update(dict.fromkeys(_FIGURES))
    result.update({"bytes_used": 0, "started_at": _iso(started)})
    result.update({"duration_seconds": 0.0, "flags": []})
    return result


def _fail(result: dict, reason: str, message: str | None = None) -> dict:
    """Turn ``result`` into a failed test: a reason and no figures, never zeros.

    ``message`` says what happened in words (the reason list is closed).
    """
    result.update(dict.fromkeys(_FIGURES))
    result.update({"ok": False, "reason": reason})
    if message is not None:
        result["message"] = message
    logger.info(
        "speed test (%s) failed: %s (%s)", result["backend"], reason, message or "-"
    )
    return result


def _finish(result: dict, began: float) -> dict:
    result["duration_seconds"] = round(time.perf_counter() - began, 3)
    return result


# speedtest.net through speedtest-cli --------------------------------------------


class _NullStream(io.TextIOBase):
    """A text stream that drops what it is given and has no file descriptor."""

    def write(self, text: str) -> int:
        return len(text)


@contextlib.contextmanager
def _console_guard(always: bool) -> Iterator[None]:
    """Stand a null stream in for sys.stdout/sys.stderr while the library runs.

    speedtest-cli wraps ``sys.stdout.fileno()`` at import time, which raises when a
    Windows service or windowless executable has no console (``sys.stdout`` is None).
    At import the null stream always stands in, so the library never writes to our
    standard output; during a run only a missing stream is replaced.
    """
    null = _NullStream()
    saved = sys.stdout, sys.stderr
    if always or sys.stdout is None:
        sys.stdout = null
    if always or sys.stderr is None:
        sys.stderr = null
    try:
        yield
    finally:
        if sys.stdout is null:
            sys.stdout = saved[0]
        if sys.stderr is null:
            sys.stderr = saved[1]


def _import_speedtest() -> Any:
    global _library
    if _library is None:
        with _console_guard(always=True):
            _library = importlib.import_module("speedtest")
    return _library


@dataclass
class _NetSettings:
    secure: bool = True
    timeout: float = 10.0
    deadline: float = 150.0
    max_attempts: int = 2
    server_list_limit: int = 3
    test_length: float | None = None
    backoff_base: float = 600.0
    backoff_max: float = 21600.0
    state_dir: Path | None = None

    @classmethod
    def from_config(cls, config: dict) -> _NetSettings:
        state_dir = config.get("state_dir")
        return cls(
            secure=bool(config.get("secure", True)),
            timeout=float(config.get("timeout_seconds", 10.0)),
            deadline=float(config.get("deadline_seconds", 150.0)),
            max_attempts=int(config.get("max_attempts", 2)),
            server_list_limit=int(config.get("server_list_limit", 3)),
            test_length=config.get("test_length_seconds"),
            backoff_base=float(config.get("backoff_base_seconds", 600.0)),
            backoff_max=float(config.get("backoff_max_seconds", 21600.0)),
            state_dir=Path(state_dir) if state_dir else None,
        )


@dataclass
class BackoffState:
    """What the agent remembers between speedtest.net calls.

    ``backoff`` maps a stage (``service`` for the configuration, ``server_list``) to
    ``{"failures", "until", "reason"}``; ``servers`` is the last good server list.
    """

    backoff: dict = field(default_factory=dict)
    servers: list = field(default_factory=list)
    servers_saved_at: float | None = None

    @classmethod
    def load(cls, state_dir: Path | None) -> BackoffState:
        if state_dir is None or not (state_dir / STATE_FILE).exists():
            return cls()
        try:
            raw = json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
            return cls(raw["backoff"], raw["servers"], raw["servers_saved_at"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A damaged state file costs us the backoff memory, never the test.
            logger.warning(
                "ignoring unreadable speed-test state %s: %s", state_dir, exc
            )
            return cls()

    def save(self, state_dir: Path | None) -> None:
        if state_dir is None:
            return
        state_dir.mkdir(parents=True, exist_ok=True)
        data = {"version": 1, "backoff": self.backoff, "servers": self.servers}
        data["servers_saved_at"] = self.servers_saved_at
        temporary = state_dir / (STATE_FILE + ".tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, state_dir / STATE_FILE)

    def active(self, stage: str, now: float) -> dict | None:
        entry = self.backoff.get(stage)
        return entry if entry and entry["until"] > now else None

    def failed(self, stage: str, reason: str, now: float, settings: _NetSettings):
        failures = self.backoff.get(stage, {}).get("failures", 0) + 1
        wait = min(settings.backoff_base * 2 ** (failures - 1), settings.backoff_max)
        self.backoff[stage] = {"failures": failures, "until": now + wait}
        self.backoff[stage]["reason"] = reason
        logger.info("speedtest.net %s: %s, backing off %.0f s", stage, reason, wait)

    def succeeded(self, stage: str) -> None:
        self.backoff.pop(stage, None)


class _Refused(Exception):
    """speedtest.net answered a stage with a refusal (403) or a rate limit (429)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


class _Unreachable(Exception):
    """No test server answered, or every tried server moved no bytes."""


class _Shutdown(threading.Event):
    """A threading.Event with the ``isSet`` name speedtest-cli calls."""

    def isSet(self) -> bool:  # noqa: N802 - the library's spelling
        return self.is_set()


class _StatusRecorder(urllib.request.BaseHandler):
    """Remembers the HTTP status of every answer the library's opener receives."""

    handler_order = 100  # before HTTPErrorProcessor turns a 429 into an exception

    def __init__(self) -> None:
        self.statuses: list[tuple[str, int]] = []

    def http_response(self, request, response):
        self.statuses.append((request.full_url, response.code))
        return response

    https_response = http_response

    def server_list_status(self) -> int | None:
        codes = [code for url, code in self.statuses if "speedtest-servers" in url]
        refusals = [code for code in codes if code in _REFUSAL_REASONS]
        return refusals[-1] if refusals else None


@dataclass
class _NetOutcome:
    bytes_used: int = 0
    server: dict | None = None
    latency_ms: float | None = None
    download_bps: float | None = None
    upload_bps: float | None = None
    streams: int | None = None
    state_changed: bool = False
    shutdown: threading.Event | None = None


def _run_speedtest_net(config: dict, clock: Callable[[], float]) -> dict:
    settings = _NetSettings.from_config(config)
    began, started = time.perf_counter(), clock()
    result = _blank_result("speedtest-net", "speedtest-cli", None, started)
    try:
        library = _import_speedtest()
    except (AttributeError, OSError, ImportError) as exc:
        logger.warning("speedtest-cli could not be imported: %s", exc)
        return _finish(_fail(result, _import_failure_reason()), began)
    result["tool_version"] = library.__version__

    state = BackoffState.load(settings.state_dir)
    refusal = state.active("service", started)
    if not state.servers:
        refusal = refusal or state.active("server_list", started)
    if refusal:
        result["flags"] = [SKIPPED_FLAG]
        return _finish(_fail(result, refusal["reason"]), began)

    outcome = _NetOutcome()
    reason = _run_with_deadline(library, settings, state, outcome, started)
    result["bytes_used"] = outcome.bytes_used
    if reason is None or outcome.state_changed:
        state.save(settings.state_dir)
    if reason is not None:
        return _finish(_fail(result, reason), began)
    return _finish(_net_figures(result, outcome), began)


def _import_failure_reason() -> str:
    return "no console" if sys.stdout is None or sys.stderr is None else "error"


def _net_figures(result: dict, outcome: _NetOutcome) -> dict:
    server = outcome.server or {}
    result["server"] = {key: server.get(key) for key in ("id", "name", "host")}
    result["server"]["sponsor"] = server.get("sponsor")
    result["download_bytes_per_second"] = round(outcome.download_bps / 8.0, 1)
    result["upload_bytes_per_second"] = round(outcome.upload_bps / 8.0, 1)
    result["latency_seconds"] = round(outcome.latency_ms / 1000.0, 6)
    result.update({"ok": True, "reason": None, "streams": outcome.streams})
    logger.info(
        "speed test (speedtest-net) against %s: down %.0f B/s, up %.0f B/s",
        result["server"]["host"],
        result["download_bytes_per_second"],
        result["upload_bytes_per_second"],
    )
    return result


def _run_with_deadline(library, settings, state, outcome, now) -> str | None:
    """Drive the library in a worker thread; give up at the overall deadline.

    Returns None on success or the failure reason. On the deadline the shutdown
    event stops the library's transfer threads; a stage blocked in a socket call
    ends by itself within the socket timeout.
    """
    shutdown = _Shutdown()
    box: dict[str, str | None] = {}

    def work() -> None:
        with _console_guard(always=False):
            box["reason"] = _drive_library(library, settings, state, outcome, now)

    outcome.shutdown = shutdown

    worker = threading.Thread(target=work, name="speedtest-net", daemon=True)
    worker.start()
    worker.join(settings.deadline)
    if worker.is_alive():
        shutdown.set()
        outcome.state_changed = False
        return "timeout"
    return box.get("reason", "error")


def _drive_library(library, settings, state, outcome, now) -> str | None:
    try:
        tester = _open_tester(library, settings, state, outcome, now)
        servers = _server_candidates(tester, settings, state, outcome, now)
        _measure(tester, servers, settings, outcome)
        return None
    except _Refused as exc:
        state.failed(exc.stage, exc.reason, now, settings)
        outcome.state_changed = True
        return exc.reason
    except _Unreachable:
        return "server unreachable"
    except (library.SpeedtestException, OSError, ValueError) as exc:
        return _library_failure_reason(library, exc)
    except Exception:
        # Third-party code in a worker thread: whatever it raises must end as a
        # failed test with a traceback in the log, never as a dead agent thread.
        logger.exception("speedtest-cli failed unexpectedly")
        return "error"


def _library_failure_reason(library, exc: Exception) -> str:
    cause = exc.args[0] if exc.args else None
    if isinstance(exc, TimeoutError) or isinstance(
        getattr(cause, "reason", cause), TimeoutError
    ):
        return "timeout"
    if isinstance(exc, OSError | library.SpeedtestBestServerFailure):
        return "server unreachable"
    if isinstance(exc, library.ConfigRetrievalError):
        return "server unreachable"
    logger.warning("speedtest-cli error: %r", exc)
    return "error"


def _open_tester(library, settings, state, outcome, now):
    try:
        tester = library.Speedtest(
            timeout=settings.timeout,
            secure=settings.secure,
            shutdown_event=outcome.shutdown,
        )
    except library.ConfigRetrievalError as exc:
        code = getattr(exc.args[0] if exc.args else None, "code", None)
        if code in _REFUSAL_REASONS:
            raise _Refused("service", _REFUSAL_REASONS[code]) from exc
        raise
    if state.backoff.pop("service", None):
        outcome.state_changed = True
    if settings.test_length:
        length = max(1, int(settings.test_length))
        tester.config["length"] = {"download": length, "upload": length}
    return tester


def _server_candidates(tester, settings, state, outcome, now) -> list[dict]:
    """The closest servers, from speedtest.net or from the last good list."""
    if state.active("server_list", now) and state.servers:
        logger.debug("server list backing off, reusing %d servers", len(state.servers))
        return [dict(server) for server in state.servers]

    recorder = _StatusRecorder()
    tester._opener.add_handler(recorder)
    closest = tester.get_closest_servers(limit=settings.server_list_limit)
    if closest:
        state.succeeded("server_list")
        state.servers = [dict(server) for server in closest]
        state.servers_saved_at = now
        outcome.state_changed = True
        return closest

    code = recorder.server_list_status()
    if code is not None and not state.servers:
        raise _Refused("server_list", _REFUSAL_REASONS[code])
    if code is not None:
        state.failed("server_list", _REFUSAL_REASONS[code], now, settings)
        outcome.state_changed = True
    if not state.servers:
        raise _Unreachable("speedtest.net gave no server list")
    logger.info("server list unavailable, reusing the last good one")
    return [dict(server) for server in state.servers]


def _measure(tester, servers, settings, outcome) -> None:
    """Test against the best answering server, then the next best, up to a bound."""
    for server in _rank_servers(tester, servers)[: settings.max_attempts]:
        best = tester.get_best_server([server])
        if best["latency"] >= LATENCY_SENTINEL_SECONDS * 1000.0:
            logger.info("test server %s did not answer", server.get("host"))
            continue
        download = tester.download()
        upload = tester.upload(pre_allocate=False)
        outcome.bytes_used += tester.results.bytes_received + tester.results.bytes_sent
        if tester.results.bytes_received and tester.results.bytes_sent:
            outcome.server, outcome.latency_ms = dict(best), best["latency"]
            outcome.download_bps, outcome.upload_bps = download, upload
            outcome.streams = tester.config["threads"]["download"]
            return
        logger.info("test server %s moved no bytes, trying the next", best["host"])
    raise _Unreachable("no test server answered")


def _rank_servers(tester, servers: list[dict]) -> list[dict]:
    """Probe each server's latency once (the library's own probe) and sort by it."""
    for server in servers:
        tester.get_best_server([server])
    return sorted(servers, key=lambda server: server["latency"])


# The school-to-collector path ----------------------------------------------------


_UPLOAD_BLOCK = os.urandom(64 * 1024)
MIB = 1024 * 1024
# The warm-up ends early once it has moved this share of the byte budget, so a fast
# link (or loopback) keeps most of the budget for the measured window.
WARMUP_SHARE = 0.125


@dataclass
class _CollectorSettings:
    server_url: str
    credential: str | None = None
    streams: int = 4
    duration: float = 8.0
    warmup: float = 1.0
    latency_samples: int = 10
    request_bytes: int = 64 * MIB
    upload_request_bytes: int = 8 * MIB
    budget_bytes: int = 256 * MIB
    timeout: float = 10.0

    @classmethod
    def from_config(cls, config: dict) -> _CollectorSettings:
        url = config.get("server_url")
        if not url or urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(
                f"collector speed test needs server_url as an http(s) URL, got {url!r}"
            )
        return cls(
            server_url=url.rstrip("/"),
            credential=config.get("credential"),
            streams=int(config.get("streams", 4)),
            duration=float(config.get("duration_seconds", 8.0)),
            warmup=float(config.get("warmup_seconds", 1.0)),
            latency_samples=int(config.get("latency_samples", 10)),
            request_bytes=int(config.get("request_bytes", 64 * MIB)),
            upload_request_bytes=int(config.get("upload_request_bytes", 8 * MIB)),
            budget_bytes=int(config.get("budget_bytes", 256 * MIB)),
            timeout=float(config.get("timeout_seconds", 10.0)),
        )

    def url(self, name: str) -> str:
        return f"{self.server_url}/api/v1/speedtest/{name}"

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.credential}"} if self.credential else {}


class _ServiceAnswer(Exception):
    """The collector answered a speed-test request with an error status."""

    def __init__(self, what: str, status: int, detail: str | None) -> None:
        message = f"{what} refused with HTTP {status}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.reason = _REFUSAL_REASONS.get(status, "error")


class _NothingMeasured(Exception):
    """No byte moved inside the measured window."""


class _Meter:
    """Bytes all streams of one direction moved, and those in the measured window.

    The window opens after the warm-up time, or as soon as the warm-up has moved
    ``WARMUP_SHARE`` of the byte budget; it closes after the measuring time, or as
    soon as the budget is spent. Rates are measured bytes over the window's length.
    """

    def __init__(self, warmup: float, duration: float, budget: int) -> None:
        self.duration, self.budget = duration, budget
        self.opens = time.perf_counter() + warmup
        self.closes = self.opens + duration
        self.total = 0
        self.measured = 0
        self.errors: list[Exception] = []
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            now = time.perf_counter()
            self.total += count
            if now < self.opens and self.total >= self.budget * WARMUP_SHARE:
                self.opens, self.closes = now, now + self.duration
            elif self.opens <= now <= self.closes:
                self.measured += count
                if self.total >= self.budget:
                    self.closes = now

    def over(self) -> bool:
        return time.perf_counter() > self.closes

    def rate(self) -> float:
        """Bytes per second inside the window; raises when nothing was measured."""
        seconds = self.closes - self.opens
        if self.measured == 0 or seconds <= 0:
            raise _NothingMeasured(
                f"no byte moved in the {self.duration:g} s measuring window"
            )
        return round(self.measured / seconds, 1)


def _run_collector(config: dict, session: requests.Session, clock) -> dict:
    settings = _CollectorSettings.from_config(config)
    began, started = time.perf_counter(), clock()
    result = _blank_result("collector", "schoolmon", _schoolmon_version(), started)
    result["server"] = {"id": None, "name": "collector", "sponsor": None}
    result["server"]["host"] = urlsplit(settings.server_url).netloc

    try:
        _collector_figures(result, session, settings)
    except _ServiceAnswer as exc:
        return _finish(_fail(result, exc.reason, str(exc)), began)
    except _NothingMeasured as exc:
        return _finish(_fail(result, "timeout", str(exc)), began)
    except requests.RequestException as exc:
        reason, message = _request_failure(exc, settings)
        return _finish(_fail(result, reason, message), began)
    return _finish(result, began)


def _request_failure(exc: requests.RequestException, settings) -> tuple[str, str]:
    """The reason and message of a request that got no HTTP answer."""
    host = urlsplit(settings.server_url).netloc
    if isinstance(exc, requests.Timeout):
        return "timeout", f"no answer from {host} within {settings.timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        return "server unreachable", f"{host}: {request_reason(exc)}"
    logger.warning("collector speed test failed: %r", exc)
    return "error", f"{type(exc).__name__}: {exc}"[:300]


def _schoolmon_version() -> str | None:
    try:
        return metadata.version("schoolmon")
    except metadata.PackageNotFoundError:
        return None


def _collector_figures(result: dict, session, settings: _CollectorSettings) -> None:
    rtts = _round_trips(session, settings)
    down = _transfer(session, settings, _download_stream, result)
    up = _transfer(session, settings, _upload_stream, result)

    result["latency_seconds"] = round(statistics.median(rtts), 6)
    result["jitter_seconds"] = round(_jitter(rtts), 6) if len(rtts) > 1 else None
    result["download_bytes_per_second"] = down.rate()
    result["upload_bytes_per_second"] = up.rate()
    result.update({"ok": True, "streams": settings.streams})
    logger.info(
        "speed test (collector): down %.0f B/s, up %.0f B/s, latency %.3f s",
        result["download_bytes_per_second"],
        result["upload_bytes_per_second"],
        result["latency_seconds"],
    )


def _jitter(rtts: list[float]) -> float:
    return statistics.fmean(abs(b - a) for a, b in zip(rtts, rtts[1:], strict=False))


def _checked(response: requests.Response, what: str) -> requests.Response:
    if response.status_code >= 400:
        detail = _answer_message(response)
        response.close()
        raise _ServiceAnswer(what, response.status_code, detail)
    return response


def _answer_message(response: requests.Response) -> str | None:
    """The collector's ``message`` from an error answer, if it sent one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("message") if isinstance(body, dict) else None


def _round_trips(session, settings: _CollectorSettings) -> list[float]:
    """Small request round trips on a warm connection (the first one is excluded)."""
    samples = []
    for _ in range(settings.latency_samples + 1):
        began = time.perf_counter()
        response = session.get(
            settings.url("latency"),
            headers=settings.headers(),
            timeout=settings.timeout,
        )
        samples.append(time.perf_counter() - began)
        _checked(response, "latency")
    return samples[1:]


def _transfer(session, settings: _CollectorSettings, stream, result: dict) -> _Meter:
    """Run ``settings.streams`` parallel streams; count what they moved as used."""
    meter = _Meter(settings.warmup, settings.duration, settings.budget_bytes)
    threads = [
        threading.Thread(target=_guarded, args=(stream, session, settings, meter))
        for _ in range(settings.streams)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(settings.warmup + settings.duration + 2 * settings.timeout)

    result["bytes_used"] += meter.total
    if meter.errors:
        raise meter.errors[0]
    return meter


def _guarded(stream, session, settings, meter: _Meter) -> None:
    try:
        stream(session, settings, meter)
    except (requests.RequestException, _ServiceAnswer) as exc:
        meter.errors.append(exc)


def _download_stream(session, settings: _CollectorSettings, meter: _Meter) -> None:
    params = {"bytes": settings.request_bytes}
    while not meter.over():
        response = session.get(
            settings.url("download"),
            params=params,
            headers=settings.headers(),
            stream=True,
            timeout=settings.timeout,
        )
        with _checked(response, "download"):
            for chunk in response.iter_content(64 * 1024):
                meter.add(len(chunk))
                if meter.over():
                    break


def _upload_stream(session, settings: _CollectorSettings, meter: _Meter) -> None:
    """POST bodies of at most ``upload_request_bytes`` until the window closes."""
    while not meter.over():
        response = session.post(
            settings.url("upload"),
            data=_upload_body(meter, settings.upload_request_bytes),
            headers=settings.headers(),
            timeout=settings.timeout,
        )
        _checked(response, "upload").close()


def _upload_body(meter: _Meter, limit: int) -> Iterator[bytes]:
    """Yield random blocks until the window closes or ``limit`` bytes are sent,
    counting each block once it has been sent."""
    sent = 0
    while sent < limit and not meter.over():
        block = _UPLOAD_BLOCK[: limit - sent]
        yield block
        sent += len(block)
        meter.add(len(block))
