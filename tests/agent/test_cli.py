"""The schoolmon-agent command line, run for real against a loopback collector."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from schoolmon.agent.cli import main
from schoolmon.agent.inventory import SECTIONS

from tests.netlab.matchers import Between, IsoUtc
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


OUTBOX_FIGURES = ("outbox_items", "outbox_bytes", "set_aside_total", "dropped_total")
NOTHING_QUEUED = {
    "outbox_items": 0,
    "outbox_bytes": 0,
    "set_aside_total": 0,
    "dropped_total": {"probes": 0},
}


def wall_seconds(iso: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time with Z."""
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)


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
    assert {k: report["health"][k] for k in OUTBOX_FIGURES} == NOTHING_QUEUED
    assert (collector.headers, state_dir.exists()) == ([], False)


def test_dry_run_health_shows_the_real_outbox_not_what_it_would_queue(
    tmp_path, collector, config_file
):
    """The dry run's health counts what is really queued, untouched by the run."""
    common = ["--config", str(config_file), "--state-dir", str(tmp_path / "state")]
    invoke("enroll", "--server", collector.url, "--token", "tok", *common)
    collector.stop()
    invoke("once", *common)

    dry = json.loads(invoke("once", "--dry-run", *common).stdout)
    status = json.loads(invoke("status", "--json", *common).stdout)

    queued = {k: status[k] for k in OUTBOX_FIGURES}
    assert {k: dry["health"][k] for k in OUTBOX_FIGURES} == queued
    assert queued["outbox_items"] == 4


def test_enroll_then_once_delivers_and_status_shows_it(
    tmp_path, collector, config_file
):
    """Enrollment stores the credential; `once` delivers (exit 0); `status` tells."""
    common = ["--config", str(config_file), "--state-dir", str(tmp_path / "state")]

    enrolled = invoke(
        "enroll", "--server", collector.url, "--token", "tok-C01", *common
    )
    before = time.time()
    once = invoke("once", *common)
    status = invoke("status", *common)

    delivered_at = status.stdout.splitlines()[5].removeprefix("last delivery: ")
    assert before - 1 <= wall_seconds(delivered_at) <= time.time()
    assert (enrolled.exit_code, enrolled.stdout) == (
        0,
        "enrolled as device d_0001 of school C01\n",
    )
    assert (once.exit_code, once.stdout) == (0, "delivered: cycle 1, 3 probe samples\n")
    assert collector.headers[0]["Authorization"] == "Bearer secret-1"
    assert status.stdout.splitlines() == [
        "school: C01",
        "device id: d_0001",
        f"server: {collector.url}",
        "credential: in use",
        f"state dir: {tmp_path / 'state'}",
        f"last delivery: {delivered_at}",
        "last error: none",
        "outbox: 0 items, 0 bytes",
        "set aside: 0",
        "dropped: probes 0",
    ]


def test_status_before_enrollment_says_so_and_creates_nothing(tmp_path):
    """`status` of a PC not enrolled exits 0, says so, and writes no file."""
    state_dir = tmp_path / "state"

    result = invoke("status", "--state-dir", str(state_dir))

    assert (result.exit_code, result.stdout.splitlines()) == (
        0,
        [
            "school: (not enrolled)",
            "device id: (not enrolled)",
            "server: (not enrolled)",
            "credential: none: run schoolmon-agent enroll --server URL --token TOKEN",
            f"state dir: {state_dir}",
            "last delivery: never",
            "last error: none",
            "outbox: 0 items, 0 bytes",
            "set aside: 0",
            "dropped: probes 0",
        ],
    )
    assert state_dir.exists() is False


def test_once_without_enrollment_fails_with_one_line(tmp_path):
    """Before enrollment `once` exits non-zero with one line saying what to do."""
    result = invoke("once", "--state-dir", str(tmp_path))

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: not enrolled (no credential in {tmp_path}); run schoolmon-agent "
        "enroll --server URL --token TOKEN"
    ]


