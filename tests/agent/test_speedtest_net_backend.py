"""The speedtest-net backend: the real speedtest-cli code against the local stand-in.

speedtest-cli reaches www.speedtest.net over HTTPS through the stand-in acting as a
proxy (``https_proxy``), trusting a throw-away CA (``SSL_CERT_FILE``); nothing
leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from schoolmon.agent.speedtest import STATE_FILE, run_speedtest

from tests.netlab.fake_speedtest_net import FakeConfig, FakeServer, FakeSpeedtestNet
from tests.netlab.matchers import Between
from tests.netlab.testca import TestCA, make_test_ca

REPO = Path(__file__).resolve().parents[2]
SCHOOL_MORNING = 1796090400.0  # 2026-12-01T02:00:00Z, 09:00 in Hanoi
MORNING_ISO = "2026-12-01T02:00:00Z"
# Bytes the stand-in's default configuration moves when every transfer completes:
# ten randomNxN.jpg of 2 * N * N / 100 bytes, and uploads of 512 KiB + 1 MiB + 7 MiB.
DOWNLOAD_BYTES = sum(
    int(2 * n * n * 0.01)
    for n in (350, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000)
)
UPLOAD_BYTES = 524288 + 1048576 + 7340032


class MovableClock:
    """A wall clock standing still until the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def speedtest_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


def _serve(servers, speedtest_ca, monkeypatch) -> Iterator[FakeSpeedtestNet]:
    config = FakeConfig(testlength=10)
    with FakeSpeedtestNet(
        servers=servers, config=config, tls=(speedtest_ca.cert, speedtest_ca.key)
    ) as fake:
        for name, value in fake.proxy_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SSL_CERT_FILE", str(speedtest_ca.ca))
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        yield fake


@pytest.fixture
def standin(speedtest_ca, monkeypatch) -> Iterator[FakeSpeedtestNet]:
    """The stand-in with one good test server, set as this process's proxy."""
    yield from _serve([FakeServer(1001)], speedtest_ca, monkeypatch)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(SCHOOL_MORNING)


def config_for(tmp_path: Path) -> dict:
    return {"state_dir": str(tmp_path / "state"), "secure": True}


def failed(reason: str, bytes_used: int = 0, flags: list | None = None) -> dict:
    """The whole dict of a failed speedtest-net test started at SCHOOL_MORNING."""
    return {
        "run": None,
        "seq": None,
        "wall_time": MORNING_ISO,
        "monotonic": None,
        "boot_id": None,
        "ok": False,
        "reason": reason,
        "backend": "speedtest-net",
        "tool": "speedtest-cli",
        "tool_version": "2.1.3",
        "server": None,
        "download_bytes_per_second": None,
        "upload_bytes_per_second": None,
        "latency_seconds": None,
        "jitter_seconds": None,
        "streams": None,
        "bytes_used": bytes_used,
        "started_at": MORNING_ISO,
        "duration_seconds": Between(0.0, 30.0),
        "flags": flags or [],
    }


def succeeded(fake: FakeSpeedtestNet, server_id: int, name: str = "Hanoi") -> dict:
    """The whole dict of a good test against the stand-in's server ``server_id``."""
    return {
        **failed(None, DOWNLOAD_BYTES + UPLOAD_BYTES),
        "ok": True,
        "server": {
            "id": str(server_id),
            "name": name,
            "host": fake.address,
            "sponsor": "VNPT",
        },
        "download_bytes_per_second": Between(1.0, 1e12),
        "upload_bytes_per_second": Between(1.0, 1e12),
        "latency_seconds": Between(0.0, 5.0),
        "streams": 2,
    }


def saved_state(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "state" / STATE_FILE).read_text(encoding="utf-8"))


def listed(fake: FakeSpeedtestNet, server: FakeServer) -> dict:
    """A server as speedtest-cli lists it (what the agent keeps as last good list)."""
    address = fake.server_address(server)
    return {
        "url": f"http://{address}/srv{server.id}/speedtest/upload.php",
        "lat": str(server.lat),
        "lon": str(server.lon),
        "name": server.name,
        "country": "Vietnam",
        "cc": "VN",
        "sponsor": server.sponsor,
        "id": str(server.id),
        "host": address,
        "d": 0.0,
    }


