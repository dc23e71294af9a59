"""The collector backend: the agent's real code against the real router on uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from schoolmon.agent.speedtest import run_speedtest

from tests.netlab.collector_app import make_app
from tests.netlab.matchers import Between
from tests.support.collector import collector_in_thread, free_port

CREDENTIAL = "device-credential-for-tests"
SCHOOL_MORNING = 1796090400.0  # 2026-12-01T02:00:00Z
MORNING_ISO = "2026-12-01T02:00:00Z"
SHORT = {"duration_seconds": 0.5, "warmup_seconds": 0.2, "streams": 2}
SHORT["request_bytes"] = 4 * 1024 * 1024  # several requests per stream


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


def failure(host: str, reason: str) -> dict:
    nulls = dict.fromkeys(
        ("download_bytes_per_second", "upload_bytes_per_second", "latency_seconds")
    )
    nulls.update(jitter_seconds=None, streams=None, server=None, bytes_used=0)
    return whole(host, ok=False, reason=reason, **nulls)


def test_measures_latency_jitter_and_both_directions_with_parallel_streams(collector):
    """A good test fills every figure; rates come from the measured window only."""
    config = {"server_url": collector, "credential": CREDENTIAL, **SHORT}

    result = run_speedtest(
        "collector", config, session=requests.Session(), clock=lambda: SCHOOL_MORNING
    )

    assert result == whole(collector.removeprefix("http://"))
    moved_in_windows = 0.5 * (
        result["download_bytes_per_second"] + result["upload_bytes_per_second"]
    )
    assert result["bytes_used"] > moved_in_windows  # warm-up bytes count as used


def test_a_wrong_credential_is_a_refused_test_not_a_zero(collector):
    """A 401 from the collector fails the test with 'test service refused'."""
    config = {"server_url": collector, "credential": "not-a-device", **SHORT}

    result = run_speedtest("collector", config, clock=lambda: SCHOOL_MORNING)

    host = collector.removeprefix("http://")
    assert result == failure(host, "test service refused") | {
        "duration_seconds": Between(0.0, 10.0)
    }


def test_a_collector_nobody_listens_on_is_unreachable():
    """Connection refused fails the test with 'server unreachable'."""
    url = f"http://127.0.0.1:{free_port()}"

    result = run_speedtest(
        "collector", {"server_url": url, **SHORT}, clock=lambda: SCHOOL_MORNING
    )

    host = url.removeprefix("http://")
    assert result == failure(host, "server unreachable") | {
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
