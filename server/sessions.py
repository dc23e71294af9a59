"""School sessions: when a school is expected to be open.

A session is the union of the timetable's periods on the school's local dates, minus
holidays, in the school's time zone (the configuration's default unless the registry
gives the school its own). All instants in and out are aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schoolmon.server.config import Period, SessionSettings, check_timezone

Interval = tuple[datetime, datetime]
DAY_CACHE_MAX = 4096
# (id of the settings, time zone, local date) -> (the settings, that day's sessions).
# Each entry holds its settings, so the id in its key cannot be reused meanwhile.
_day_cache: dict[tuple[int, str | None, date], tuple[SessionSettings, list[Interval]]]
_day_cache = {}


def school_zone(sessions: SessionSettings, timezone: str | None = None) -> ZoneInfo:
    """The time zone of a school: its own if set, else the district's."""
    return check_timezone(timezone or sessions.timezone)


def in_session(
    sessions: SessionSettings, at: datetime, timezone: str | None = None
) -> bool:
    """True when ``at`` falls inside a session period of the school."""
    probe_end = at + timedelta(microseconds=1)
    return bool(session_intervals(sessions, at, probe_end, timezone))


def session_intervals(
    sessions: SessionSettings,
    start: datetime,
    end: datetime,
    timezone: str | None = None,
) -> list[Interval]:
    """Session intervals overlapping ``[start, end)``, clipped to it, in UTC order."""
    if end <= start:
        return []
    zone = school_zone(sessions, timezone)
    first_day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date()

    intervals = []
    for day in _days(first_day, last_day):
        if sessions.is_holiday(day):
            continue
        for period in sessions.periods_on(day.weekday()):
            lo, hi = _period_in_utc(day, period, zone)
            lo, hi = max(lo, start), min(hi, end)
            if lo < hi:
                intervals.append((lo, hi))
    return _merge(sorted(intervals))


def day_sessions(
    sessions: SessionSettings, day: date, timezone: str | None = None
) -> list[Interval]:
    """Session intervals of the school's local ``day`` (midnight to midnight), in UTC.

    Remembered per settings object, zone and day: every report asks for its
    school's today, and the settings are frozen.
    """
    key = (id(sessions), timezone, day)
    cached = _day_cache.get(key)
    if cached is not None and cached[0] is sessions:
        return list(cached[1])
    zone = school_zone(sessions, timezone)
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    intervals = session_intervals(sessions, start, end.astimezone(UTC), timezone)
    if len(_day_cache) >= DAY_CACHE_MAX:
        _day_cache.clear()
    _day_cache[key] = (sessions, intervals)
    return list(intervals)


def session_seconds(
    sessions: SessionSettings,
    start: datetime,
    end: datetime,
    timezone: str | None = None,
) -> float:
    """Total session time in ``[start, end)``, in seconds."""
    intervals = session_intervals(sessions, start, end, timezone)
    return sum((hi - lo).total_seconds() for lo, hi in intervals)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _period_in_utc(day: date, period: Period, zone: ZoneInfo) -> Interval:
    end_day = day + timedelta(days=1) if period.end == time(0) else day
    lo = datetime.combine(day, period.start, tzinfo=zone).astimezone(UTC)
    hi = datetime.combine(end_day, period.end, tzinfo=zone).astimezone(UTC)
    return lo, hi


def _merge(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for lo, hi in intervals:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
