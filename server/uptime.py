"""Internet uptime of a school from its devices' probe samples.

Pure logic: placed samples, session intervals and ``now`` in, figures out.

Each probe cycle of a device gives one verdict. A cycle reached the Internet when one
of its ``https`` samples of scope ``internet`` is ok; a cycle that carries no
internet-scope sample at all (its agent has no Internet target configured) is judged
by its ``collector``-scope ``https`` samples instead. The verdict holds from its
instant (the first qualifying ok sample, else the cycle's first sample) for
``coverage_intervals`` probe intervals, or until the same device's next verdict,
whichever comes first; this bridges scheduling jitter and lets a newer verdict
replace an older one.

The school is *up* at an instant when at least one device's verdict covering it is
up, *down* when verdicts cover it and none is up, and has *no device on* when no
verdict covers it. Only session time counts towards the figures.

Outages: an outage is a run of the timeline in which the Internet is never seen up
(down time, time with no device on and out-of-session time do not split it; only a
verdict "up" ends it) and which holds some in-session down time. It is reported once,
from its first in-session down instant to the end of its last one, with
``in_session_seconds`` counting only its in-session down time. So a link that stays
down over the lunch break or overnight is one outage, not two, and its start - the
key for deduplicating notifications - does not change while it lasts.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import logging
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

logger = logging.getLogger(__name__)

Interval = tuple[datetime, datetime]
Verdict = tuple[float, bool]
Span = tuple[float, float, str]
_Span = tuple[float, float]

SCOPES = ("collector", "internet")
KINDS = ("dns", "tcp", "https")
UP, DOWN = "up", "down"

DEFAULT_WINDOW = timedelta(days=7)
DEFAULT_COVERAGE_INTERVALS = 1.5
DEFAULT_OFFLINE_AFTER = timedelta(minutes=15)
_NEVER = math.inf
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class ProbeSample:
    """One placed probe sample; ``cycle`` identifies its cycle within the device."""

    device: str
    placed_at: datetime
    cycle: Hashable
    scope: str
    kind: str
    ok: bool


@dataclass(frozen=True)
class Outage:
    """A run without Internet; ``end`` is None while it goes on."""

    start: datetime
    end: datetime | None
    in_session_seconds: float
    clipped_at_window_start: bool = False


@dataclass(frozen=True)
class Uptime:
    """A school's Internet figures over ``[window_start, window_end)``."""

    window_start: datetime
    window_end: datetime
    session_seconds: float
    up_seconds: float
    down_seconds: float
    no_device_seconds: float
    uptime_ratio: float | None
    outages: tuple[Outage, ...]
    internet_up_now: bool | None
    latest_verdict_at: datetime | None
    ongoing_outage_started_at: datetime | None


def compute_uptime(
    samples: Iterable[ProbeSample],
    session_intervals: Sequence[Interval],
    probe_interval: float,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
    coverage_intervals: float = DEFAULT_COVERAGE_INTERVALS,
) -> Uptime:
    """Uptime figures for the window ending at ``now``.

    ``samples`` are the school's placed probe samples (include those up to one
    coverage before the window start so the window's first minutes are covered);
    ``session_intervals`` are the school's sessions in UTC (clipped to the window
    here); ``probe_interval`` is the agents' probe interval in seconds.
    """
    _check_arguments(probe_interval, now, window, coverage_intervals)
    verdicts = _cycle_verdicts(samples)
    return uptime_from_verdicts(
        verdicts, session_intervals, probe_interval, now, window, coverage_intervals
    )


def uptime_from_verdicts(
    verdicts: Mapping[str, list[Verdict]],
    session_intervals: Sequence[Interval],
    probe_interval: float,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
    coverage_intervals: float = DEFAULT_COVERAGE_INTERVALS,
) -> Uptime:
    """``compute_uptime`` from cycles already judged: per device, its cycles'
    verdicts ``(instant as POSIX seconds, reached)`` in time order."""
    _check_arguments(probe_interval, now, window, coverage_intervals)
    end = now.timestamp()
    start = end - window.total_seconds()

    timeline = _timeline(verdicts, probe_interval * coverage_intervals, end)
    latests = (_latest_until(runs, end) for runs in verdicts.values())
    latest = max((t for t in latests if t is not None), default=None)
    return _window_figures(timeline, session_intervals, start, end, latest)


def _window_figures(
    timeline: list[Span],
    session_intervals: Sequence[Interval],
    start: float,
    end: float,
    latest: float | None,
) -> Uptime:
    sessions = _normalised(tuple(session_intervals), start, end)
    clipped, cut_down = _clip(timeline, start)
    return _summarise(clipped, cut_down, sessions, start, end, latest)


