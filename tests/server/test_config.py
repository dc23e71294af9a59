"""The collector configuration: defaults, TOML files and refusals."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest
from schoolmon.server.config import (
    Config,
    ConfigError,
    HolidayRange,
    Period,
    load_config,
)

MORNING = Period(time(7, 0), time(11, 30))
AFTERNOON = Period(time(13, 30), time(17, 0))
DAY = (
    {"start": time(7, 0), "end": time(11, 30)},
    {"start": time(13, 30), "end": time(17, 0)},
)


def test_defaults_are_the_headline_figures_of_the_spec():
    """Without a file every threshold is SPEC.md's default."""
    config = load_config(None)

    assert config.model_dump() == {
        "server": {
            "host": "127.0.0.1",
            "port": 8400,
            "db": None,
            "max_body_bytes": 4 * 1024 * 1024,
            "report_interval_seconds": 300,
            "report_jitter_seconds": 30,
        },
        "policy": {
            "offline_after_minutes": 15,
            "uptime_window_days": 7,
            "good_download_mbps": 20,
            "good_download_kbps_per_student": 50,
            "per_student_above_students": 400,
            "moderate_download_mbps": 1,
            "connected_uptime_ratio": 0.95,
        },
        "lab": {
            "min_logical_cpus": 2,
            "min_memory_gib": 4,
            "min_system_disk_gb": 64,
            "pcs_required": {"primary": 18, "lower_secondary": 23},
        },
        "sessions": {
            "timezone": "Asia/Ho_Chi_Minh",
            "timetable": {
                "mon": DAY,
                "tue": DAY,
                "wed": DAY,
                "thu": DAY,
                "fri": DAY,
                "sat": DAY,
                "sun": (),
            },
            "holidays": (),
        },
        "metrics": {"per_device_max": 2000, "refresh_seconds": 10.0},
        "speedtest": {"slots_per_day": 3, "monthly_budget_bytes": 5_000_000_000},
        "retention": {
            "enabled": True,
            "probe_samples_days": None,
            "every_minutes": 60,
            "batch_rows": 2000,
        },
    }


def test_thresholds_in_base_units():
    """Derived thresholds are in bytes per second, bytes and seconds."""
    config = Config()

    assert (
        config.policy.offline_after.total_seconds(),
        config.policy.uptime_window.total_seconds(),
        config.policy.good_download_bytes_per_second,
        config.policy.moderate_download_bytes_per_second,
        config.policy.good_threshold_for(None),
        config.policy.good_threshold_for(400),
        config.policy.good_threshold_for(1000),
        config.lab.min_memory_bytes,
        config.lab.min_system_disk_bytes,
    ) == (900.0, 604800.0, 2.5e6, 125000.0, 2.5e6, 2.5e6, 6.25e6, 4 * 1024**3, 64e9)


def test_file_overrides_holidays_and_one_day_of_the_timetable(tmp_path: Path):
    """A TOML file changes what it names; a listed day replaces that day only."""
    path = tmp_path / "collector.toml"
    path.write_text(
        "[server]\nport = 9000\n"
        "[policy]\noffline_after_minutes = 20\n"
        '[sessions]\ntimezone = "Asia/Bangkok"\n'
        'holidays = [2026-01-01, "2026-02-14..2026-02-22"]\n'
        '[sessions.timetable]\nsat = ["07:30-11:00"]\n'
        "[lab.pcs_required]\nprimary = 20\n",
        encoding="utf-8",
    )

    config = load_config(path)

    assert (
        config.server.port,
        config.policy.offline_after_minutes,
        config.sessions.timezone,
        config.sessions.holidays,
        config.sessions.timetable["sat"],
        config.sessions.timetable["fri"],
        config.lab.pcs_required,
    ) == (
        9000,
        20,
        "Asia/Bangkok",
        (
            HolidayRange(date(2026, 1, 1), date(2026, 1, 1)),
            HolidayRange(date(2026, 2, 14), date(2026, 2, 22)),
        ),
        (Period(time(7, 30), time(11, 0)),),
        (MORNING, AFTERNOON),
        {"primary": 20, "lower_secondary": 23},
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[policy]\nofline_after_minutes = 10\n",
            "collector.toml: unknown key 'policy.ofline_after_minutes'; accepted keys "
            "here: offline_after_minutes, uptime_window_days, good_download_mbps, "
            "good_download_kbps_per_student, per_student_above_students, "
            "moderate_download_mbps, connected_uptime_ratio",
        ),
        (
            "[serverr]\n",
            "collector.toml: unknown key 'serverr'; accepted keys here: server, "
            "policy, lab, sessions, metrics, speedtest, retention",
        ),
        (
            "[policy]\nconnected_uptime_ratio = 95\n",
            "collector.toml: policy.connected_uptime_ratio = 95: Input should be less "
            "than or equal to 1",
        ),
        (
            '[sessions]\ntimezone = "Hanoi"\n',
            "collector.toml: sessions.timezone = 'Hanoi': time zone 'Hanoi' is "
            "unknown; use an IANA name such as Asia/Ho_Chi_Minh",
        ),
        (
            '[sessions]\nholidays = ["2026-02-30"]\n',
            "collector.toml: sessions.holidays = ['2026-02-30']: holiday "
            "'2026-02-30' is not a date; accepted: YYYY-MM-DD or "
            "YYYY-MM-DD..YYYY-MM-DD",
        ),
        (
            '[sessions.timetable]\nmonday = ["07:00-11:30"]\n',
            "collector.toml: sessions.timetable = {'monday': ['07:00-11:30']}: day "
            "'monday' is unknown; accepted: mon, tue, wed, thu, fri, sat, sun",
        ),
        (
            '[sessions.timetable]\nmon = ["7h-11h30"]\n',
            "collector.toml: sessions.timetable = {'mon': ['7h-11h30']}: period "
            "'7h-11h30' is not understood; accepted: \"HH:MM-HH:MM\"",
        ),
        (
            "[lab.pcs_required]\nkindergarten = 5\n",
            "collector.toml: lab.pcs_required = {'kindergarten': 5}: level "
            "'kindergarten' is unknown; accepted: preschool, primary, lower_secondary, "
            "upper_secondary, other",
        ),
        (
            "[server]\nreport_interval_seconds = 60\nreport_jitter_seconds = 60\n",
            "collector.toml: server = {'report_interval_seconds': 60, "
            "'report_jitter_seconds': 60}: report_jitter_seconds 60 must be below "
            "report_interval_seconds 60",
        ),
    ],
)
def test_bad_file_is_refused_naming_key_value_and_accepted(
    tmp_path: Path, toml: str, message: str
):
    """Unknown keys and bad values give one error naming them and what fits."""
    path = tmp_path / "collector.toml"
    path.write_text(toml, encoding="utf-8")

    with pytest.raises(ConfigError) as error:
        load_config(path)

    assert str(error.value) == message.replace("collector.toml", str(path))


def test_missing_and_broken_files_are_named(tmp_path: Path):
    """A missing file and a file that is not TOML both name the file."""
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n", encoding="utf-8")

    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as bad:
        load_config(broken)

    assert (str(missing.value), str(bad.value).split(":")[0:2]) == (
        f"configuration file {str(tmp_path / 'nope.toml')!r} does not exist",
        [str(broken), " not valid TOML"],
    )
