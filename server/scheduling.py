"""Which PC runs a speed test, and when.

Pure logic: the caller loads a school's ``SlotState``, asks ``decide`` while
answering a report, and saves the new state with a compare-and-set on its
``version`` (see ``decide_atomically``), so several collector processes agree.

Each session day is cut into ``policy.slots_per_day`` slots of equal session time
(the lunch break does not count). Inside each slot a moment is drawn from a hash of
``(policy.seed, school, day, slot)``, so every process computes the same one. The
first eligible PC (role ``lab`` or ``office``) that reports after the moment gets a
lease: the instruction to run one test, valid ``policy.lease_seconds``. A lease that
expires, or a failed result, lets another PC that has not tried in this slot take
over, up to ``policy.max_attempts_per_slot`` attempts; one good result closes the
slot. No test is handed out when the school's monthly data budget would be exceeded
(estimated from the median ``bytes_used`` of its recent good tests), nor while the
speedtest-net backend backs off after "test service refused" or "rate limited"
(growing minutes, no alert: a refusal says nothing about the school's link).

The slot's day is named by the UTC date of the day's first session start; the
budget month is the UTC month of ``now``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

logger = logging.getLogger(__name__)

Interval = tuple[datetime, datetime]
Instruction = dict[str, str]

BACKENDS = ("collector", "speedtest-net")
BACKOFF_REASONS = ("test service refused", "rate limited")


@dataclass(frozen=True)
class SpeedtestPolicy:
    """The district's speed-test rules (defaults from the configuration)."""

    slots_per_day: int = 3
    seed: str = "schoolmon"
    moment_spread: float = 0.5
    lease_seconds: float = 900.0
    max_attempts_per_slot: int = 3
    roles: tuple[str, ...] = ("lab", "office")
    monthly_budget_bytes: int | None = 4_000_000_000
    default_estimate_bytes: int = 100_000_000
    backend: str = "collector"
    backoff_initial_seconds: float = 300.0
    backoff_factor: float = 2.0
    backoff_max_seconds: float = 6 * 3600.0
    history_size: int = 20

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r}; expected one of {BACKENDS}")
        if self.slots_per_day < 1 or self.max_attempts_per_slot < 1:
            raise ValueError(
                f"slots_per_day {self.slots_per_day!r} and max_attempts_per_slot "
                f"{self.max_attempts_per_slot!r} must be at least 1"
            )
        if not 0 <= self.moment_spread <= 1:
            raise ValueError(f"moment_spread {self.moment_spread!r}; expected 0 to 1")


@dataclass(frozen=True)
class Slot:
    """One speed-test slot of a school's day."""

    key: str
    index: int
    start: datetime
    end: datetime
    moment: datetime


@dataclass(frozen=True)
class ReportingDevice:
    """The device whose report is being answered."""

    id: str
    role: str


@dataclass(frozen=True)
class SpeedtestResult:
    """What scheduling needs from a delivered speed test."""

    ok: bool
    reason: str | None
    backend: str
    bytes_used: int | None

    @classmethod
    def from_wire(cls, data: Mapping) -> SpeedtestResult:
        """Build from a wire-format speed test (design.md "Speed test")."""
        return cls(
            data["ok"], data.get("reason"), data["backend"], data.get("bytes_used")
        )


@dataclass(frozen=True)
class SlotState:
    """A school's speed-test scheduling state; ``version`` guards concurrent writes."""

    school: str
    version: int = 0
    slot: str | None = None
    lease_holder: str | None = None
    lease_expires: datetime | None = None
    attempts: int = 0
    tried: tuple[str, ...] = ()
    done: bool = False
    month: str | None = None
    month_bytes: int = 0
    recent_bytes: tuple[int, ...] = field(default=())
    backoff_until: datetime | None = None
    backoff_level: int = 0

    def to_json(self) -> str:
        """Serialise for a storage column."""
        data = asdict(self)
        for name in ("lease_expires", "backoff_until"):
            data[name] = None if data[name] is None else data[name].isoformat()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SlotState:
        """Read what ``to_json`` wrote."""
        data = json.loads(text)
        for name in ("lease_expires", "backoff_until"):
            if data[name] is not None:
                data[name] = datetime.fromisoformat(data[name])
        data["tried"] = tuple(data["tried"])
        data["recent_bytes"] = tuple(data["recent_bytes"])
        return cls(**data)


DEFAULT_POLICY = SpeedtestPolicy()


