"""A simulated district: realistic school PCs that enroll and report over HTTP.

The district is generated from a seed: schools (from the registry or given), PCs per
school (their hardware from ``schoolmon.server.simulate_hardware``), links (most
20-100 Mbit/s, some slow, some schools offline) and optional scenarios that asset
tests need (cloned images, moved devices, RAM upgraded or removed, a huge software
list). Reports are built exactly as the wire format of docs/design.md says and
delivered only through the collector's real HTTP API (``POST /api/v1/enroll``,
``POST /api/v1/reports``) with a bounded thread pool. The same seed and the same
clock give byte-identical payloads.

``run()`` is the whole simulation; ``build_district()``, ``enroll_devices()``,
``prepare_history()``, ``prepare_cycle()`` and ``send_reports()`` are its phases, so
a benchmark can pre-build payloads and time only the sending. ``tokens_from_db()``
creates enrollment tokens in the collector's database; ``simulate_command`` is the
command line (``main(argv)`` runs it standalone)."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import psycopg
import requests
from schoolmon.server.clock import utcnow
from schoolmon.server.config import LEVELS
from schoolmon.server.registry import (
    RegistryError,
    issue_enrollment_tokens,
    read_registry,
)
from schoolmon.server.simulate_hardware import (
    GIB,
    HUGE_SOFTWARE_PROGRAMS,
    PROBE_PLAN,
    TIERS,
    Moment,
    SimPC,
    compute_identity,
    cycle_probes,
    encode_body,
    enroll_body,
    failed_envelope,
    generate_pc,
    health,
    huge_software,
    inventory_document,
    memory_section,
    new_uuid,
    pc_clock,
    report_document,
    section_envelope,
    speed_test,
    wire_time,
)
from schoolmon.server.storage import Storage, StorageError

__all__ = [
    "DEFAULT_REGISTRY",
    "GIB",
    "HUGE_SOFTWARE_PROGRAMS",
    "SCENARIOS",
    "Collector",
    "Credentials",
    "District",
    "Moment",
    "Outcome",
    "PhaseSummary",
    "PreparedReport",
    "School",
    "SimOptions",
    "SimPC",
    "SimSchool",
    "SimulationError",
    "Summary",
    "build_district",
    "compute_identity",
    "cycle_probes",
    "encode_body",
    "enroll_body",
    "enroll_devices",
    "failed_envelope",
    "generate_pc",
    "health",
    "history_samples",
    "huge_software",
    "inventory_document",
    "iter_report_bodies",
    "load_registry",
    "main",
    "parse_scenarios",
    "parse_token",
    "pc_clock",
    "prepare_cycle",
    "prepare_history",
    "report_document",
    "reporting_pcs",
    "resolve_schools",
    "run",
    "section_envelope",
    "send_reports",
    "session_windows",
    "simulate_command",
    "speed_test",
    "synthetic_schools",
    "token_for",
    "tokens_from_db",
    "utcnow",
    "wire_time",
]

logger = logging.getLogger(__name__)

SCENARIOS = ("clone", "move", "ram-upgrade", "ram-removed", "huge-software")
TWO_INVENTORY_SCENARIOS = ("move", "ram-upgrade", "ram-removed")
SESSION_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SESSION_WINDOWS = (
    (clock_time(7, 0), clock_time(11, 30)),
    (clock_time(13, 30), clock_time(17, 0)),
)
DEFAULT_REGISTRY = Path(__file__).with_name("data") / "sample_registry.csv"
LAB_DEFAULT = {"primary": 18, "lower_secondary": 23, "upper_secondary": 23}


class SimulationError(Exception):
    """The simulation cannot start: bad options, registry or token source."""


# Options and the district ------------------------------------------------------


@dataclass(frozen=True)
class SimOptions:
    """What to simulate; every default gives a small, realistic district."""

    seed: int = 7
    schools: int | None = None
    pcs_per_school: int | None = None
    days_history: int = 0
    cycles: int = 1
    interval_seconds: float = 0.0
    offline_share: float = 0.05
    slow_share: float = 0.1
    outage_share: float = 0.3
    skewed_clock_share: float = 0.02
    workers: int = 8
    scenarios: frozenset[str] = frozenset()
    clone_count: int = 5
    history_step_seconds: int = 900
    history_pcs_per_school: int = 2
    history_batch: int = 500
    timeout_seconds: float = 10.0
    agent_version: str = "0.1.0"

    def __post_init__(self) -> None:
        for name in ("offline_share", "slow_share", "outage_share"):
            _check_share(name, getattr(self, name))
        _check_share("skewed_clock_share", self.skewed_clock_share)
        for name in ("cycles", "workers", "history_step_seconds", "history_batch"):
            if getattr(self, name) < 1:
                raise SimulationError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        _check_scenarios(self)


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise SimulationError(f"{name} must be between 0 and 1, got {value}")


def _check_scenarios(options: SimOptions) -> None:
    unknown = sorted(set(options.scenarios) - set(SCENARIOS))
    if unknown:
        raise SimulationError(
            f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    needs_two = sorted(set(options.scenarios) & set(TWO_INVENTORY_SCENARIOS))
    if needs_two and options.cycles < 2:
        raise SimulationError(
            f"scenario(s) {', '.join(needs_two)} compare two inventories and need "
            f"--cycles 2 or more, got {options.cycles}"
        )
    if options.days_history < 0:
        raise SimulationError(
            f"days_history must be 0 or more, got {options.days_history}"
        )


@dataclass(frozen=True)
class School:
    """A registry row, as far as the simulation needs it."""

    code: str
    level: str
    students: int | None = None
    contracted_download_mbps: float | None = None
    lab_pcs_required: int | None = None
    has_informatics: bool | None = None
    name: str = ""


@dataclass
class SimSchool:
    """A school of the district with its link and its PCs."""

    school: School
    offline: bool
    slow: bool
    link_mbps: float
    saturday_off: bool
    subnet: str
    number: int = 0
    outages: list[tuple[datetime, datetime]] = field(default_factory=list)
    pcs: list[SimPC] = field(default_factory=list)

    @property
    def code(self) -> str:
        return self.school.code

    @property
    def level(self) -> str:
        return self.school.level


@dataclass
class District:
    """The whole simulated district at one instant (``now``)."""

    seed: int
    now: datetime
    schools: list[SimSchool]
    scenario_devices: dict[str, list[str]] = field(default_factory=dict)

    def pcs(self) -> Iterator[SimPC]:
        for sim_school in self.schools:
            yield from sim_school.pcs

    def pc(self, key: str) -> SimPC:
        for pc in self.pcs():
            if pc.key == key:
                return pc
        raise KeyError(key)

    def school(self, code: str) -> SimSchool:
        return next(s for s in self.schools if s.code == code)


# Registry ----------------------------------------------------------------------


def load_registry(path: Path | str) -> list[School]:
    """Schools of a registry CSV, read by the collector's own registry reader."""
    try:
        rows = read_registry(path)
    except RegistryError as exc:
        raise SimulationError("; ".join(exc.problems)) from exc
    return [_school(row) for row in rows]