def offline_now(
    last_seen: datetime | None,
    in_session: bool,
    now: datetime,
    offline_after: timedelta = DEFAULT_OFFLINE_AFTER,
) -> bool:
    """Whether a school counts as offline now (SPEC "School offline (now)").

    Derived only from the persisted ``last_seen`` (the collector's receive time of the
    school's latest report), so a collector restart changes nothing. A school that
    has never reported is offline in session; no school is offline out of session.
    """
    if not in_session:
        return False
    if last_seen is None:
        return True
    return now - last_seen >= offline_after


def _latest_until(runs: list[tuple[float, bool]], end: float) -> float | None:
    index = bisect.bisect_right(runs, end, key=_first)
    return runs[index - 1][0] if index else None


def _first(pair: tuple) -> float:
    return pair[0]


def _check_arguments(
    probe_interval: float, now: datetime, window: timedelta, coverage: float
) -> None:
    if not probe_interval > 0:
        raise ValueError(f"probe_interval {probe_interval!r} must be seconds > 0")
    if not coverage >= 1:
        raise ValueError(f"coverage_intervals {coverage!r} must be >= 1")
    if window <= timedelta(0):
        raise ValueError(f"window {window!r} must be a positive duration")
    if now.utcoffset() is None:
        raise ValueError(f"now {now!r} is naive; expected an aware UTC datetime")


def _cycle_verdicts(
    samples: Iterable[ProbeSample],
) -> dict[str, list[tuple[float, bool]]]:
    """Per device, its cycles' verdicts ``(instant, reached)`` in time order."""
    # Per cycle: first instant, has an internet-scope sample, first ok internet
    # https, first ok collector https. The loop is the hot path (one pass over up
    # to a million samples), hence written out inline.
    cycles: dict[tuple[str, Hashable], list] = {}
    for sample in samples:
        scope, ok_https = sample.scope, sample.ok and sample.kind == "https"
        if scope not in SCOPES or sample.kind not in KINDS:
            _reject(sample)
        ts = sample.placed_at.timestamp()
        acc = cycles.get((sample.device, sample.cycle))
        if acc is None:
            acc = cycles[(sample.device, sample.cycle)] = [ts, False, _NEVER, _NEVER]
        elif ts < acc[0]:
            acc[0] = ts
        slot = 2 if scope == "internet" else 3
        acc[1] = acc[1] or slot == 2
        if ok_https and ts < acc[slot]:
            acc[slot] = ts
    return _verdicts_by_device(cycles)


def _verdicts_by_device(cycles: dict) -> dict[str, list[tuple[float, bool]]]:
    verdicts: dict[str, list[tuple[float, bool]]] = {}
    for (device, _cycle), (
        first,
        has_internet,
        ok_internet,
        ok_collector,
    ) in cycles.items():
        ok_at = ok_internet if has_internet else ok_collector
        reached = ok_at != _NEVER
        verdicts.setdefault(device, []).append((ok_at if reached else first, reached))
    for runs in verdicts.values():
        runs.sort()
    return verdicts


def _reject(sample: ProbeSample) -> None:
    if sample.scope not in SCOPES:
        raise ValueError(f"probe scope {sample.scope!r}; expected one of {SCOPES}")
    raise ValueError(f"probe kind {sample.kind!r}; expected one of {KINDS}")


def _timeline(
    verdicts: Mapping[str, Sequence[Verdict]],
    coverage: float,
    end: float,
    begin: float = -math.inf,
) -> list[Span]:
    """Merged school timeline ``(start, end, state)`` over ``[begin, end)``; gaps
    have no device on."""
    streams = [_device_events(runs, coverage, end, begin) for runs in verdicts.values()]
    timeline: list[Span] = []
    ups = downs = 0
    previous = None
    for at, d_up, d_down in heapq.merge(*streams):
        if previous is not None and at > previous and (ups or downs):
            _append(timeline, previous, at, UP if ups else DOWN)
        ups, downs, previous = ups + d_up, downs + d_down, at
    return timeline


def _device_events(
    runs: Sequence[Verdict], coverage: float, end: float, begin: float = -math.inf
) -> list[tuple[float, int, int]]:
    """One device's coverage over ``[begin, end)`` as sorted (instant, up delta,
    down delta) events."""
    spans: list[list] = []
    for i, (start, reached) in enumerate(runs):
        until = start + coverage
        if i + 1 < len(runs) and runs[i + 1][0] < until:
            until = runs[i + 1][0]
        if end < until:
            until = end
        at = start if start > begin else begin
        if at >= until:
            continue
        if spans and spans[-1][2] == reached and spans[-1][1] == at:
            spans[-1][1] = until
        else:
            spans.append([at, until, reached])

    events = []
    for lo, hi, reached in spans:
        delta = (1, 0) if reached else (0, 1)
        events.append((lo, *delta))
        events.append((hi, -delta[0], -delta[1]))
    events.sort()
    return events