def slot_plan(
    school: str, session_intervals_today: Sequence[Interval], policy: SpeedtestPolicy
) -> list[Slot]:
    """The day's slots with their moments; empty on a day without session."""
    intervals = _normalise(session_intervals_today)
    if not intervals:
        return []
    total = sum((hi - lo).total_seconds() for lo, hi in intervals)
    day = intervals[0][0].date().isoformat()
    size = total / policy.slots_per_day

    slots = []
    for index in range(policy.slots_per_day):
        fraction = _fraction(policy.seed, school, day, index)
        moment = round(index * size + fraction * policy.moment_spread * size)
        slots.append(
            Slot(
                key=f"{school}/{day}/{index}",
                index=index,
                start=_at_offset(intervals, index * size),
                end=_at_offset(intervals, (index + 1) * size, closing=True),
                moment=_at_offset(intervals, moment),
            )
        )
    return slots


def current_slot(
    school: str,
    session_intervals_today: Sequence[Interval],
    now: datetime,
    policy: SpeedtestPolicy,
) -> Slot | None:
    """The slot ``now`` falls in, when ``now`` is in session; else None."""
    if not any(lo <= now < hi for lo, hi in session_intervals_today):
        return None
    for slot in slot_plan(school, session_intervals_today, policy):
        if slot.start <= now < slot.end:
            return slot
    return None


def decide(
    now: datetime,
    school: str,
    device: ReportingDevice,
    state: SlotState,
    session_intervals_today: Sequence[Interval],
    policy: SpeedtestPolicy = DEFAULT_POLICY,
) -> tuple[Instruction | None, SlotState]:
    """Whether the reporting device should run a speed test now.

    Returns ``(instruction, new_state)``; ``new_state is state`` when nothing
    changed (nothing to save). A handed-out test returns a state with
    ``version + 1`` that the caller must save by compare-and-set.
    """
    if state.school != school:
        raise ValueError(f"state of school {state.school!r} used for school {school!r}")
    slot = current_slot(school, session_intervals_today, now, policy)
    refusal = _refusal(now, slot, device, state, policy)
    if refusal is not None:
        logger.debug("no speed test for %s at %s: %s", device.id, school, refusal)
        return None, state

    granted = _grant(now, slot, device, state, policy)
    logger.info(
        "speed test slot %s handed to device %s (attempt %d, backend %s)",
        slot.key, device.id, granted.attempts, policy.backend,
    )  # fmt: skip
    return {"kind": "run_speedtest", "backend": policy.backend}, granted


def record_result(
    state: SlotState,
    device: str,
    result: SpeedtestResult,
    now: datetime,
    policy: SpeedtestPolicy = DEFAULT_POLICY,
) -> SlotState:
    """The state after a device delivered a speed test (good or failed)."""
    month = _month(now)
    month_bytes = state.month_bytes if state.month == month else 0
    recent = state.recent_bytes
    if result.ok and result.bytes_used is not None:
        recent = (*recent, result.bytes_used)[-policy.history_size :]

    new = replace(
        state,
        version=state.version + 1,
        month=month,
        month_bytes=month_bytes + (result.bytes_used or 0),
        recent_bytes=recent,
    )
    new = _settle_slot(new, device, result)
    return _settle_backoff(new, result, now, policy)


def decide_atomically(
    now: datetime,
    school: str,
    device: ReportingDevice,
    session_intervals_today: Sequence[Interval],
    policy: SpeedtestPolicy,
    load: Callable[[], SlotState],
    compare_and_set: Callable[[SlotState, SlotState], bool],
    tries: int = 3,
) -> Instruction | None:
    """``decide`` with the storage's compare-and-set; a lost race is decided again.

    ``compare_and_set(expected, new)`` must store ``new`` only if the stored version
    still equals ``expected.version`` and say whether it did.
    """
    for _ in range(tries):
        state = load()
        instruction, new = decide(
            now, school, device, state, session_intervals_today, policy
        )
        if new is state or compare_and_set(state, new):
            return instruction
        logger.debug("speed-test state of %s changed meanwhile; deciding again", school)
    return None


def record_result_atomically(
    device: str,
    result: SpeedtestResult,
    now: datetime,
    policy: SpeedtestPolicy,
    load: Callable[[], SlotState],
    compare_and_set: Callable[[SlotState, SlotState], bool],
    tries: int = 5,
) -> bool:
    """``record_result`` with compare-and-set; False if every try lost its race."""
    for _ in range(tries):
        state = load()
        if compare_and_set(state, record_result(state, device, result, now, policy)):
            return True
    logger.warning("speed-test state not updated after %d tries", tries)
    return False