def _school(row: Mapping[str, Any]) -> School:
    return School(
        code=row["code"],
        level=row["level"],
        students=row.get("students"),
        contracted_download_mbps=row.get("contracted_download_mbps"),
        lab_pcs_required=row.get("lab_pcs_required"),
        has_informatics=row.get("has_informatics"),
        name=row["name"],
    )


def synthetic_schools(codes: Iterable[str], seed: int) -> list[School]:
    """Schools for codes that no registry describes: level and size from the seed."""
    schools = []
    for code in codes:
        rng = random.Random(f"{seed}/{code}/registry")
        level = rng.choices(LEVELS[:3], weights=(3, 4, 3))[0]
        students = (
            rng.randint(120, 350) if level == "preschool" else rng.randint(250, 1200)
        )
        contracted = rng.choice((30.0, 40.0, 50.0, 80.0, 100.0))
        schools.append(
            School(code, level, students, contracted, None, level != "preschool")
        )
    return schools


# District ----------------------------------------------------------------------


def build_district(
    schools: Sequence[School], options: SimOptions, now: datetime
) -> District:
    """Generate the district (links, PCs, scenarios) from the seed at ``now``."""
    chosen = sorted(schools, key=lambda s: s.code)[: options.schools]
    offline = _ranked_pick(chosen, options.seed, "offline", options.offline_share)
    online = [s for s in chosen if s.code not in offline]
    slow = _ranked_pick(online, options.seed, "slow", options.slow_share)

    district = District(seed=options.seed, now=now, schools=[])
    for number, school in enumerate(chosen):
        links = (school.code in offline, school.code in slow)
        district.schools.append(_numbered_school(school, number, links, options, now))

    _assign_clock_skew(district, options)
    _apply_scenarios(district, options)
    logger.info(
        "district of %d schools and %d PCs generated from seed %d",
        len(district.schools),
        sum(1 for _ in district.pcs()),
        options.seed,
    )
    return district


def _numbered_school(
    school: School,
    number: int,
    links: tuple[bool, bool],
    options: SimOptions,
    now: datetime,
) -> SimSchool:
    """The ``number``-th school of the district with its subnet and its PCs."""
    sim = _sim_school(school, options, now, *links)
    sim.subnet = f"192.168.{number % 250 + 1}"
    sim.number = number
    sim.pcs = _school_pcs(sim, options, now)
    return sim


def _ranked_pick(
    schools: Sequence[School], seed: int, what: str, share: float
) -> set[str]:
    count = round(share * len(schools))
    ranked = sorted(
        schools, key=lambda s: random.Random(f"{seed}/{s.code}/{what}").random()
    )
    return {s.code for s in ranked[:count]}


def _sim_school(
    school: School, options: SimOptions, now: datetime, offline: bool, slow: bool
) -> SimSchool:
    rng = random.Random(f"{options.seed}/{school.code}/link")
    contracted = school.contracted_download_mbps or rng.choice(
        (30.0, 50.0, 80.0, 100.0)
    )
    if slow:
        link = rng.uniform(2.0, 8.0)
    else:
        link = min(max(contracted * rng.uniform(0.6, 0.98), 20.0), 100.0)
    sim = SimSchool(
        school, offline, slow, round(link, 2), rng.random() < 0.5, "192.168.1"
    )
    if rng.random() < (0.6 if slow else options.outage_share) and options.days_history:
        sim.outages = _outages(rng, now, options.days_history)
    return sim


def _outages(
    rng: random.Random, now: datetime, days: int
) -> list[tuple[datetime, datetime]]:
    windows = list(session_windows(now - timedelta(days=days), now))
    outages = []
    for _ in range(rng.randint(1, 3)):
        if not windows:
            break
        start, end = rng.choice(windows)
        begin = start + timedelta(minutes=rng.randint(0, 120))
        length = timedelta(minutes=rng.randint(30, 180))
        outages.append((begin, min(begin + length, end)))
    return sorted(o for o in outages if o[0] < o[1])


