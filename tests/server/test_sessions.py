"""Sessions: local timetable and holidays, answered in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from schoolmon.server.config import Config, config_from_mapping
from schoolmon.server.sessions import (
    day_sessions,
    in_session,
    session_intervals,
    session_seconds,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


SESSIONS = Config().sessions


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (utc(2026, 11, 30, 23, 59, 59), False),  # Tuesday 06:59:59 local
        (utc(2026, 12, 1, 0, 0), True),  # Tuesday 07:00 local: session opens
        (utc(2026, 12, 1, 4, 29, 59), True),  # 11:29:59
        (utc(2026, 12, 1, 4, 30), False),  # 11:30: lunch break
        (utc(2026, 12, 1, 6, 30), True),  # 13:30
        (utc(2026, 12, 1, 10, 0), False),  # 17:00: closed
        (utc(2026, 12, 5, 3, 0), True),  # Saturday 10:00
        (utc(2026, 12, 6, 3, 0), False),  # Sunday 10:00
    ],
)
def test_in_session_at_the_local_edges(instant: datetime, expected: bool):
    """07:00 in Asia/Ho_Chi_Minh is 00:00 UTC; periods include start, exclude end."""
    assert in_session(SESSIONS, instant) is expected


def test_intervals_of_a_school_day_in_utc():
    """A Tuesday gives the morning and the afternoon periods, in UTC."""
    assert session_intervals(SESSIONS, utc(2026, 11, 30, 12), utc(2026, 12, 1, 12)) == [
        (utc(2026, 12, 1, 0, 0), utc(2026, 12, 1, 4, 30)),
        (utc(2026, 12, 1, 6, 30), utc(2026, 12, 1, 10, 0)),
    ]


def test_intervals_are_clipped_to_the_window():
    """Periods overlapping the window's edges are cut at them."""
    assert session_intervals(SESSIONS, utc(2026, 12, 1, 1), utc(2026, 12, 1, 7)) == [
        (utc(2026, 12, 1, 1, 0), utc(2026, 12, 1, 4, 30)),
        (utc(2026, 12, 1, 6, 30), utc(2026, 12, 1, 7, 0)),
    ]


def test_a_week_has_six_school_days_and_no_sunday():
    """Monday 30 Nov to Monday 7 Dec 2026: six days of 8 hours, Sunday empty."""
    start, end = utc(2026, 11, 29, 17), utc(2026, 12, 6, 17)  # local midnights

    assert (
        session_seconds(SESSIONS, start, end),
        session_intervals(SESSIONS, utc(2026, 12, 5, 17), utc(2026, 12, 6, 17)),
    ) == (6 * 8 * 3600, [])


def test_holidays_and_holiday_ranges_have_no_session():
    """A single holiday and a range of holidays remove whole local days."""
    sessions = config_from_mapping(
        {"sessions": {"holidays": ["2026-12-01", "2026-12-03..2026-12-04"]}}
    ).sessions

    assert [
        in_session(sessions, utc(2026, 11, 30, 3)),
        in_session(sessions, utc(2026, 12, 1, 3)),
        in_session(sessions, utc(2026, 12, 2, 3)),
        in_session(sessions, utc(2026, 12, 3, 3)),
        in_session(sessions, utc(2026, 12, 4, 3)),
        in_session(sessions, utc(2026, 12, 5, 3)),
    ] == [True, False, True, False, False, True]


def test_a_school_in_another_zone_across_a_dst_change():
    """Europe/Berlin 07:00 is 06:00 UTC in winter and 05:00 UTC in summer."""
    friday = session_intervals(
        SESSIONS, utc(2026, 3, 27), utc(2026, 3, 28), timezone="Europe/Berlin"
    )
    monday = session_intervals(
        SESSIONS, utc(2026, 3, 30), utc(2026, 3, 31), timezone="Europe/Berlin"
    )

    assert (friday, monday) == (
        [
            (utc(2026, 3, 27, 6), utc(2026, 3, 27, 10, 30)),
            (utc(2026, 3, 27, 12, 30), utc(2026, 3, 27, 16)),
        ],
        [
            (utc(2026, 3, 30, 5), utc(2026, 3, 30, 9, 30)),
            (utc(2026, 3, 30, 11, 30), utc(2026, 3, 30, 15)),
        ],
    )


def test_a_local_day_that_starts_the_previous_utc_day():
    """In Pacific/Auckland (UTC+13 in December) Tuesday 07:00 is Monday 18:00 UTC."""
    assert session_intervals(
        SESSIONS, utc(2026, 11, 30, 12), utc(2026, 11, 30, 23), "Pacific/Auckland"
    ) == [(utc(2026, 11, 30, 18), utc(2026, 11, 30, 22, 30))]


def test_an_empty_window_has_no_intervals():
    """A window whose end is not after its start holds nothing."""
    assert session_intervals(SESSIONS, utc(2026, 12, 1, 3), utc(2026, 12, 1, 3)) == []


def test_day_sessions_are_the_local_day_of_session_intervals():
    """A local day's sessions, asked twice (the second from the cache), are the
    intervals between its local midnights."""
    midnight, next_midnight = utc(2026, 11, 30, 17), utc(2026, 12, 1, 17)
    expected = session_intervals(SESSIONS, midnight, next_midnight)

    assert day_sessions(SESSIONS, date(2026, 12, 1)) == expected
    assert day_sessions(SESSIONS, date(2026, 12, 1)) == expected


def test_day_sessions_follow_the_settings_they_are_given():
    """Other settings (a holiday) on the same day give their own answer."""
    holiday = config_from_mapping({"sessions": {"holidays": ["2026-12-01"]}}).sessions

    assert day_sessions(SESSIONS, date(2026, 12, 1)) != []
    assert day_sessions(holiday, date(2026, 12, 1)) == []
    assert day_sessions(SESSIONS, date(2026, 12, 1), "Europe/Paris") == (
        session_intervals(
            SESSIONS, utc(2026, 11, 30, 23), utc(2026, 12, 1, 23), "Europe/Paris"
        )
    )