def estimate_bytes(state: SlotState, policy: SpeedtestPolicy) -> int:
    """Bytes the next test will likely use: median of recent good tests."""
    if not state.recent_bytes:
        return policy.default_estimate_bytes
    return int(statistics.median(state.recent_bytes))


def _refusal(
    now: datetime,
    slot: Slot | None,
    device: ReportingDevice,
    state: SlotState,
    policy: SpeedtestPolicy,
) -> str | None:
    if slot is None or now < slot.moment:
        return "no slot open"
    if device.role not in policy.roles:
        return f"role {device.role!r} does not run speed tests"
    if state.slot == slot.key:
        refusal = _slot_refusal(now, device, state, policy)
        if refusal is not None:
            return refusal
    if not _within_budget(now, state, policy):
        return "monthly data budget reached"
    if _backing_off(now, state, policy):
        return f"speedtest-net backing off until {state.backoff_until}"
    return None


def _slot_refusal(
    now: datetime, device: ReportingDevice, state: SlotState, policy: SpeedtestPolicy
) -> str | None:
    if state.done:
        return "slot already has a result"
    if state.lease_holder is not None and now < state.lease_expires:
        return f"lease held by {state.lease_holder}"
    if state.attempts >= policy.max_attempts_per_slot:
        return "no attempts left in this slot"
    if device.id in state.tried:
        return "device already tried in this slot"
    return None


def _within_budget(now: datetime, state: SlotState, policy: SpeedtestPolicy) -> bool:
    if policy.monthly_budget_bytes is None:
        return True
    used = state.month_bytes if state.month == _month(now) else 0
    return used + estimate_bytes(state, policy) <= policy.monthly_budget_bytes


def _backing_off(now: datetime, state: SlotState, policy: SpeedtestPolicy) -> bool:
    if policy.backend != "speedtest-net" or state.backoff_until is None:
        return False
    return now < state.backoff_until


def _grant(
    now: datetime,
    slot: Slot,
    device: ReportingDevice,
    state: SlotState,
    policy: SpeedtestPolicy,
) -> SlotState:
    if state.slot != slot.key:
        state = replace(state, slot=slot.key, attempts=0, tried=(), done=False)
    return replace(
        state,
        version=state.version + 1,
        lease_holder=device.id,
        lease_expires=now + timedelta(seconds=policy.lease_seconds),
        attempts=state.attempts + 1,
        tried=(*state.tried, device.id),
    )


def _settle_slot(state: SlotState, device: str, result: SpeedtestResult) -> SlotState:
    if device not in state.tried:
        return state  # a test run by hand: counts for the budget only
    if state.lease_holder == device:
        state = replace(state, lease_holder=None, lease_expires=None)
    return replace(state, done=state.done or result.ok)


def _settle_backoff(
    state: SlotState, result: SpeedtestResult, now: datetime, policy: SpeedtestPolicy
) -> SlotState:
    if result.backend != "speedtest-net":
        return state
    if result.ok:
        return replace(state, backoff_until=None, backoff_level=0)
    if result.reason not in BACKOFF_REASONS:
        return state

    delay = min(
        policy.backoff_initial_seconds * policy.backoff_factor**state.backoff_level,
        policy.backoff_max_seconds,
    )
    logger.info(
        "speedtest-net %s for school %s; backing off %.0f s",
        result.reason, state.school, delay,
    )  # fmt: skip
    return replace(
        state,
        backoff_until=now + timedelta(seconds=delay),
        backoff_level=state.backoff_level + 1,
    )


def _normalise(intervals: Sequence[Interval]) -> list[Interval]:
    for lo, hi in intervals:
        if lo.utcoffset() is None or hi.utcoffset() is None:
            raise ValueError(f"session interval {(lo, hi)!r} is naive; expected UTC")
    return sorted((lo, hi) for lo, hi in intervals if lo < hi)


def _fraction(seed: str, school: str, day: str, index: int) -> float:
    """A number in [0, 1) that depends only on its arguments."""
    digest = hashlib.sha256(f"{seed}\x1f{school}\x1f{day}\x1f{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _at_offset(
    intervals: list[Interval], offset: float, closing: bool = False
) -> datetime:
    """The instant ``offset`` seconds of session time after the day's first start.

    With ``closing``, an offset on the boundary of two intervals maps to the end of
    the earlier one (a slot ends when the morning ends, not when the afternoon
    starts).
    """
    for lo, hi in intervals:
        length = (hi - lo).total_seconds()
        if offset < length or (closing and offset <= length):
            return lo + timedelta(seconds=offset)
        offset -= length
    return intervals[-1][1]


def _month(now: datetime) -> str:
    return now.strftime("%Y-%m")