def session_windows(
    start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Session windows (UTC) between ``start`` and ``end``: Mon-Sat, local hours."""
    day = start.astimezone(SESSION_ZONE).date()
    while day <= end.astimezone(SESSION_ZONE).date():
        if day.weekday() < 6:
            for opens, closes in SESSION_WINDOWS:
                begin = datetime.combine(day, opens, SESSION_ZONE).astimezone(UTC)
                finish = datetime.combine(day, closes, SESSION_ZONE).astimezone(UTC)
                if begin < end and finish > start:
                    yield max(begin, start), min(finish, end)
        day += timedelta(days=1)


def _school_pcs(sim: SimSchool, options: SimOptions, now: datetime) -> list[SimPC]:
    roles = _roles(sim.school, options)
    counters: Counter[str] = Counter()
    pcs = []
    for role in roles:
        counters[role] += 1
        pcs.append(generate_pc(options.seed, sim, role, counters[role], now))
    for pc in pcs[: options.history_pcs_per_school]:
        pc.history = pc.on = True
    return pcs


def _roles(school: School, options: SimOptions) -> list[str]:
    rng = random.Random(f"{options.seed}/{school.code}/roles")
    if school.level == "preschool":
        total = options.pcs_per_school or rng.randint(2, 4)
        return ["office"] + ["teacher"] * (total - 1)
    if school.has_informatics is False:
        return ["office"] * (options.pcs_per_school or rng.randint(1, 3))
    if options.pcs_per_school is not None:
        count = options.pcs_per_school
        return ["lab"] * max(count - 1, 1) + ["office"] * (1 if count > 1 else 0)
    required = school.lab_pcs_required or LAB_DEFAULT.get(school.level, 18)
    lab = max(required + rng.randint(-3, 2), 1)
    return ["lab"] * lab + ["office"] * rng.randint(1, 3)


def _assign_clock_skew(district: District, options: SimOptions) -> None:
    """Most clocks are seconds off; a few PCs have a dead CMOS battery (years off)."""
    for pc in district.pcs():
        rng = random.Random(f"{options.seed}/{pc.key}/clock")
        if rng.random() < options.skewed_clock_share:
            pc.skew_seconds = -float(
                rng.choice((3, 5, 8)) * 365 * 86400 + rng.randint(0, 86400)
            )
        else:
            pc.skew_seconds = float(rng.randint(-5, 5))


# Scenarios ---------------------------------------------------------------------


def _apply_scenarios(district: District, options: SimOptions) -> None:
    labs = [
        s
        for s in district.schools
        if not s.offline and any(p.role == "lab" for p in s.pcs)
    ]
    for name in SCENARIOS:
        if name in options.scenarios:
            devices = _SCENARIO_BUILDERS[name](district, labs, options)
            district.scenario_devices[name] = devices
            logger.info(
                "scenario %s set up on %s", name, ", ".join(devices) or "nothing"
            )


def _lab_pcs(labs: Sequence[SimSchool], number: int) -> list[SimPC]:
    if not labs:
        return []
    school = labs[number % len(labs)]
    return [p for p in school.pcs if p.role == "lab"]


def _scenario_clone(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    group = _lab_pcs(labs, 0)[: options.clone_count]
    if len(group) < 2:
        return []
    master = group[0]
    for clone in group[1:]:
        clone.clone_of = master.key
        clone.on = True
        clone.sections["system"]["hostname"] = master.hostname
        clone.sections["system"]["machine_id"] = master.sections["system"]["machine_id"]
    return [pc.key for pc in group]


def _scenario_move(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    if len(labs) < 2:
        return []
    pc = _lab_pcs(labs, 1)[-1]
    pc.move_to = labs[0].code if labs[1].code == pc.school else labs[1].code
    pc.on = True
    return [pc.key]


def _scenario_ram_upgrade(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    return _change_memory(_lab_pcs(labs, 2), (2, 2), (4, 4))


def _scenario_ram_removed(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    return _change_memory(_lab_pcs(labs, 3), (4, 4), (4,))


def _change_memory(
    candidates: Sequence[SimPC], before: tuple[int, ...], after: tuple[int, ...]
) -> list[str]:
    free = [p for p in candidates if p.later_memory is None and p.clone_of is None]
    if not free:
        return []
    pc = free[len(free) // 2]
    rng = random.Random(f"{pc.key}/memory-change")
    tier = TIERS[1]
    os_key = "win7" if "Windows 7" in (pc.sections["os"]["name"] or "") else "win10"
    pc.sections["memory"] = memory_section(rng, tier, before, os_key)
    later = memory_section(rng, tier, after, os_key)
    kept = len(after) if len(after) < len(before) else 0
    later["modules"][:kept] = pc.sections["memory"]["modules"][:kept]
    pc.later_memory = later
    pc.on = True
    return [pc.key]


def _scenario_huge_software(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    online = [s for s in district.schools if not s.offline and s.pcs]
    if not online:
        return []
    pc = online[-1].pcs[-1]
    pc.sections["software"] = huge_software(options.seed)
    pc.on = True
    return [pc.key]


_SCENARIO_BUILDERS: dict[
    str, Callable[[District, list[SimSchool], SimOptions], list[str]]
] = {
    "clone": _scenario_clone,
    "move": _scenario_move,
    "ram-upgrade": _scenario_ram_upgrade,
    "ram-removed": _scenario_ram_removed,
    "huge-software": _scenario_huge_software,
}


# Report bodies -----------------------------------------------------------------


@dataclass(frozen=True)
class PreparedReport:
    """A ready-to-send report: gzip body and whose credential it travels with.

    ``credential_keys`` are tried in order; a ``replace_credential`` instruction is
    stored under the first one.
    """

    device_key: str
    credential_keys: tuple[str, ...]
    body: bytes
    items: int


def _credential_keys(pc: SimPC) -> tuple[str, ...]:
    if pc.moved:
        return (f"{pc.key}@{pc.move_to}",)
    if pc.clone_of:
        return (pc.key, pc.clone_of)
    return (pc.key,)


def _inventory_for(pc: SimPC, at: datetime) -> dict[str, Any] | None:
    if pc.inventory_sent and not pc.wants_full_inventory:
        return None
    pc.inventory_sent = True
    pc.wants_full_inventory = False
    return inventory_document(pc.sections, pc_clock(pc, at), pc.section_errors)


def reporting_pcs(district: District) -> Iterator[tuple[SimSchool, SimPC]]:
    """PCs that report: switched on, in a school whose link works."""
    for sim in district.schools:
        if sim.offline:
            continue
        for pc in sim.pcs:
            if pc.on:
                yield sim, pc


def prepare_cycle(
    district: District, cycle: int, at: datetime, options: SimOptions
) -> list[PreparedReport]:
    """One live cycle: every reporting PC sends its probes (and inventory if due)."""
    reports = []
    for sim, pc in reporting_pcs(district):
        if cycle == options.cycles - 1:
            _apply_late_changes(pc)
        reports.append(_live_report(district, sim, pc, cycle, at, options))
    return reports


def _apply_late_changes(pc: SimPC) -> None:
    """Before the last cycle: memory changes and moves take effect."""
    if pc.later_memory is not None:
        pc.sections["memory"] = pc.later_memory
        pc.later_memory = None
        pc.wants_full_inventory = True
    if pc.move_to and not pc.moved:
        pc.moved = True
        pc.wants_full_inventory = True


def _live_report(
    district: District,
    sim: SimSchool,
    pc: SimPC,
    cycle: int,
    at: datetime,
    options: SimOptions,
) -> PreparedReport:
    rng = random.Random(f"{district.seed}/{pc.key}/live/{cycle}")
    pc.cycle += 1
    moment = Moment(at, pc.boot_time, pc.boot_id, pc.run, pc.cycle, True, sim.slow)
    probes = cycle_probes(pc, rng, moment)
    speedtests = []
    if pc.wants_speedtest or (cycle == 0 and pc is _speed_tester(sim)):
        pc.wants_speedtest = False
        speedtests.append(
            speed_test(pc, rng, moment, sim.link_mbps, options.agent_version)
        )
    return _prepared(pc, at, probes, speedtests, options)


def _prepared(
    pc: SimPC,
    at: datetime,
    probes: list[dict[str, Any]],
    speedtests: list[dict[str, Any]],
    options: SimOptions,
) -> PreparedReport:
    """The gzip report ``pc`` sends at ``at`` (with its inventory when due)."""
    document = report_document(
        pc,
        at,
        inventory=_inventory_for(pc, at),
        probes=probes,
        speedtests=speedtests,
        agent_version=options.agent_version,
    )
    count = len(probes) + len(speedtests)
    return PreparedReport(pc.key, _credential_keys(pc), encode_body(document), count)


def _speed_tester(sim: SimSchool) -> SimPC | None:
    """Exactly one PC per school runs the slot's speed test."""
    return next((p for p in sim.pcs if p.on), None)


def prepare_history(
    district: District, options: SimOptions, until: datetime
) -> Iterator[PreparedReport]:
    """Backfill reports: samples of past session days, in batches, sent at ``until``."""
    for sim, pc in reporting_pcs(district):
        if pc.history and options.days_history:
            yield from _history_reports(district, sim, pc, options, until)


def _history_reports(
    district: District,
    sim: SimSchool,
    pc: SimPC,
    options: SimOptions,
    until: datetime,
) -> Iterator[PreparedReport]:
    items = list(history_samples(district, sim, pc, options, until))
    for start in range(0, len(items), options.history_batch):
        batch = items[start : start + options.history_batch]
        probes = [sample for sample in batch if "kind" in sample]
        speedtests = [sample for sample in batch if "kind" not in sample]
        yield _prepared(pc, until, probes, speedtests, options)


def history_samples(
    district: District,
    sim: SimSchool,
    pc: SimPC,
    options: SimOptions,
    until: datetime,
) -> Iterator[dict[str, Any]]:
    """Probe samples and speed tests of past days, each day on its own boot."""
    start = until - timedelta(days=options.days_history)
    end = min(until - timedelta(seconds=options.history_step_seconds), pc.boot_time)
    tester = _speed_tester(sim) is pc
    for day, windows in _windows_by_day(start, end):
        rng = random.Random(f"{district.seed}/{pc.key}/history/{day.isoformat()}")
        yield from _history_day(pc, sim, rng, windows, options, tester)


def _windows_by_day(
    start: datetime, end: datetime
) -> Iterator[tuple[date, list[tuple[datetime, datetime]]]]:
    days: dict[date, list[tuple[datetime, datetime]]] = {}
    for begin, finish in session_windows(start, end):
        days.setdefault(begin.astimezone(SESSION_ZONE).date(), []).append(
            (begin, finish)
        )
    yield from days.items()


def _history_day(
    pc: SimPC,
    sim: SimSchool,
    rng: random.Random,
    windows: list[tuple[datetime, datetime]],
    options: SimOptions,
    tester: bool,
) -> Iterator[dict[str, Any]]:
    on_at = windows[0][0] + timedelta(minutes=rng.randint(0, 15))
    run_id = f"{rng.getrandbits(32):08x}"
    boot = Moment(
        on_at, on_at - timedelta(seconds=90), new_uuid(rng), run_id, 0, True, sim.slow
    )
    test_at = windows[0][0] + timedelta(hours=3, minutes=rng.randint(0, 20))
    step = timedelta(seconds=options.history_step_seconds)

    instants = _cycle_instants(rng, _day_windows(windows, sim), on_at, step)
    for cycle, instant in enumerate(instants, start=1):
        moment = _history_moment(boot, instant, cycle, sim)
        yield from cycle_probes(pc, rng, moment)
        if tester and instant <= test_at < instant + step:
            yield speed_test(pc, rng, moment, sim.link_mbps, options.agent_version)


def _day_windows(
    windows: list[tuple[datetime, datetime]], sim: SimSchool
) -> list[tuple[datetime, datetime]]:
    """The day's session windows the school opens (some close Saturday afternoon)."""
    saturday = windows[0][0].astimezone(SESSION_ZONE).weekday() == 5
    return windows[:1] if saturday and sim.saturday_off else windows


def _cycle_instants(
    rng: random.Random,
    windows: list[tuple[datetime, datetime]],
    on_at: datetime,
    step: timedelta,
) -> Iterator[datetime]:
    """Cycle instants while the PC is on; it goes off up to 10 minutes early.

    Lazy on purpose: each window's draw happens after the previous cycles' draws.
    """
    for begin, finish in windows:
        # a cycle's probes run in the seconds before its instant
        instant = max(begin, on_at) + timedelta(seconds=len(PROBE_PLAN))
        off_at = finish - timedelta(minutes=rng.randint(0, 10))
        while instant < off_at:
            yield instant
            instant += step


def _history_moment(
    boot: Moment, instant: datetime, cycle: int, sim: SimSchool
) -> Moment:
    up = not any(start <= instant < end for start, end in sim.outages)
    return Moment(instant, boot.boot_time, boot.boot_id, boot.run, cycle, up, sim.slow)


def iter_report_bodies(
    district: District, options: SimOptions, at: datetime
) -> Iterator[PreparedReport]:
    """All reports of a run without feedback, for benchmarks: history, then cycles."""
    yield from prepare_history(district, options, at)
    for cycle in range(options.cycles):
        yield from prepare_cycle(
            district,
            cycle,
            at + timedelta(seconds=cycle * options.interval_seconds),
            options,
        )


# Delivery ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one HTTP exchange gave: a status key and the decoded answer, if any."""

    status: str
    answer: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.status in ("200", "201") and self.answer is not None


class Collector:
    """Posts to the collector's API; one requests session per worker thread."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session_factory = session_factory
        self._local = threading.local()

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST ``body``; never raises for HTTP or transport failures."""
        session = self._session()
        try:
            response = session.post(
                self.base_url + path,
                data=body,
                headers=dict(headers),
                timeout=self.timeout,
            )
        except requests.Timeout:
            return Outcome("timeout", None)
        except requests.ConnectionError:
            return Outcome("connection error", None)
        return Outcome(str(response.status_code), _json_answer(response))

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._session_factory()
        return session


def _json_answer(response: requests.Response) -> dict[str, Any] | None:
    try:
        answer = response.json()
    except ValueError:  # not JSON: counted by its status, never fatal
        return None
    return answer if isinstance(answer, dict) else None


@dataclass
class PhaseSummary:
    """Counts of one phase (enrollment, history, a live cycle)."""

    name: str
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    elapsed_seconds: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            self.requests += 1
            self.statuses[outcome.status] += 1
            if outcome.ok:
                self.succeeded += 1
                _add_counts(self.accepted, outcome.answer.get("accepted"))
                _add_counts(self.duplicates, outcome.answer.get("duplicates"))
            else:
                self.failed += 1

    @property
    def per_second(self) -> float:
        return self.requests / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def line(self) -> str:
        statuses = (
            ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items())) or "-"
        )
        return (
            f"{self.name}: {self.requests} requests, {self.succeeded} succeeded, "
            f"{self.failed} failed ({statuses}); accepted {_counts(self.accepted)}; "
            f"duplicates {_counts(self.duplicates)}; {self.elapsed_seconds:.2f} s, "
            f"{self.per_second:.1f} requests/s"
        )