def _append(timeline: list, lo: float, hi: float, state: str) -> None:
    if timeline and timeline[-1][2] == state and timeline[-1][1] == lo:
        timeline[-1] = (timeline[-1][0], hi, state)
    else:
        timeline.append((lo, hi, state))


@functools.lru_cache(maxsize=64)
def _normalised(
    intervals: tuple[Interval, ...], start: float, end: float
) -> list[_Span]:
    """``_normalise_sessions``, once per set of sessions and window (schools of one
    time zone share them; callers only read the result)."""
    return _normalise_sessions(intervals, start, end)


def _normalise_sessions(
    intervals: Sequence[Interval], start: float, end: float
) -> list[_Span]:
    """Sessions as sorted, merged spans clipped to the window."""
    spans = []
    for lo, hi in intervals:
        lo_ts, hi_ts = max(lo.timestamp(), start), min(hi.timestamp(), end)
        if lo_ts < hi_ts:
            spans.append((lo_ts, hi_ts))
    spans.sort()

    merged: list[_Span] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _clip(timeline: list[Span], start: float) -> tuple[list[Span], bool]:
    """The timeline from ``start`` on, and whether a down stretch was cut there."""
    clipped = []
    cut_down = False
    for lo, hi, state in timeline:
        if hi <= start:
            continue
        if lo < start:
            cut_down = state == DOWN
            lo = start
        clipped.append((lo, hi, state))
    return clipped, cut_down


def _summarise(
    timeline: list[Span],
    cut_down: bool,
    sessions: list[_Span],
    start: float,
    end: float,
    latest: float | None,
) -> Uptime:
    session_seconds = sum(hi - lo for lo, hi in sessions)
    up = sum(_in_session(lo, hi, sessions)[1] for lo, hi, s in timeline if s == UP)
    outages = _outages(timeline, cut_down, sessions)
    down = sum(outage.in_session_seconds for outage in outages)

    ratio = up / (up + down) if up + down > 0 else None
    up_now = None if not timeline else timeline[-1][2] == UP
    ongoing = outages[-1].start if outages and outages[-1].end is None else None
    logger.debug("uptime: %d timeline spans, %d outages", len(timeline), len(outages))
    return Uptime(
        window_start=_dt(start),
        window_end=_dt(end),
        session_seconds=session_seconds,
        up_seconds=up,
        down_seconds=down,
        no_device_seconds=session_seconds - up - down,
        uptime_ratio=ratio,
        outages=tuple(outages),
        internet_up_now=up_now,
        latest_verdict_at=None if latest is None else _dt(latest),
        ongoing_outage_started_at=ongoing,
    )


def _outages(
    timeline: list[Span], cut_down: bool, sessions: list[_Span]
) -> list[Outage]:
    """Runs without an up verdict that hold in-session down time."""
    outages: list[Outage] = []
    run: list | None = None  # [first in-session instant, last end, seconds, clipped]
    clipped_first = cut_down
    for lo, hi, state in timeline:
        if state == UP:
            _close(outages, run, ended=True)
            run, clipped_first = None, False
            continue
        pieces, seconds = _in_session(lo, hi, sessions)
        if not pieces:
            continue
        if run is None:
            run = [pieces[0][0], pieces[-1][1], 0.0, clipped_first]
        run[1], run[2] = pieces[-1][1], run[2] + seconds
    _close(outages, run, ended=False)
    return outages


def _close(outages: list[Outage], run: list | None, ended: bool) -> None:
    if run is None:
        return
    first, last, seconds, clipped = run
    outages.append(Outage(_dt(first), _dt(last) if ended else None, seconds, clipped))


def _in_session(
    lo: float, hi: float, sessions: list[_Span]
) -> tuple[list[_Span], float]:
    """Parts of ``[lo, hi)`` in session, and their total length."""
    pieces = []
    index = bisect.bisect_right(sessions, lo, key=_span_end)
    while index < len(sessions) and sessions[index][0] < hi:
        s_lo, s_hi = sessions[index]
        pieces.append((max(lo, s_lo), min(hi, s_hi)))
        index += 1
    return pieces, sum(p_hi - p_lo for p_lo, p_hi in pieces)


def _span_end(span: _Span) -> float:
    return span[1]


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# Kept up to date between scrapes -------------------------------------------------


