"""Values that compare equal to a range, so a test can assert a whole result dict
whose timings and rates vary from run to run."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Between:
    """Equal to any int or float in ``low``..``high`` (inclusive)."""

    low: float
    high: float

    def __eq__(self, other: object) -> bool:
        number = isinstance(other, int | float) and not isinstance(other, bool)
        return number and self.low <= other <= self.high

    def __hash__(self) -> int:
        return hash((self.low, self.high))


def within(target: float, ratio: float) -> Between:
    """Equal to values within ``ratio`` (0.1 for +-10 %) of ``target``."""
    return Between(target * (1 - ratio), target * (1 + ratio))


class IsoUtc:
    """Equal to an ISO 8601 UTC time string with a ``Z`` (``2026-12-03T01:05:00Z``)."""

    pattern = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(self.pattern.match(other))

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "IsoUtc()"