def _add_counts(total: Counter[str], counts: object) -> None:
    if isinstance(counts, Mapping):
        for kind, number in counts.items():
            if isinstance(number, int):
                total[kind] += number


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


@dataclass
class Summary:
    """The whole run: phases and totals."""

    phases: list[PhaseSummary]
    devices_enrolled: int
    elapsed_seconds: float
    scenario_devices: dict[str, list[str]]

    def _reports(self) -> list[PhaseSummary]:
        return [p for p in self.phases if not p.name.startswith("enroll")]

    @property
    def reports_sent(self) -> int:
        return sum(p.requests for p in self._reports())

    @property
    def reports_accepted(self) -> int:
        return sum(p.succeeded for p in self._reports())

    @property
    def reports_failed(self) -> int:
        return sum(p.failed for p in self._reports())

    @property
    def statuses(self) -> Counter[str]:
        return sum((p.statuses for p in self._reports()), Counter())

    @property
    def samples_accepted(self) -> Counter[str]:
        return sum((p.accepted for p in self._reports()), Counter())

    @property
    def samples_duplicate(self) -> Counter[str]:
        return sum((p.duplicates for p in self._reports()), Counter())

    @property
    def reports_per_second(self) -> float:
        sending = sum(p.elapsed_seconds for p in self._reports())
        return self.reports_sent / sending if sending > 0 else 0.0

    def line(self) -> str:
        statuses = (
            ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items())) or "-"
        )
        return (
            f"total: {self.devices_enrolled} devices enrolled; reports sent "
            f"{self.reports_sent}, accepted {self.reports_accepted}, failed "
            f"{self.reports_failed} ({statuses}); samples accepted "
            f"{_counts(self.samples_accepted)}; duplicates "
            f"{_counts(self.samples_duplicate)}; elapsed {self.elapsed_seconds:.2f} s; "
            f"{self.reports_per_second:.1f} reports/s"
        )


