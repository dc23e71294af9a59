"""The collector backend: the agent's real code against the real router on uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from fastapi import FastAPI
from schoolmon.agent.speedtest import run_speedtest
from schoolmon.server.speedtest import build_router

from tests.netlab.collector_app import make_app
from tests.netlab.matchers import Between
from tests.support.collector import collector_in_thread, free_port

CREDENTIAL = "device-credential-for-tests"
SCHOOL_MORNING = 1796090400.0  # 2026-12-01T02:00:00Z
MORNING_ISO = "2026-12-01T02:00:00Z"
SHORT = {"duration_seconds": 0.5, "warmup_seconds": 0.2, "streams": 2}
SHORT["request_bytes"] = 4 * 1024 * 1024  # several requests per stream
MIB = 1024 * 1024
DEFAULT_BUDGET = 256 * MIB
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def collector() -> Iterator[str]:
    """The speed-test router served by uvicorn on a loopback port."""
    with collector_in_thread(make_app(CREDENTIAL)) as url:
        yield url


def whole(host: str, **changes) -> dict:
    """A result of the collector backend started at SCHOOL_MORNING, with changes."""
    result = {
        "run": None,
        "seq": None,
        "wall_time": MORNING_ISO,
        "monotonic": None,
        "boot_id": None,
        "ok": True,
        "reason": None,
        "backend": "collector",
        "tool": "schoolmon",
        "tool_version": "0.1.0",
        "server": {"id": None, "name": "collector", "host": host, "sponsor": None},
        "download_bytes_per_second": Between(1.0, 1e12),
        "upload_bytes_per_second": Between(1.0, 1e12),
        "latency_seconds": Between(0.0, 1.0),
        "jitter_seconds": Between(0.0, 1.0),
        "bytes_used": Between(1, 1e12),
        "streams": 2,
        "started_at": MORNING_ISO,
        "duration_seconds": Between(1.4, 30.0),
        "flags": [],
    }
    result.update(changes)
    return result


def failure(host: str, reason: str, message: str) -> dict:
    nulls = dict.fromkeys(
        ("download_bytes_per_second", "upload_bytes_per_second", "latency_seconds")
    )
    nulls.update(jitter_seconds=None, streams=None, server=None, bytes_used=0)
    return whole(host, ok=False, reason=reason, message=message, **nulls)


def small_upload_limit_app(limit: int) -> FastAPI:
    """The speed-test router accepting upload bodies of at most ``limit`` bytes."""
    app = FastAPI()
    app.include_router(build_router({CREDENTIAL: "dev-1"}.get, max_upload_bytes=limit))
    return app


def test_measures_latency_jitter_and_both_directions_with_parallel_streams(collector):
    """A good test fills every figure; rates come from the measured window only."""
    config = {"server_url": collector, "credential": CREDENTIAL, **SHORT}

    result = run_speedtest(
        "collector", config, session=requests.Session(), clock=lambda: SCHOOL_MORNING
    )

    assert result == whole(
        collector.removeprefix("http://"), duration_seconds=Between(0.0, 30.0)
    )


def test_default_settings_on_loopback_are_ok_and_stay_within_the_byte_budget(
    collector,
):
    """On loopback the 8 s test ends once each direction spent its 256 MiB budget.

    Upload bodies are POSTed in bounded pieces, so the collector's 1 GiB upload
    limit is never reached however fast the link is.
    """
    config = {"server_url": collector, "credential": CREDENTIAL}

    result = run_speedtest("collector", config, clock=lambda: SCHOOL_MORNING)

    most = 2 * (DEFAULT_BUDGET + 4 * CHUNK)
    assert result == whole(
        collector.removeprefix("http://"),
        streams=4,
        bytes_used=Between(2 * DEFAULT_BUDGET * 0.99, most),
        duration_seconds=Between(0.0, 30.0),
    )


def test_upload_bodies_are_capped_below_the_collectors_limit():
    """Each upload POST carries at most upload_request_bytes, under the limit."""
    config = {"credential": CREDENTIAL, **SHORT, "upload_request_bytes": MIB}

    with collector_in_thread(small_upload_limit_app(MIB)) as url:
        config["server_url"] = url
        result = run_speedtest("collector", config, clock=lambda: SCHOOL_MORNING)

    assert result == whole(
        url.removeprefix("http://"), duration_seconds=Between(0.0, 30.0)
    )


def test_an_upload_refused_with_413_is_an_error_naming_it():
    """A 413 on upload fails the test with reason 'error' and a message naming it."""
    config = {"credential": CREDENTIAL, **SHORT, "upload_request_bytes": MIB + CHUNK}

    with collector_in_thread(small_upload_limit_app(MIB)) as url:
        config["server_url"] = url
        result = run_speedtest("collector", config, clock=lambda: SCHOOL_MORNING)

    message = (
        "upload refused with HTTP 413: upload body over 1048576 bytes; "
        "send at most that"
    )
    assert result == failure(url.removeprefix("http://"), "error", message) | {
        "bytes_used": Between(MIB, 2 * DEFAULT_BUDGET + 8 * CHUNK),
        "duration_seconds": Between(0.0, 30.0),
    }


def test_a_wrong_credential_is_a_refused_test_not_a_zero(collector):
    """A 401 from the collector fails the test with 'test service refused'."""
    config = {"server_url": collector, "credential": "not-a-device", **SHORT}

    result = run_speedtest("collector", config, clock=lambda: SCHOOL_MORNING)

    host = collector.removeprefix("http://")
    message = (
        "latency refused with HTTP 401: speed-test endpoints need a device "
        "credential as 'Authorization: Bearer ...'"
    )
    assert result == failure(host, "test service refused", message) | {
        "duration_seconds": Between(0.0, 10.0)
    }


def test_a_collector_nobody_listens_on_is_unreachable():
    """Connection refused fails the test with 'server unreachable'."""
    url = f"http://127.0.0.1:{free_port()}"

    result = run_speedtest(
        "collector", {"server_url": url, **SHORT}, clock=lambda: SCHOOL_MORNING
    )

    host = url.removeprefix("http://")
    message = f"{host}: connection refused"
    assert result == failure(host, "server unreachable", message) | {
        "duration_seconds": Between(0.0, 10.0)
    }


def test_a_missing_server_url_is_an_error_naming_the_value():
    """Without server_url the backend refuses to start and says what it needs."""
    with pytest.raises(ValueError) as raised:
        run_speedtest("collector", {"server_url": "ftp://collector"})

    assert str(raised.value) == (
        "collector speed test needs server_url as an http(s) URL, got 'ftp://collector'"
    )


def test_an_unknown_backend_is_an_error_naming_the_accepted_ones():
    """A backend name outside the two known ones is refused with the accepted list."""
    with pytest.raises(ValueError) as raised:
        run_speedtest("iperf")

    assert str(raised.value) == (
        "unknown speed-test backend 'iperf'; accepted: speedtest-net, collector"
    )