def test_once_with_collector_down_says_so_in_one_line_and_keeps_the_samples(
    tmp_path, collector, config_file
):
    """A cycle whose report is not delivered exits 1 with one line saying why and
    that the items wait in the outbox; `status` shows the error."""
    common = ["--config", str(config_file), "--state-dir", str(tmp_path / "state")]
    invoke("enroll", "--server", collector.url, "--token", "tok", *common)
    collector.stop()

    once = invoke("once", *common)
    status = invoke("status", "--json", *common)

    facts = json.loads(status.stdout)
    assert (once.exit_code, once.stderr) == (
        1,
        "Error: collector unreachable (connection refused); 4 items kept in the "
        "outbox, will retry\n",
    )
    assert facts == {
        "school": "C01",
        "device_id": "d_0001",
        "server": collector.url,
        "revoked_at": None,
        "state_dir": str(tmp_path / "state"),
        "last_delivery": None,
        "last_error": "collector unreachable (connection refused)",
        "last_error_at": IsoUtc(),
        "outbox_items": 4,
        "outbox_bytes": Between(500, 50_000_000),
        "dropped_total": {"probes": 0},
        "set_aside_total": 0,
    }


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xff\xfe bad = 1\n", "not UTF-8 text; save it as UTF-8"),
        (
            "interval_seconds = 60\n".encode("utf-16"),
            "not UTF-8 text; save it as UTF-8",
        ),
        (b"interval_seconds = = 60\n", "not valid TOML: "),
    ],
    ids=["latin-bytes", "utf-16-notepad", "not-toml"],
)
def test_unreadable_configuration_is_one_line_naming_the_file(tmp_path, content, says):
    """A configuration that is not UTF-8 TOML is one line naming the file, exit 1."""
    path = tmp_path / "c.toml"
    path.write_bytes(content)

    result = invoke("status", "--config", str(path), "--state-dir", str(tmp_path))

    assert (result.exit_code, result.stderr.count("\n")) == (1, 1)
    assert result.stderr.startswith(f"Error: {path}: {says}")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("missing.toml", "no such file"),
        (".", "is a directory, expected a TOML file"),
    ],
)
def test_configuration_path_that_is_no_file_is_one_line(tmp_path, name, says):
    """A missing file or a directory given as --config is one line naming it."""
    path = tmp_path / name

    result = invoke("status", "--config", str(path), "--state-dir", str(tmp_path))

    assert (result.exit_code, result.stderr) == (1, f"Error: {path}: {says}\n")


def test_empty_config_option_is_refused():
    """`--config ""` is an error, not the defaults."""
    result = invoke("status", "--config", "")

    assert (result.exit_code, result.stderr) == (
        1,
        "Error: --config = '': expected a file path\n",
    )


@pytest.mark.parametrize("command", ["once", "status", "run"])
def test_state_dir_under_a_file_is_one_line_and_nothing_is_created(tmp_path, command):
    """A state directory that cannot exist is named with the reason, before all."""
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")

    result = invoke(command, "--state-dir", str(afile / "sub"))

    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: cannot create state directory {afile / 'sub'}: {afile} is a file\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_state_dir_from_the_environment_that_is_a_file_is_named(tmp_path):
    """SCHOOLMON_STATE_DIR naming a file is one line saying so."""
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")

    result = invoke("once", env={"SCHOOLMON_STATE_DIR": str(afile)})

    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: cannot use state directory {afile}: it is a file\n",
    )


@pytest.mark.parametrize(
    ("args", "env", "source"),
    [
        (["--state-dir", ""], {}, "--state-dir"),
        (["--state-dir", " "], {}, "--state-dir"),
        ([], {"SCHOOLMON_STATE_DIR": ""}, "SCHOOLMON_STATE_DIR"),
    ],
)
def test_empty_state_dir_is_refused_not_replaced_by_the_default(args, env, source):
    """An empty state directory is an error naming where it came from."""
    result = invoke("status", *args, env=env)

    value = args[1] if args else ""
    assert (result.exit_code, result.stderr) == (
        1,
        f"Error: {source} = {value!r}: expected a directory path, got an empty one\n",
    )


def test_help_describes_config_and_state_dir():
    """Every command's help says what --config and --state-dir are and the default."""
    result = invoke("once", "--help")

    options = " ".join(result.stdout.split("Options:")[1].split())
    assert (
        "--config PATH Agent configuration file (TOML, UTF-8); without it the "
        "built-in defaults apply."
    ) in options
    assert (
        "--state-dir PATH Directory for the credential and the outbox (also "
        "SCHOOLMON_STATE_DIR, or state_dir in the configuration). Default: "
        "/var/lib/schoolmon as root on Linux, %ProgramData%\\schoolmon for a "
        "Windows service, else the user's data directory."
    ) in options


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
