"""Placing agent samples in collector time.

Agents' wall clocks are not trusted: lab PCs with a dead CMOS battery boot into a
year long gone, others run in the wrong time zone. Each sample also carries the
agent's monotonic clock and boot id; the report carries both clocks at sending time.
Within one boot the monotonic offset between sample and report is exact, so the
sample lies that long before the collector received the report. A sample from an
earlier boot has only its wall time, corrected by the skew the collector last
measured for the device.

``place`` returns the instant and a method from ``METHODS``; samples placed by
``UNPLACED`` carry no trustworthy time and must be left out of time-based figures.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

logger = logging.getLogger(__name__)

MONOTONIC = "monotonic"
SKEW = "skew"
REPORT_SKEW = "report_skew"
WALL = "wall"
UNPLACED = "unplaced"
BAD_MONOTONIC_SUFFIX = "_after_bad_monotonic"

METHODS = frozenset(
    {MONOTONIC, SKEW, REPORT_SKEW, WALL, UNPLACED}
    | {m + BAD_MONOTONIC_SUFFIX for m in (SKEW, REPORT_SKEW, WALL, UNPLACED)}
)
"""Every method ``place`` may return."""

USABLE_METHODS = METHODS - {UNPLACED, UNPLACED + BAD_MONOTONIC_SUFFIX}
"""Methods whose instants uptime and other time-based figures may use."""

DEFAULT_TRANSIT_ALLOWANCE = 30.0
"""Seconds a report may plausibly take from ``sent_at`` to being received."""

DEFAULT_MAX_AGE = timedelta(days=31)
"""Oldest plausible sample relative to its report (the agent's outbox keeps less)."""

FUTURE_ALLOWANCE = timedelta(seconds=DEFAULT_TRANSIT_ALLOWANCE)


def skew(
    report_sent_wall: datetime,
    received_at: datetime,
    transit_allowance: float = DEFAULT_TRANSIT_ALLOWANCE,
) -> float:
    """Seconds the agent's clock is ahead of the collector's (negative: behind).

    Measured as ``report_sent_wall - received_at``, the same reference the monotonic
    placement uses (both place a sample late by the report's transit time, so the two
    methods agree). A value in ``[-transit_allowance, 0]`` is what a correct clock
    shows on a slow link and counts as 0.
    """
    _require_aware("report_sent_wall", report_sent_wall)
    _require_aware("received_at", received_at)
    if transit_allowance < 0:
        raise ValueError(
            f"transit_allowance {transit_allowance!r} is negative; "
            "expected seconds >= 0"
        )

    ahead = (report_sent_wall - received_at).total_seconds()
    return 0.0 if -transit_allowance <= ahead <= 0 else ahead


def place(
    sample_monotonic: float | None,
    sample_boot_id: str | None,
    sample_wall: datetime,
    report_sent_monotonic: float | None,
    report_boot_id: str | None,
    report_sent_wall: datetime,
    received_at: datetime,
    last_skew: float | None,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> tuple[datetime, str]:
    """Place one sample in collector time; return ``(placed_at, method)``.

    Order of preference: the monotonic offset when the sample's boot is the report's
    (``monotonic``); else the sample's wall time corrected by ``last_skew``, the
    skew last measured for the device before this report (``skew``); else corrected
    by this report's own skew (``report_skew``: right when the clock is consistently
    off, e.g. a wrong time zone); else the raw wall time (``wall``). A candidate is
    plausible when it lies within ``max_age`` before ``received_at`` and not after
    it (beyond the transit allowance). When the boot ids matched but the monotonic
    offset was negative or implausible, the method carries the suffix
    ``_after_bad_monotonic``. When nothing is plausible the result is
    ``(received_at, "unplaced")``.
    """
    for name, value in (
        ("sample_wall", sample_wall),
        ("report_sent_wall", report_sent_wall),
        ("received_at", received_at),
    ):
        _require_aware(name, value)

    suffix = ""
    same_boot = sample_boot_id is not None and sample_boot_id == report_boot_id
    if same_boot and sample_monotonic is not None and report_sent_monotonic is not None:
        offset = report_sent_monotonic - sample_monotonic
        if 0 <= offset <= max_age.total_seconds():
            return received_at - timedelta(seconds=offset), MONOTONIC
        logger.debug("implausible monotonic offset %.3f s; falling back", offset)
        suffix = BAD_MONOTONIC_SUFFIX

    return _place_by_wall(
        sample_wall, report_sent_wall, received_at, last_skew, max_age, suffix
    )


def _place_by_wall(
    sample_wall: datetime,
    report_sent_wall: datetime,
    received_at: datetime,
    last_skew: float | None,
    max_age: timedelta,
    suffix: str,
) -> tuple[datetime, str]:
    candidates = []
    if last_skew is not None:
        candidates.append((SKEW, last_skew))
    candidates.append((REPORT_SKEW, skew(report_sent_wall, received_at)))
    candidates.append((WALL, 0.0))

    for method, correction in candidates:
        placed = _shift(sample_wall, -correction)
        if placed is not None and _plausible(placed, received_at, max_age):
            return placed, method + suffix
    logger.debug("sample wall time %s cannot be placed", sample_wall.isoformat())
    return received_at, UNPLACED + suffix


def _shift(instant: datetime, seconds: float) -> datetime | None:
    """``instant`` moved by ``seconds``, or None when that leaves the calendar."""
    try:
        return instant + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _plausible(placed: datetime, received_at: datetime, max_age: timedelta) -> bool:
    return received_at - max_age <= placed <= received_at + FUTURE_ALLOWANCE


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(
            f"{name} {value!r} is not an aware datetime; expected an aware UTC instant"
        )