class Credentials:
    """Device credentials by key, shared by the sending threads."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, keys: Sequence[str]) -> str | None:
        with self._lock:
            return next((self._values[k] for k in keys if k in self._values), None)

    def set(self, key: str, credential: str) -> None:
        with self._lock:
            self._values[key] = credential

    def __len__(self) -> int:
        return len(self._values)


def token_for(tokens: Mapping[str, str], code: str, role: str) -> str | None:
    """The enrollment token of a school's role: ``CODE:ROLE``, else ``CODE``."""
    return tokens.get(f"{code}:{role}") or tokens.get(code)


def enroll_devices(
    collector: Collector,
    district: District,
    tokens: Mapping[str, str],
    credentials: Credentials,
    options: SimOptions,
    moved: bool = False,
) -> PhaseSummary:
    """Enroll every reporting PC (clones excepted) with its school's token.

    With ``moved``, enroll instead the PCs of the move scenario with the token of
    the school they moved to (their later reports use that credential).
    """
    name = "enroll moved" if moved else "enroll"

    def enroll(job: tuple[SimPC, str, str], phase: PhaseSummary) -> None:
        _enroll_one(collector, *job, tokens, credentials, options, phase)

    return _pooled_phase(name, options.workers, _enroll_jobs(district, moved), enroll)