def test_a_good_test_reports_the_library_figures_and_its_counted_bytes(
    standin, tmp_path, clock
):
    """A test via HTTPS config and the proxy gives figures and the library's bytes."""
    result = run_speedtest("speedtest-net", config_for(tmp_path), clock=clock)

    assert result == succeeded(standin, 1001)
    assert saved_state(tmp_path) == {
        "version": 1,
        "backoff": {},
        "servers": [listed(standin, standin.servers[0])],
        "servers_saved_at": SCHOOL_MORNING,
    }


def test_unreachable_servers_give_a_failure_not_the_latency_sentinel_or_zeros(
    speedtest_ca, monkeypatch, tmp_path, clock
):
    """Servers answering nothing (1,800,000 ms, 0 bytes) fail 'server unreachable'."""
    dead = [FakeServer(n, state="unreachable") for n in (1001, 1002)]
    for fake in _serve(dead, speedtest_ca, monkeypatch):
        result = run_speedtest("speedtest-net", config_for(tmp_path), clock=clock)

        assert result == failed("server unreachable")
        assert fake.requests == [
            ("CONNECT", "www.speedtest.net:443", ""),
            ("GET", "www.speedtest.net", "/speedtest-config.php"),
            ("CONNECT", "www.speedtest.net:443", ""),
            ("GET", "www.speedtest.net", "/speedtest-servers-static.php"),
        ]


def test_a_server_that_moves_no_bytes_is_replaced_by_the_next_best(
    speedtest_ca, monkeypatch, tmp_path, clock
):
    """The fastest-answering server moves 0 bytes, so the same call tests the next."""
    servers = [
        FakeServer(1001, state="broken"),
        FakeServer(1002, "Ha Dong", latency_delay=0.05),
    ]
    for fake in _serve(servers, speedtest_ca, monkeypatch):
        result = run_speedtest("speedtest-net", config_for(tmp_path), clock=clock)

        # The broken server refused the uploads only after reading them: those
        # bytes crossed the link and the library counts them.
        moved = DOWNLOAD_BYTES + 2 * UPLOAD_BYTES
        assert result == {**succeeded(fake, 1002, "Ha Dong"), "bytes_used": moved}
        tried = [path for path in fake.paths() if path.endswith("upload.php")]
        assert (
            tried
            == ["/srv1001/speedtest/upload.php"] * 3
            + ["/srv1002/speedtest/upload.php"] * 3
        )


def test_a_refused_configuration_backs_off_for_growing_minutes(
    standin, tmp_path, clock
):
    """A 403 on the configuration fails 'test service refused' and backs off longer."""
    standin.config_status = 403
    config = config_for(tmp_path)

    first = run_speedtest("speedtest-net", config, clock=clock)
    asked = len(standin.requests)
    during_backoff = run_speedtest("speedtest-net", config, clock=clock)
    clock.now += 601
    after_backoff = run_speedtest("speedtest-net", config, clock=clock)

    assert first == failed("test service refused")
    assert during_backoff == failed("test service refused", flags=["skipped_backoff"])
    assert len(standin.requests) == asked + 2  # only the third call asked again
    assert after_backoff == {
        **failed("test service refused"),
        "wall_time": "2026-12-01T02:10:01Z",
        "started_at": "2026-12-01T02:10:01Z",
    }
    assert saved_state(tmp_path) == {
        "version": 1,
        "backoff": {
            "service": {
                "failures": 2,
                "until": SCHOOL_MORNING + 601 + 1200,
                "reason": "test service refused",
            }
        },
        "servers": [],
        "servers_saved_at": None,
    }


def test_the_service_is_tried_again_after_the_backoff_and_forgets_it_on_success(
    standin, tmp_path, clock
):
    """Once the backoff is over and the service answers, the backoff is cleared."""
    standin.config_status = 403
    run_speedtest("speedtest-net", config_for(tmp_path), clock=clock)
    standin.config_status = 200
    clock.now += 601

    result = run_speedtest("speedtest-net", config_for(tmp_path), clock=clock)

    assert result == {
        **succeeded(standin, 1001),
        "wall_time": "2026-12-01T02:10:01Z",
        "started_at": "2026-12-01T02:10:01Z",
    }
    assert saved_state(tmp_path)["backoff"] == {}


