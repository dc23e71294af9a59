"""Figures per school: offline now, devices by state, the Internet verdict."""

from __future__ import annotations

from datetime import timedelta

import pytest
from schoolmon.server.figures import cycle_reached_internet, school_figures


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
        "C02": True,  # never reported, in session
        "C03": True,
    }


def test_nothing_is_offline_out_of_session(registered, config, clock):
    """On Sunday no school is offline, reported or not."""
    clock.advance(days=5)  # Sunday 6 December 2026, 09:00 local

    figures = school_figures(registered, config, clock())

    assert [(f.in_session, f.offline_now) for f in figures.values()] == [
        (False, False)
    ] * 3


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


def sample(scope: str, kind: str, ok: bool) -> dict:
    return {"scope": scope, "kind": kind, "ok": ok}


@pytest.mark.parametrize(
    ("cycle", "reached"),
    [
        ([sample("internet", "https", True)], True),
        ([sample("internet", "dns", True), sample("internet", "https", False)], False),
        (
            [sample("internet", "https", False), sample("collector", "https", True)],
            False,
        ),
        ([sample("collector", "https", True)], True),
        ([sample("collector", "tcp", True)], False),
        ([], False),
    ],
)
def test_a_cycle_reached_the_internet_by_an_ok_https_sample(cycle, reached):
    """Internet-scope https decides; collector counts only without internet samples."""
    assert cycle_reached_internet(cycle) is reached