def _enroll_jobs(district: District, moved: bool) -> list[tuple[SimPC, str, str]]:
    """(PC, school code, credential key) of each PC to enroll."""
    pcs = [pc for _, pc in reporting_pcs(district)]
    if moved:
        return [(pc, pc.move_to, f"{pc.key}@{pc.move_to}") for pc in pcs if pc.move_to]
    return [(pc, pc.school, pc.key) for pc in pcs if pc.clone_of is None]


def _pooled_phase(
    name: str,
    workers: int,
    jobs: Iterable[Any],
    task: Callable[[Any, PhaseSummary], None],
) -> PhaseSummary:
    """Run ``task`` on every job in a pool of ``workers`` threads; time the phase."""
    phase = PhaseSummary(name)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda job: task(job, phase), jobs))  # re-raise worker bugs
    phase.elapsed_seconds = time.perf_counter() - started
    logger.info("%s", phase.line())
    return phase


def _enroll_one(
    collector: Collector,
    pc: SimPC,
    code: str,
    key: str,
    tokens: Mapping[str, str],
    credentials: Credentials,
    options: SimOptions,
    phase: PhaseSummary,
) -> None:
    token = token_for(tokens, code, pc.role)
    if token is None:
        phase.record(Outcome("no token", None))
        return
    body = json.dumps(enroll_body(pc, token, options.agent_version)).encode()
    headers = {"Content-Type": "application/json"}
    outcome = collector.post("/api/v1/enroll", body, headers)
    phase.record(outcome)
    if outcome.ok and isinstance(outcome.answer.get("credential"), str):
        credentials.set(key, outcome.answer["credential"])
        logger.debug(
            "enrolled %s at %s as %s", pc.key, code, outcome.answer.get("device_id")
        )
    else:
        logger.warning("enrolling %s at %s failed: %s", pc.key, code, outcome.status)


def send_reports(
    collector: Collector,
    reports: Iterable[PreparedReport],
    credentials: Credentials,
    name: str,
    workers: int,
    district: District | None = None,
) -> PhaseSummary:
    """Send reports with a bounded pool; a device's reports go in order, one at a time.

    Answers are followed: ``replace_credential`` stores the new credential,
    ``send_full_inventory`` and ``run_speedtest`` mark the PC (when ``district`` is
    given) for its next report.
    """
    by_device: dict[str, list[PreparedReport]] = {}
    for report in reports:
        by_device.setdefault(report.device_key, []).append(report)

    def send(queue: list[PreparedReport], phase: PhaseSummary) -> None:
        _send_queue(collector, queue, credentials, phase, district)

    return _pooled_phase(name, workers, by_device.values(), send)


def _send_queue(
    collector: Collector,
    queue: list[PreparedReport],
    credentials: Credentials,
    phase: PhaseSummary,
    district: District | None,
) -> None:
    for report in queue:
        outcome = _send_one(collector, report, credentials)
        phase.record(outcome)
        if outcome.ok:
            _follow_instructions(report, outcome.answer, credentials, district)


