"""Placing agent samples in collector time (server/clocks.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from schoolmon.server.clocks import METHODS, USABLE_METHODS, place, skew


def utc(text: str) -> datetime:
    """An aware UTC datetime from ISO text without zone."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


RECEIVED = utc("2026-12-01T03:41:02")  # 10:41:02 in Ho Chi Minh City
SENT_MONO = 20_000.0
YEARS_OFF = utc("2009-01-01T05:00:00") - utc("2026-12-01T03:41:01")


def test_sample_of_the_same_boot_is_placed_by_the_monotonic_offset():
    """A sample buffered 2.5 h during an outage lands 2.5 h before the receive time,
    whatever the wall clock said (here a dead CMOS battery's year 2009)."""
    placed = place(
        SENT_MONO - 9000.0, "boot-2", utc("2009-01-01T02:30:00"),
        SENT_MONO, "boot-2", utc("2009-01-01T05:00:00"),
        RECEIVED, None,
    )  # fmt: skip

    assert placed == (utc("2026-12-01T01:11:02"), "monotonic")


def test_sample_from_a_previous_boot_uses_the_last_measured_skew():
    """After a reboot the monotonic clock restarts; the old boot's sample is placed by
    its wall time minus the device's last measured skew, even years off."""
    last_skew = YEARS_OFF.total_seconds()
    sample_wall = utc("2026-12-01T01:10:01") + YEARS_OFF

    placed = place(
        7000.0, "boot-1", sample_wall,
        SENT_MONO, "boot-2", utc("2011-06-01T00:00:00"),
        RECEIVED, last_skew,
    )  # fmt: skip

    assert placed == (utc("2026-12-01T01:10:01"), "skew")


def test_previous_boot_without_known_skew_uses_this_reports_skew():
    """A PC that keeps its clock seven hours behind (UTC set as local time) and has
    no skew on record is corrected by the skew measured on this report."""
    behind = timedelta(hours=-7)

    placed = place(
        7000.0, "boot-1", utc("2026-12-01T01:10:00") + behind,
        SENT_MONO, "boot-2", utc("2026-12-01T03:41:00") + behind,
        RECEIVED, None,
    )  # fmt: skip

    assert placed == (utc("2026-12-01T01:10:02"), "report_skew")


def test_sample_without_boot_id_falls_back_to_wall_time():
    """A sample with no boot id and a correct clock keeps its wall time."""
    placed = place(
        None, None, utc("2026-12-01T03:00:00"),
        SENT_MONO, "boot-2", utc("2026-12-01T03:41:01"),
        RECEIVED, None,
    )  # fmt: skip

    assert placed == (utc("2026-12-01T03:00:00"), "report_skew")


@pytest.mark.parametrize(
    ("sample_mono", "expected_method"),
    [
        (SENT_MONO + 5.0, "skew_after_bad_monotonic"),  # negative offset
        (SENT_MONO - 40 * 86400.0, "skew_after_bad_monotonic"),  # older than 31 days
    ],
)
def test_negative_or_implausible_monotonic_offset_falls_back_and_says_so(
    sample_mono, expected_method
):
    """A monotonic offset that cannot be right is not used; the method names why."""
    placed = place(
        sample_mono, "boot-2", utc("2026-12-01T03:00:10"),
        SENT_MONO, "boot-2", utc("2026-12-01T03:41:11"),
        RECEIVED, 10.0,
    )  # fmt: skip

    assert placed == (utc("2026-12-01T03:00:00"), expected_method)


def test_sample_with_no_plausible_time_is_unplaced():
    """An old boot's wall time in 2009 with no skew on record and a synchronised
    clock now cannot be placed; it gets the receive time and 'unplaced'."""
    placed = place(
        500.0, "boot-1", utc("2009-01-01T00:10:00"),
        SENT_MONO, "boot-2", utc("2026-12-01T03:41:01"),
        RECEIVED, None,
    )  # fmt: skip

    assert placed == (RECEIVED, "unplaced")
    assert "unplaced" not in USABLE_METHODS and placed[1] in METHODS


def test_skew_so_large_it_leaves_the_calendar_is_not_used():
    """A last skew that would move the wall time out of the calendar is skipped."""
    placed = place(
        None, None, utc("2026-12-01T03:00:00"),
        SENT_MONO, "boot-2", utc("2026-12-01T03:41:01"),
        RECEIVED, -1e11,
    )  # fmt: skip

    assert placed == (utc("2026-12-01T03:00:00"), "report_skew")


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2026-12-01T03:46:02", 300.0),  # five minutes ahead
        ("2026-12-01T03:41:02", 0.0),
        ("2026-12-01T03:40:50", 0.0),  # twelve seconds of transit
        ("2026-12-01T03:40:02", -60.0),
        ("2009-01-01T00:00:00", -565_328_462.0),  # dead CMOS battery
    ],
)
def test_skew_is_positive_when_the_agent_is_ahead(sent, expected):
    """Skew is sent_at minus received_at, with transit-sized lags counted as 0."""
    assert skew(utc(sent), RECEIVED, 30.0) == expected


def test_negative_transit_allowance_is_rejected():
    """A negative allowance is an error naming the value."""
    with pytest.raises(ValueError, match="transit_allowance -1.0 is negative"):
        skew(RECEIVED, RECEIVED, -1.0)


def test_naive_datetime_is_rejected_by_name():
    """A naive received_at is an error naming the argument."""
    with pytest.raises(ValueError, match="received_at .* is not an aware datetime"):
        place(
            1.0, "b", RECEIVED, 2.0, "b", RECEIVED,
            RECEIVED.replace(tzinfo=None), None,
        )  # fmt: skip
