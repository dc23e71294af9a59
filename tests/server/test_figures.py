"""Figures per school from a real database: offline now, devices by state, the
Internet verdict of a probe cycle, and the catalog's buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from schoolmon.server.config import config_from_mapping
from schoolmon.server.figures import (
    age_bucket,
    memory_bucket,
    os_label,
    school_figures,
)
from schoolmon.server.policy import GIB, DeviceFacts, Policy


def enrolled(storage, clock, device_id: str, school: str, role: str = "lab") -> None:
    storage.add_device(
        {
            "id": device_id,
            "school": school,
            "role": role,
            "credential_hash": device_id,
            "enrolled_at": clock(),
        }
    )


@pytest.mark.parametrize(
    ("silence", "offline"),
    [(timedelta(minutes=14, seconds=59), False), (timedelta(minutes=15), True)],
)
def test_school_is_offline_after_15_minutes_of_silence_in_session(
    registered, config, clock, silence, offline
):
    """A school whose last report is 15 minutes old in session is offline."""
    enrolled(registered, clock, "d_1", "C01")
    registered.update_device("d_1", last_seen_at=clock())
    clock.advance(silence.total_seconds())

    figures = school_figures(registered, config, clock())

    assert {code: f.offline_now for code, f in figures.items()} == {
        "C01": offline,
        "C02": True,  # never reported, in session since 07:00
        "C03": True,
    }


def test_nothing_is_offline_out_of_session(registered, config, clock):
    """On Sunday no school is offline, reported or not."""
    clock.advance(days=5)  # Sunday 6 December 2026, 09:00 local

    figures = school_figures(registered, config, clock())

    assert [(f.in_session, f.offline_now) for f in figures.values()] == [
        (False, False)
    ] * 3


@pytest.mark.parametrize(
    ("local_time", "day", "offline"),
    [
        ("06:59:59", 1, False),  # before the session: not offline
        ("07:14:59", 1, False),  # in session for less than 15 minutes
        ("07:15:00", 1, True),
        ("13:44:59", 1, False),  # the afternoon period starts at 13:30
        ("13:45:00", 1, True),
        ("09:00:00", 6, False),  # Sunday
        ("09:00:00", 2, False),  # a configured holiday
    ],
)
def test_silence_counts_only_from_the_start_of_the_session_period(
    registered, clock, local_time, day, offline
):
    """mon-local-school-hours: silent since 06:00 local, offline from 07:15 local;
    not on Sunday or a holiday."""
    config = config_from_mapping({"sessions": {"holidays": ["2026-12-02"]}})
    enrolled(registered, clock, "d_1", "C01")
    registered.update_device("d_1", last_seen_at=datetime(2026, 11, 30, 23, tzinfo=UTC))
    hour, minute, second = (int(part) for part in local_time.split(":"))
    local = datetime(2026, 11, 30, hour, minute, second) + timedelta(days=day)
    clock.set(local.replace(tzinfo=UTC) - timedelta(hours=7))

    figures = school_figures(registered, config, clock())["C01"]

    assert (figures.in_session, figures.offline_now) == (
        local_time != "06:59:59" and day == 1,
        offline,
    )


def test_devices_counted_by_role_and_state(registered, config, clock):
    """online within 15 minutes, seen_7d within 7 days, never-seen in neither."""
    for device_id, role, age in [
        ("d_1", "lab", 60),
        ("d_2", "lab", 3 * 86400),
        ("d_3", "office", 8 * 86400),
        ("d_4", "teacher", None),
    ]:
        enrolled(registered, clock, device_id, "C02", role)
        if age is not None:
            registered.update_device(
                device_id, last_seen_at=clock() - timedelta(seconds=age)
            )

    devices = school_figures(registered, config, clock())["C02"].devices

    assert devices == {
        ("lab", "online"): 1,
        ("lab", "seen_7d"): 2,
        ("office", "online"): 0,
        ("office", "seen_7d"): 0,
        ("teacher", "online"): 0,
        ("teacher", "seen_7d"): 0,
        ("other", "online"): 0,
        ("other", "seen_7d"): 0,
    }


def probe_row(clock, seq: int, scope: str, kind: str, ok: bool) -> dict:
    """A stored probe sample of device d_1 (C02), all in one cycle."""
    at = clock() - timedelta(seconds=30 - seq)
    return {
        "device": "d_1",
        "school": "C02",
        "run": "r",
        "seq": seq,
        "cycle": 1,
        "wall_time": at,
        "placed_at": at,
        "received_at": clock(),
        "scope": scope,
        "kind": kind,
        "ok": ok,
    }


@pytest.mark.parametrize(
    ("cycle", "reached"),
    [
        ([("internet", "https", True)], True),
        ([("internet", "dns", True), ("internet", "https", False)], False),
        ([("internet", "https", False), ("collector", "https", True)], False),
        ([("collector", "https", True)], True),
        ([("collector", "tcp", True)], False),
        ([], None),
    ],
)
def test_a_cycle_reached_the_internet_by_an_ok_https_sample(
    registered, config, clock, cycle, reached
):
    """Internet-scope https decides; collector counts only without internet samples."""
    enrolled(registered, clock, "d_1", "C02")
    rows = [probe_row(clock, seq, *sample) for seq, sample in enumerate(cycle)]
    registered.insert_probe_samples(rows)

    figures = school_figures(registered, config, clock())["C02"]

    assert figures.internet_up is reached


def facts(installed: int | None, usable: int | None) -> DeviceFacts:
    return DeviceFacts(
        "d",
        "lab",
        None,
        None,
        installed_memory_bytes=installed,
        usable_memory_bytes=usable,
    )


@pytest.mark.parametrize(
    ("installed", "usable", "bucket"),
    [
        (2 * GIB, None, "lt_4gib"),
        (4 * GIB, 3 * GIB, "4_8gib"),
        (None, int(3.6 * GIB), "4_8gib"),  # a 4 GiB PC minus the firmware's share
        (None, int(3.2 * GIB), "lt_4gib"),
        (8 * GIB, None, "ge_8gib"),
        (None, None, "unknown"),
    ],
)
def test_memory_bucket_by_installed_memory(installed, usable, bucket):
    """Installed memory decides; usable memory plus 512 MiB when modules are unknown."""
    assert memory_bucket(facts(installed, usable), Policy()) == bucket


@pytest.mark.parametrize(
    ("os_data", "label"),
    [
        ({"name": "Microsoft Windows 10 Pro", "build": "19045"}, "Windows 10"),
        ({"name": "Microsoft Windows 10 Pro", "build": "22631"}, "Windows 11"),
        ({"name": "Microsoft Windows 7 Professional", "build": "7601"}, "Windows 7"),
        ({"name": "Microsoft Windows XP Professional"}, "Windows XP"),
        ({"name": "Ubuntu", "version": "22.04"}, "Ubuntu 22.04"),
        ({"name": None, "version": "22.04"}, "unknown"),
    ],
)
def test_os_label_is_family_and_version(os_data, label):
    """Windows by its release name (build 22000+ is 11); others name and version."""
    assert os_label(os_data) == label


@pytest.mark.parametrize(
    ("bios_date", "bucket"),
    [
        ("2023-01-15", "lt_5y"),
        ("2018-06-01", "5_10y"),
        ("2009-03-02", "ge_10y"),
        ("2031-01-01", "unknown"),
        (None, "unknown"),
        ("not a date", "unknown"),
    ],
)
def test_age_bucket_from_the_bios_date(bios_date, bucket, clock):
    """Years since the BIOS date; none, unreadable or in the future is unknown."""
    sections = {"system": {"status": "ok", "data": {"bios_date": bios_date}}}

    assert age_bucket(sections, clock()) == bucket
