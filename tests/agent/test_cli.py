"""The schoolmon-agent command line, run for real against a loopback collector."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from schoolmon.agent.cli import main
from schoolmon.agent.inventory import SECTIONS

from tests.support.waiting import wait_until


@pytest.fixture
def config_file(tmp_path, collector):
    """An agent configuration whose only target is the stub collector's healthz."""
    path = tmp_path / "agent.toml"
    path.write_text(
        f'server_url = "{collector.url}"\njitter_seconds = 0\n'
        "[[targets]]\n"
        'name = "collector"\nurl = "{server}/healthz"\nscope = "collector"\n'
        'expect_status = 200\nexpect_body_contains = "schoolmon"\n',
        encoding="utf-8",
    )
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_inventory_prints_utf8_json_with_every_section(tmp_path):
    """`inventory` prints the whole inventory document as JSON."""
    result = invoke("inventory", "--state-dir", str(tmp_path / "s"))

    document = json.loads(result.stdout)
    assert result.exit_code == 0
    assert (sorted(document), list(document["sections"])) == (
        ["hash", "sections"],
        list(SECTIONS),
    )


def test_dry_run_prints_the_report_and_sends_or_stores_nothing(
    tmp_path, collector, config_file
):
    """`once --dry-run` prints a report, contacts no collector, writes no state."""
    state_dir = tmp_path / "state"

    result = invoke(
        "once", "--dry-run", "--config", str(config_file), "--state-dir", str(state_dir)
    )

    report = json.loads(result.stdout)
    assert result.exit_code == 0
    assert sorted(report) == sorted(
        [
            "schema",
            "agent_version",
            "sent_at",
            "sent_monotonic",
            "boot_id",
            "identity",
            "inventory",
            "probes",
            "speedtests",
            "health",
        ]
    )
    assert [(p["target"], p["kind"], p["ok"]) for p in report["probes"]] == [
        ("collector", "dns", True),
        ("collector", "tcp", True),
        ("collector", "https", True),
    ]
    assert (collector.headers, state_dir.exists()) == ([], False)


def test_enroll_then_once_delivers_and_status_shows_it(
    tmp_path, collector, config_file
):
    """Enrollment stores the credential; `once` delivers (exit 0); `status` tells."""
    common = ["--config", str(config_file), "--state-dir", str(tmp_path / "state")]

    enrolled = invoke(
        "enroll", "--server", collector.url, "--token", "tok-C01", *common
    )
    once = invoke("once", *common)
    status = invoke("status", *common)

    assert (enrolled.exit_code, enrolled.stdout) == (
        0,
        "enrolled as device d_0001 of school C01\n",
    )
    assert (once.exit_code, once.stdout) == (0, "delivered: cycle 1, 3 probe samples\n")
    assert collector.headers[0]["Authorization"] == "Bearer secret-1"
    lines = status.stdout.splitlines()
    assert lines[:3] == ["school: C01", "device id: d_0001", f"server: {collector.url}"]
    assert lines[5:] == [
        "outbox: 0 items, 0 bytes",
        "set aside: 0",
        "dropped: probes 0",
    ]


def test_once_without_enrollment_fails_with_one_line(tmp_path):
    """Before enrollment `once` exits non-zero with one line saying what to do."""
    result = invoke("once", "--state-dir", str(tmp_path))

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: not enrolled (no credential in {tmp_path}); run schoolmon-agent "
        "enroll --server URL --token TOKEN"
    ]


def test_once_with_collector_down_exits_non_zero_and_keeps_the_samples(
    tmp_path, collector, config_file
):
    """A cycle whose report is not delivered exits 1; the samples stay queued."""
    common = ["--config", str(config_file), "--state-dir", str(tmp_path / "state")]
    invoke("enroll", "--server", collector.url, "--token", "tok", *common)
    collector.stop()

    once = invoke("once", *common)
    status = invoke("status", *common)

    assert once.exit_code == 1
    assert once.stderr.startswith("Error: report not delivered: collector unreachable")
    assert len(once.stderr.splitlines()) == 1
    assert "outbox: 4 items" in status.stdout


def test_bad_configuration_is_one_line_naming_key_and_value(tmp_path):
    """A bad value in the configuration file stops the command with one line."""
    path = tmp_path / "agent.toml"
    path.write_text("interval_seconds = 0\n", encoding="utf-8")

    result = invoke("status", "--config", str(path), "--state-dir", str(tmp_path))

    assert (result.exit_code, result.stderr) == (
        1,
        "Error: interval_seconds = 0: expected a number from 10 to 86400\n",
    )


def test_enroll_with_bad_server_url_names_it(tmp_path):
    """An unusable --server URL is refused before anything is sent."""
    result = invoke(
        "enroll", "--server", "collector", "--token", "t", "--state-dir", str(tmp_path)
    )

    assert (result.exit_code, result.stderr) == (
        1,
        "Error: --server = 'collector': expected an http:// or https:// URL "
        "with a host\n",
    )


def test_speedtest_failure_prints_json_and_exits_non_zero(tmp_path, monkeypatch):
    """A speed test that cannot run prints its failed result and exits 1."""
    monkeypatch.setitem(sys.modules, "schoolmon.agent.speedtest", None)

    result = invoke("speedtest", "--backend", "collector", "--state-dir", str(tmp_path))

    printed = json.loads(result.stdout)
    assert (result.exit_code, printed["ok"], printed["reason"], printed["backend"]) == (
        1,
        False,
        "error",
        "collector",
    )
    assert result.stderr == "Error: speed test failed: error\n"


def test_run_reports_then_stops_cleanly_on_sigterm(tmp_path, collector, config_file):
    """`python -m schoolmon.agent run` delivers, and exits 0 on SIGTERM."""
    common = ["--config", str(config_file), "--state-dir", str(tmp_path / "state")]
    invoke("enroll", "--server", collector.url, "--token", "tok", *common)
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "schoolmon.agent", "run", *common],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        wait_until(lambda: collector.reports, timeout=30, message="no report from run")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert code == 0
    assert [p["seq"] for p in collector.reports[0]["probes"]] == [1, 2, 3]
    assert (tmp_path / "state" / "agent.log").exists()
