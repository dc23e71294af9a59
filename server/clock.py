"""Clocks and the wire format of instants.

Every server component takes ``clock: Callable[[], datetime]`` returning an aware UTC
datetime; ``utcnow`` is the real one, ``ManualClock`` one that tests and the simulated
district move by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Return the current instant as an aware UTC datetime."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = _require_aware(start)

    def __call__(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (aware)."""
        self._now = _require_aware(instant)

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        """Move forward by ``seconds`` (and any ``timedelta`` keywords); return now."""
        self._now += timedelta(seconds=seconds, **delta)
        return self._now


def to_wire(instant: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with ``Z`` (microseconds if any)."""
    utc = _require_aware(instant).astimezone(UTC)
    text = utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_wire(text: str) -> datetime:
    """Parse an ISO 8601 instant with ``Z`` or an offset into an aware UTC datetime."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"instant {text!r} has no time zone; expected e.g. ...Z")
    return parsed.astimezone(UTC)


def to_storage(instant: datetime) -> str:
    """Format an instant for the database: fixed width, so text order is time order
    (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, always with microseconds)."""
    if instant.tzinfo is not UTC:
        instant = _require_aware(instant).astimezone(UTC)
    # isoformat writes what strftime("%Y-%m-%dT%H:%M:%S.%fZ") did, in a third less
    # time (and pads years before 1000 to four digits, which strftime did not).
    return instant.isoformat(timespec="microseconds")[:-6] + "Z"


def from_storage(text: str | None) -> datetime | None:
    """Read an instant written by ``to_storage`` (None stays None)."""
    return None if text is None else parse_wire(text)


def _require_aware(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant!r}; clocks deal in aware UTC times")
    return instant