def _send_one(
    collector: Collector, report: PreparedReport, credentials: Credentials
) -> Outcome:
    credential = credentials.get(report.credential_keys)
    if credential is None:
        return Outcome("not enrolled", None)
    headers = {
        "Authorization": f"Bearer {credential}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    outcome = collector.post("/api/v1/reports", report.body, headers)
    if not outcome.ok:
        logger.warning("report of %s answered %s", report.device_key, outcome.status)
    return outcome


def _follow_instructions(
    report: PreparedReport,
    answer: Mapping[str, Any],
    credentials: Credentials,
    district: District | None,
) -> None:
    for instruction in answer.get("instructions") or []:
        kind = instruction.get("kind") if isinstance(instruction, Mapping) else None
        if kind == "replace_credential" and isinstance(
            instruction.get("credential"), str
        ):
            credentials.set(report.credential_keys[0], instruction["credential"])
            logger.info("%s got its own credential", report.device_key)
        elif district is not None and kind in ("send_full_inventory", "run_speedtest"):
            pc = district.pc(report.device_key)
            if kind == "send_full_inventory":
                pc.wants_full_inventory = True
            else:
                pc.wants_speedtest = True


# The whole run -----------------------------------------------------------------


def resolve_schools(
    tokens: Mapping[str, str], options: SimOptions, registry: Path | None = None
) -> list[School]:
    """Schools to simulate: registry rows with a token, synthetic ones for the rest."""
    codes = sorted({key.split(":", 1)[0] for key in tokens})
    path = registry or (DEFAULT_REGISTRY if DEFAULT_REGISTRY.exists() else None)
    known = {s.code: s for s in load_registry(path)} if path else {}
    missing = [code for code in codes if code not in known]
    return [known[c] for c in codes if c in known] + synthetic_schools(
        missing, options.seed
    )


def run(
    base_url: str,
    tokens: Mapping[str, str],
    options: SimOptions,
    *,
    schools: Sequence[School] | None = None,
    clock: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    collector: Collector | None = None,
    on_phase: Callable[[PhaseSummary], None] | None = None,
) -> Summary:
    """Simulate the district against the collector at ``base_url``; never raises for
    collector errors (they are counted by status) and stops after ``options.cycles``.
    """
    started = time.perf_counter()
    collector = collector or Collector(base_url, options.timeout_seconds)
    schools = list(schools) if schools is not None else resolve_schools(tokens, options)
    district = build_district(schools, options, clock())
    session = _Session(collector, district, tokens, Credentials(), options, on_phase)

    session.enroll()
    if options.days_history:
        session.send(prepare_history(district, options, clock()), "history")
    for cycle in range(options.cycles):
        if cycle:
            sleep(options.interval_seconds)
        _live_cycle(session, cycle, clock())
    return session.summary(time.perf_counter() - started)


@dataclass
class _Session:
    """What the phases of one run share; each phase is recorded as it ends."""

    collector: Collector
    district: District
    tokens: Mapping[str, str]
    credentials: Credentials
    options: SimOptions
    on_phase: Callable[[PhaseSummary], None] | None
    phases: list[PhaseSummary] = field(default_factory=list)

    def record(self, phase: PhaseSummary) -> None:
        self.phases.append(phase)
        if self.on_phase is not None:
            self.on_phase(phase)

    def enroll(self, moved: bool = False) -> None:
        self.record(
            enroll_devices(
                self.collector,
                self.district,
                self.tokens,
                self.credentials,
                self.options,
                moved=moved,
            )
        )

    def send(self, reports: Iterable[PreparedReport], name: str) -> None:
        workers = self.options.workers
        self.record(
            send_reports(
                self.collector, reports, self.credentials, name, workers, self.district
            )
        )

    def summary(self, elapsed_seconds: float) -> Summary:
        enrollments = [p for p in self.phases if p.name.startswith("enroll")]
        enrolled = sum(p.succeeded for p in enrollments)
        devices = self.district.scenario_devices
        return Summary(self.phases, enrolled, elapsed_seconds, devices)


def _live_cycle(session: _Session, cycle: int, at: datetime) -> None:
    """One live cycle; moved PCs enroll at their new school before the last one."""
    options, district = session.options, session.district
    last = cycle == options.cycles - 1
    if last and district.scenario_devices.get("move"):
        session.enroll(moved=True)
    reports = prepare_cycle(district, cycle, at, options)
    session.send(reports, f"cycle {cycle + 1}/{options.cycles}")


# Tokens ------------------------------------------------------------------------


def tokens_from_db(
    db: str | Path,
    schools: Sequence[School],
    clock: Callable[[], datetime] = utcnow,
) -> dict[str, str]:
    """New enrollment tokens per ``CODE:ROLE``, created in the collector's database.

    The tokens are made as ``schoolmon-server schools token`` makes them (a random
    secret stored as its hash), all in one write transaction, so a collector may
    keep serving the same database meanwhile. A school the registry does not hold
    as active gets no token and a warning.
    """
    if "://" not in str(db) and not Path(db).is_file():
        raise SimulationError(
            f"database {str(db)!r} does not exist; give the collector's SQLite file "
            "(its registry imported with 'schoolmon-server schools import')"
        )
    try:
        storage = Storage(db)
    except StorageError as exc:
        raise SimulationError(str(exc)) from exc
    try:
        return _create_tokens(storage, schools, clock())
    except (sqlite3.Error, psycopg.Error) as exc:
        raise SimulationError(f"database {storage.name!r}: {exc}") from exc
    finally:
        storage.close()


def _create_tokens(
    storage: Storage, schools: Sequence[School], now: datetime
) -> dict[str, str]:
    active = {row["code"] for row in storage.schools(active_only=True)}
    wanted = []
    for school in schools:
        if school.code not in active:
            logger.warning(
                "no token for school %s: not an active school of the registry",
                school.code,
            )
            continue
        wanted += [(school.code, role) for role in _school_roles(school)]
    tokens = issue_enrollment_tokens(storage, wanted, now)
    return {f"{code}:{role}": token for (code, role), token in tokens.items()}


def _school_roles(school: School) -> tuple[str, ...]:
    return ("office", "teacher") if school.level == "preschool" else ("lab", "office")


# Command line ------------------------------------------------------------------

PROG = "python -m schoolmon.server.simulate"


def parse_token(text: str) -> tuple[str, str]:
    """Parse ``CODE=TOKEN`` or ``CODE:ROLE=TOKEN``."""
    key, sep, token = text.partition("=")
    if not sep or not key.strip() or not token.strip():
        raise SimulationError(
            f"--token expects CODE=TOKEN or CODE:ROLE=TOKEN, got {text!r}"
        )
    return key.strip(), token.strip()


def parse_scenarios(text: str) -> frozenset[str]:
    """Parse a comma-separated list of scenarios."""
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(SCENARIOS))
    if unknown:
        raise SimulationError(
            f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    return names


def _say(line: str, err: bool = False) -> None:
    """The one place the command line writes for humans."""
    click.echo(line, err=err)


def _parsed(parse: Callable[[str], Any]) -> Callable[..., Any]:
    """A click callback applying ``parse`` to an option's value(s)."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            if isinstance(value, tuple):
                return tuple(parse(item) for item in value)
            return parse(value)
        except SimulationError as exc:
            raise click.BadParameter(str(exc)) from exc

    return callback


@click.command(
    "simulate",
    help="Simulate a district of school PCs enrolling and reporting to a collector.",
)
@click.option("--url", required=True, help="Collector base URL.")
@click.option(
    "--tokens-from-db",
    "db",
    metavar="DB",
    help="Create tokens in the collector's SQLite file DB.",
)
@click.option(
    "--token",
    "token_pairs",
    multiple=True,
    callback=_parsed(parse_token),
    metavar="CODE[:ROLE]=TOKEN",
    help="An enrollment token (repeatable), instead of --tokens-from-db.",
)
@click.option(
    "--registry",
    type=click.Path(dir_okay=False, path_type=Path),
    help="School registry CSV (default: the sample registry).",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--schools", type=int, help="Simulate only the first N schools.")
@click.option("--pcs-per-school", type=int)
@click.option("--days-history", type=int, default=0, show_default=True)
@click.option("--cycles", type=int, default=1, show_default=True)
@click.option(
    "--interval", type=float, default=0.0, help="Seconds between live cycles."
)
@click.option("--offline-share", type=float, default=0.05, show_default=True)
@click.option("--slow-share", type=float, default=0.1, show_default=True)
@click.option("--workers", type=int, default=8, show_default=True)
@click.option(
    "--scenario",
    "scenarios",
    default="",
    callback=_parsed(parse_scenarios),
    help=f"Comma-separated scenarios: {', '.join(SCENARIOS)}.",
)
@click.option("--timeout", type=float, default=10.0, show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Log detail (DEBUG).")
def simulate_command(**params: Any) -> None:
    if bool(params["db"]) == bool(params["token_pairs"]):
        raise click.UsageError("give either --tokens-from-db DB or --token CODE=TOKEN")
    click.get_current_context().exit(_simulate(params))


def _simulate(params: Mapping[str, Any]) -> int:
    level = logging.DEBUG if params["verbose"] else logging.WARNING
    logging.basicConfig(level=level)
    try:
        options = _options(params)
        started = time.perf_counter()
        tokens, schools = _cli_tokens(params, options)
    except SimulationError as exc:
        _say(f"simulate: {exc}", err=True)
        return 2
    fetched = time.perf_counter() - started
    _say(f"tokens: {len(tokens)} for {len(schools)} schools in {fetched:.2f} s")

    summary = run(params["url"], tokens, options, schools=schools, on_phase=_say_phase)
    _say(summary.line())
    for name, devices in sorted(summary.scenario_devices.items()):
        _say(f"scenario {name}: {', '.join(devices) or 'no suitable device'}")
    return 0 if summary.reports_accepted else 1


def _say_phase(phase: PhaseSummary) -> None:
    _say(phase.line())


def _options(params: Mapping[str, Any]) -> SimOptions:
    return SimOptions(
        seed=params["seed"],
        schools=params["schools"],
        pcs_per_school=params["pcs_per_school"],
        days_history=params["days_history"],
        cycles=params["cycles"],
        interval_seconds=params["interval"],
        offline_share=params["offline_share"],
        slow_share=params["slow_share"],
        workers=params["workers"],
        scenarios=params["scenarios"],
        timeout_seconds=params["timeout"],
    )


def _cli_tokens(
    params: Mapping[str, Any], options: SimOptions
) -> tuple[dict[str, str], list[School]]:
    if params["token_pairs"]:
        tokens = dict(params["token_pairs"])
        return tokens, resolve_schools(tokens, options, params["registry"])
    path = params["registry"] or DEFAULT_REGISTRY
    schools = sorted(load_registry(path), key=lambda s: s.code)[: options.schools]
    return tokens_from_db(params["db"], schools), schools


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv``); return its status."""
    args = list(argv) if argv is not None else None
    try:
        simulate_command.main(args=args, prog_name=PROG, standalone_mode=True)
    except SystemExit as done:  # click ends every standalone run this way
        return done.code if isinstance(done.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