def test_a_rate_limited_server_list_reuses_the_last_good_list_and_backs_off(
    standin, tmp_path, clock
):
    """A 429 on the server list: the last good list is used and the list backs off."""
    config = config_for(tmp_path)
    run_speedtest("speedtest-net", config, clock=clock)
    standin.servers_status = 429
    clock.now += 3600
    asked = len(standin.requests)

    limited = run_speedtest("speedtest-net", config, clock=clock)
    second = standin.paths()[asked:]
    asked = len(standin.requests)
    during_backoff = run_speedtest("speedtest-net", config, clock=clock)
    third = standin.paths()[asked:]

    later = {"wall_time": "2026-12-01T03:00:00Z", "started_at": "2026-12-01T03:00:00Z"}
    assert (limited, during_backoff) == ({**succeeded(standin, 1001), **later},) * 2
    assert [p for p in second if "servers" in p] == [
        "/speedtest-servers-static.php",
        "/speedtest-servers-static.php",
        "/speedtest-servers.php",
        "/speedtest-servers.php",
    ]
    assert [p for p in third if "servers" in p] == []
    assert saved_state(tmp_path) == {
        "version": 1,
        "backoff": {
            "server_list": {
                "failures": 1,
                "until": SCHOOL_MORNING + 3600 + 600,
                "reason": "rate limited",
            }
        },
        "servers": [listed(standin, standin.servers[0])],
        "servers_saved_at": SCHOOL_MORNING,
    }


def test_a_rate_limited_server_list_without_a_saved_list_fails_rate_limited(
    standin, tmp_path, clock
):
    """With no last good list, a 429 on the list fails 'rate limited' and backs off."""
    standin.servers_status = 429
    config = config_for(tmp_path)

    first = run_speedtest("speedtest-net", config, clock=clock)
    asked = len(standin.requests)
    second = run_speedtest("speedtest-net", config, clock=clock)

    assert first == failed("rate limited")
    assert second == failed("rate limited", flags=["skipped_backoff"])
    assert len(standin.requests) == asked
    assert saved_state(tmp_path)["backoff"] == {
        "server_list": {
            "failures": 1,
            "until": SCHOOL_MORNING + 600,
            "reason": "rate limited",
        }
    }


def test_the_overall_deadline_ends_a_stuck_test_as_a_timeout(
    speedtest_ca, monkeypatch, tmp_path, clock
):
    """A test still running at the deadline fails 'timeout' instead of hanging."""
    slow = [FakeServer(1001, latency_delay=1.0)]
    for _fake in _serve(slow, speedtest_ca, monkeypatch):
        config = {**config_for(tmp_path), "deadline_seconds": 0.5}

        result = run_speedtest("speedtest-net", config, clock=clock)

        assert result == failed("timeout")


def _without_console(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    """Run a Python child whose stdout and stderr do not exist (sys.stdout is None)."""

    def close_console() -> None:
        os.close(1)
        os.close(2)

    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        preexec_fn=close_console,
        timeout=60,
    )


NO_CONSOLE_AGENT = f"""
import json, sys
missing = [sys.stdout is None, sys.stderr is None]
from schoolmon.agent.speedtest import run_speedtest
config = json.loads(sys.argv[1])
result = run_speedtest("speedtest-net", config, clock=lambda: {SCHOOL_MORNING!r})
after = [sys.stdout is None, sys.stderr is None]
with open(sys.argv[2], "w") as out:
    json.dump(dict(missing=missing, after=after, result=result), out)
"""


def test_without_a_console_the_library_itself_cannot_even_be_imported(standin):
    """The fault is real: speedtest-cli's import fails when sys.stdout is None."""
    child = _without_console(["-c", "import speedtest"], {})

    assert child.returncode == 1


def test_without_a_console_the_agent_still_runs_the_test(standin, tmp_path):
    """With sys.stdout/sys.stderr None (Windows service) the test runs and succeeds."""
    out = tmp_path / "result.json"
    env = {**standin.proxy_env(), "SSL_CERT_FILE": os.environ["SSL_CERT_FILE"]}
    config = json.dumps(config_for(tmp_path))

    child = _without_console(["-c", NO_CONSOLE_AGENT, config, str(out)], env)

    assert child.returncode == 0
    assert json.loads(out.read_text()) == {
        "missing": [True, True],
        "after": [True, True],
        "result": succeeded(standin, 1001),
    }