class SchoolTimeline:
    """A school's merged timeline kept as cycle verdicts arrive, so the figures at a
    moving ``now`` cost a pass over its spans instead of over its cycles.

    ``uptime`` gives exactly what ``uptime_from_verdicts`` gives for the verdicts
    added, as long as ``covers(now)``: the timeline is held without an end (it is
    clipped at each ``now``) and from ``loaded_from`` on. Verdicts added in time
    order redo only the timeline after the earliest of them; per device the recent
    verdicts (``keep_seconds`` before its latest, and one more) are held for that.
    ``add`` answers False when it cannot follow (a verdict older than a device's
    held ones): the caller then builds a fresh one from the database.
    """

    def __init__(
        self, coverage: float, loaded_from: float, keep_seconds: float = 3600.0
    ) -> None:
        self.coverage = coverage
        self.loaded_from = loaded_from
        self.keep_seconds = keep_seconds
        self.spans: list[Span] = []
        self.tails: dict[str, list[Verdict]] = {}
        self.trimmed: set[str] = set()
        self.last_reached: dict[str, float] = {}
        self.newest: float | None = None

    @classmethod
    def build(
        cls,
        verdicts: Mapping[str, list[Verdict]],
        coverage: float,
        loaded_from: float,
    ) -> SchoolTimeline:
        """The timeline of every verdict (per device in time order) since
        ``loaded_from``; older ones were not loaded."""
        timeline = cls(coverage, loaded_from)
        timeline.spans = _timeline(verdicts, coverage, math.inf)
        for device, runs in verdicts.items():
            timeline.tails[device] = list(runs)
            timeline.trimmed.add(device)
            timeline._note(device, runs)
            timeline._trim(device)
        return timeline

    def add(self, verdicts: Mapping[str, list[Verdict]]) -> bool:
        """Add new cycles' verdicts (per device, any order); False when a fresh
        build is needed instead."""
        begin = min(at for runs in verdicts.values() for at, _ in runs)
        if begin < self.loaded_from or not all(
            self._holds(device, begin) for device in self.tails
        ):
            return False
        for device, runs in verdicts.items():
            tail = self.tails.setdefault(device, [])
            for verdict in runs:
                bisect.insort(tail, verdict)
            self._note(device, runs)

        tails = {
            d: t[max(bisect.bisect_left(t, (begin,)) - 1, 0) :]
            for d, t in self.tails.items()
        }
        self._splice(begin, _timeline(tails, self.coverage, math.inf, begin))
        for device in verdicts:
            self._trim(device)
        return True

    def covers(self, now: datetime, window: timedelta) -> bool:
        """Whether figures at ``now`` can come from this timeline: it holds the
        window's cycles and no cycle judged after ``now``."""
        end = now.timestamp()
        start = end - window.total_seconds() - self.coverage
        return start >= self.loaded_from and (self.newest is None or self.newest <= end)

    def uptime(
        self,
        session_intervals: Sequence[Interval],
        now: datetime,
        window: timedelta = DEFAULT_WINDOW,
    ) -> Uptime:
        """The uptime figures at ``now`` (only when ``covers(now, window)``)."""
        end = now.timestamp()
        start = end - window.total_seconds()
        first = bisect.bisect_right(self.spans, start, key=_span_end)
        last = bisect.bisect_left(self.spans, end, key=_first)
        spans = self.spans[first:last]
        if spans and spans[-1][1] > end:
            spans[-1] = (spans[-1][0], end, spans[-1][2])
        newest = self.newest
        recent = newest is not None and newest >= start - self.coverage
        uptime = _window_figures(
            spans, session_intervals, start, end, newest if recent else None
        )
        self._forget_before(start)
        return uptime

    def last_internet(self, now: datetime, window: timedelta) -> dict[str, float]:
        """Per device, its latest cycle that reached the Internet in the window (and
        one coverage before it)."""
        since = now.timestamp() - window.total_seconds() - self.coverage
        return {d: at for d, at in self.last_reached.items() if at >= since}

    def _holds(self, device: str, begin: float) -> bool:
        tail = self.tails[device]
        return device not in self.trimmed or (bool(tail) and tail[0][0] < begin)

    def _note(self, device: str, runs: Iterable[Verdict]) -> None:
        for at, reached in runs:
            if self.newest is None or at > self.newest:
                self.newest = at
            if reached and at > self.last_reached.get(device, -math.inf):
                self.last_reached[device] = at

    def _trim(self, device: str) -> None:
        tail = self.tails[device]
        cut = bisect.bisect_left(tail, (tail[-1][0] - self.keep_seconds,)) - 1
        if cut > 0:
            del tail[:cut]
            self.trimmed.add(device)

    def _splice(self, begin: float, after: list[Span]) -> None:
        spans = self.spans
        del spans[bisect.bisect_left(spans, begin, key=_first) :]
        if spans and spans[-1][1] > begin:
            spans[-1] = (spans[-1][0], begin, spans[-1][2])
        for lo, hi, state in after:
            _append(spans, lo, hi, state)

    def _forget_before(self, start: float) -> None:
        """Drop spans that ended a day before ``start`` (once a day or so)."""
        horizon = start - self.coverage - _DAY
        if horizon > self.loaded_from + _DAY:
            del self.spans[: bisect.bisect_right(self.spans, horizon, key=_span_end)]
            self.loaded_from = horizon
