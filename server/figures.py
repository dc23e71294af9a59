"""Headline figures per school (SPEC.md "Headline figures"), from the database.

One pass of queries reads what every active school needs (``Snapshot``); the pure
modules then judge each school: ``uptime`` (Internet uptime, outages, time with no
device on, the latest verdict), ``policy`` (connectivity class, connected school,
equipped lab) and this module's catalog buckets (lab PCs by memory, OS and age).
Probe cycles come judged from the database (``probe_cycles``, one row per cycle).

``school_figures`` keeps what it read between calls (``FiguresCache``, one per
storage and configuration): each call reads only what changed and judges again
only what that, or the passing of time, changes; its result is the one a fresh
computation (``computed_figures``) gives at the same instant.

Decisions where SPEC.md leaves room:

- Offline now: in session, and no report for ``offline_after`` counted from the
  later of the last report and the start of the current session period, so a
  school silent overnight is offline 15 minutes after its session starts, not at
  once (the same rule the Prometheus recording rule applies). A school that never
  reported counts the same way.
- The agents' probe interval is the report interval the collector hands out
  (``server.report_interval_seconds``): an agent probes once per cycle.
- A speed test counts when it is ok, in session, in the window and carries no flag;
  the collector's plausibility checks are applied here too, so a result stored
  without them is still left out of medians.
- Lab PCs of every school are checked against the minimum specification, also where
  the school has no equipped-lab target, so the catalog's per-reason counts and a
  device's compliance are known everywhere.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from schoolmon.agent.inventory.normalize import clean_text, section_data
from schoolmon.server.auth import ROLES
from schoolmon.server.clock import from_storage, to_storage, to_wire
from schoolmon.server.config import Config
from schoolmon.server.policy import (
    GIB,
    NONCOMPLIANT_REASONS,
    ConnectedVerdict,
    ConnectivityVerdict,
    DeviceFacts,
    DeviceResult,
    LabVerdict,
    Policy,
    School,
    SpeedTest,
    Text,
    connected,
    connectivity,
    lab_verdict,
)
from schoolmon.server.reporting import Report, SchoolRow, build_report
from schoolmon.server.sessions import Interval, session_intervals
from schoolmon.server.speedtest import plausibility_flags
from schoolmon.server.storage import Storage
from schoolmon.server.uptime import (
    DEFAULT_COVERAGE_INTERVALS,
    Outage,
    SchoolTimeline,
    Uptime,
    Verdict,
    uptime_from_verdicts,
)
from schoolmon.server.uptime import offline_now as offline_verdict

logger = logging.getLogger(__name__)

DEVICE_STATES = ("online", "seen_7d")
MEMORY_BUCKETS = ("lt_4gib", "4_8gib", "ge_8gib", "unknown")
AGE_BUCKETS = ("lt_5y", "5_10y", "ge_10y", "unknown")
UNKNOWN_OS = "unknown"
_WINDOWS = re.compile(r"windows\s+(xp|vista|server\s+\d+|\d+(?:\.\d+)?)", re.I)
_WINDOWS_11_BUILD = 22000
# Schools whose timelines are rebuilt with one query each; more: one query for all.
REBUILD_ONE_BY_ONE = 50
_NOTHING = (object(), None)


# What the database holds --------------------------------------------------------------


class DeviceRow(NamedTuple):
    """What the figures read of one device (instants as stored text)."""

    school: str
    id: str
    role: str
    last_seen_at: str | None
    last_skew_seconds: float | None
    inventory_hash: str | None

    @property
    def inventory_key(self) -> object:
        """Changes whenever the content of the device's stored inventory does (the
        content hash; an inventory stored without one never matches)."""
        return self.inventory_hash if self.inventory_hash is not None else object()


@dataclass(frozen=True)
class Snapshot:
    """Everything the figures read, by school code (devices' inventories by id;
    probe cycle verdicts by school and device, in time order)."""

    schools: list[dict[str, Any]]
    devices: dict[str, list[DeviceRow]]
    verdicts: dict[str, dict[str, list[Verdict]]]
    speedtests: dict[str, list[dict[str, Any]]]
    inventories: dict[str, dict[str, Any]]
    asset_events: dict[str, dict[str, int]]


def load_snapshot(
    storage: Storage, config: Config, now: datetime, school: str | None = None
) -> Snapshot:
    """Read what the figures need with one query per kind (all active schools, or
    the one ``school``), all from one state of the database."""
    window = config.policy.uptime_window
    coverage = timedelta(seconds=_coverage_seconds(config))
    start, end = now - window, now + timedelta(microseconds=1)
    with storage.snapshot():
        if school is None:
            schools = storage.schools()
        else:
            schools = [row for row in [storage.school(school)] if row is not None]
        return Snapshot(
            schools=schools,
            devices=devices_by_school(storage.device_states(school)),
            verdicts=cycle_verdicts(
                storage.probe_cycles(start - coverage, end, school)
            ),
            speedtests=_by_school(storage.speedtests_between(start, end, school)),
            inventories=storage.inventory_facts(school),
            asset_events=events_by_school(
                storage.asset_event_counts_between(start, end)
            ),
        )


def _by_school(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["school"], []).append(row)
    return grouped


def devices_by_school(rows: Iterable[tuple[Any, ...]]) -> dict[str, list[DeviceRow]]:
    """``Storage.device_states`` rows as DeviceRows by school, in the rows' order."""
    grouped: dict[str, list[DeviceRow]] = {}
    make = DeviceRow._make
    for row in rows:
        school = grouped.get(row[0])
        if school is None:
            school = grouped[row[0]] = []
        school.append(make(row))
    return grouped


def cycle_verdicts(
    rows: Iterable[tuple[Any, ...]],
) -> dict[str, dict[str, list[Verdict]]]:
    """Probe cycle rows ``(school, device, verdict_at, reached)`` as verdicts
    ``(instant as POSIX seconds, reached)`` per school and device, in time order."""
    grouped: dict[str, dict[str, list[Verdict]]] = {}
    for school, device, at, reached in rows:
        runs = grouped.setdefault(school, {}).setdefault(device, [])
        runs.append((from_storage(at).timestamp(), bool(reached)))
    for devices in grouped.values():
        for runs in devices.values():
            runs.sort()
    return grouped


def events_by_school(
    counts: Mapping[tuple[str, str], int],
) -> dict[str, dict[str, int]]:
    """Asset event counts ``{(school, kind): n}`` as ``{school: {kind: n}}``."""
    grouped: dict[str, dict[str, int]] = {}
    for (school, kind), n in sorted(counts.items()):
        grouped.setdefault(school, {})[kind] = n
    return grouped


def _coverage_seconds(config: Config) -> float:
    return config.server.report_interval_seconds * DEFAULT_COVERAGE_INTERVALS


# The figures of one school ------------------------------------------------------------


@dataclass(frozen=True)
class LabPcs:
    """The school's lab PCs: specification checks and the catalog's buckets."""

    results: tuple[DeviceResult, ...] = ()
    noncompliant: Mapping[str, int] = field(
        default_factory=lambda: dict.fromkeys(NONCOMPLIANT_REASONS, 0)
    )
    by_memory: Mapping[str, int] = field(
        default_factory=lambda: dict.fromkeys(MEMORY_BUCKETS, 0)
    )
    by_os: Mapping[str, int] = field(default_factory=lambda: {UNKNOWN_OS: 0})
    by_age: Mapping[str, int] = field(
        default_factory=lambda: dict.fromkeys(AGE_BUCKETS, 0)
    )

    @property
    def compliant(self) -> int:
        return sum(1 for result in self.results if result.compliant)


@dataclass(frozen=True)
class SchoolFigures:
    """What the collector knows about one registered school at one instant."""

    info: dict[str, Any]
    at: datetime
    in_session: bool
    last_seen: datetime | None
    offline_now: bool
    devices: dict[tuple[str, str], int]
    uptime: Uptime
    connectivity: ConnectivityVerdict
    last_speedtest_at: datetime | None
    connected: ConnectedVerdict
    lab: LabVerdict
    lab_pcs: LabPcs
    clock_skew_seconds: float
    asset_events: dict[str, int]

    @property
    def code(self) -> str:
        return self.info["code"]

    @property
    def internet_up(self) -> bool | None:
        """The latest verdict: did the school's latest probe cycle reach the
        Internet (None before any)."""
        return self.uptime.internet_up_now

    @property
    def lab_target(self) -> bool:
        """Whether the school has an equipped-lab target (primary, lower secondary)."""
        return self.lab.required is not None and self.info["level"] != "preschool"

    def pcs_by_role(self) -> dict[str, int]:
        """Devices seen in the window, by role."""
        return {role: self.devices[(role, "seen_7d")] for role in ROLES}


def school_figures(
    storage: Storage,
    config: Config,
    now: datetime,
    pause: Callable[[], None] | None = None,
) -> dict[str, SchoolFigures]:
    """Figures of every active school, by code (kept between calls: see
    ``FiguresCache``); ``pause`` is called between schools (a background caller
    gives the CPU back there)."""
    return figures_cache(storage, config).figures(now, pause)


def figures_for(
    storage: Storage, config: Config, now: datetime, code: str
) -> SchoolFigures | None:
    """Figures of one school (None when it is not registered)."""
    snapshot = load_snapshot(storage, config, now, school=code)
    if not snapshot.schools:
        return None
    return Judge(config, now).school(snapshot.schools[0], snapshot)


def computed_figures(
    storage: Storage, config: Config, now: datetime
) -> dict[str, SchoolFigures]:
    """Figures of every active school computed afresh from one pass of queries."""
    snapshot = load_snapshot(storage, config, now)
    judge = Judge(config, now)
    return {row["code"]: judge.school(row, snapshot) for row in snapshot.schools}


LabFigures = tuple[LabVerdict, "LabPcs"]
TestFigures = tuple[ConnectivityVerdict, datetime | None]


class Judge:
    """Turns what the database holds into figures at one instant with one
    configuration."""

    def __init__(self, config: Config, now: datetime) -> None:
        self.config, self.now = config, now
        self.policy = Policy.from_config(config)
        self.window = config.policy.uptime_window
        self.interval = config.server.report_interval_seconds
        self._sessions: dict[str | None, list[Interval]] = {}
        self.now_text = to_storage(now)
        self.seen_since = to_storage(now - self.window)
        self.online_since = to_storage(now - config.policy.offline_after)

    def sessions(self, timezone: str | None) -> list[Interval]:
        """Session intervals of the window (plus a day) up to now, per time zone."""
        if timezone not in self._sessions:
            start = self.now - self.window - timedelta(days=1)
            end = self.now + timedelta(microseconds=1)
            self._sessions[timezone] = session_intervals(
                self.config.sessions, start, end, timezone
            )
        return self._sessions[timezone]

    def school(self, row: dict[str, Any], snapshot: Snapshot) -> SchoolFigures:
        """The figures of the school ``row`` from a snapshot."""
        code, sessions = row["code"], self.sessions(row.get("timezone"))
        devices = snapshot.devices.get(code, [])
        verdicts = snapshot.verdicts.get(code, {})
        uptime = uptime_from_verdicts(
            verdicts, sessions, self.interval, self.now, self.window
        )
        internet = _instants(latest_reached(verdicts))
        lab = self.lab(row, devices, snapshot.inventories, internet)
        tested = self.tested(row, snapshot.speedtests.get(code, []))
        return self.assemble(
            row, devices, uptime, lab, tested, snapshot.asset_events.get(code, {})
        )

    def assemble(
        self,
        row: dict[str, Any],
        devices: list[DeviceRow],
        uptime: Uptime,
        lab: LabFigures,
        tested: TestFigures,
        asset_events: dict[str, int],
    ) -> SchoolFigures:
        """The school's figures from its judged parts and its devices."""
        period_start = current_period_start(
            self.sessions(row.get("timezone")), self.now
        )
        seen = max((d.last_seen_at for d in devices if d.last_seen_at), default=None)
        last_seen = from_storage(seen)
        verdict, last_test = tested
        return SchoolFigures(
            info=row,
            at=self.now,
            in_session=period_start is not None,
            last_seen=last_seen,
            offline_now=self.offline(last_seen, period_start),
            devices=self.device_counts(devices),
            uptime=uptime,
            connectivity=verdict,
            last_speedtest_at=last_test,
            connected=connected(
                uptime.uptime_ratio, verdict.connectivity_class, self.policy
            ),
            lab=lab[0],
            lab_pcs=lab[1],
            clock_skew_seconds=self.largest_skew(devices),
            asset_events=asset_events,
        )

    def offline(
        self, last_seen: datetime | None, period_start: datetime | None
    ) -> bool:
        """Offline now: in session and silent for ``offline_after`` of session."""
        if period_start is None:
            return False
        since = max(last_seen, period_start) if last_seen else period_start
        return offline_verdict(since, True, self.now, self.config.policy.offline_after)

    def device_counts(self, devices: Iterable[DeviceRow]) -> dict[tuple[str, str], int]:
        """Devices per (role, state) for every role and state, zeros included.

        ``online``: reported within the offline window; ``seen_7d``: within the
        uptime window (7 days by default).
        """
        counts = {(role, state): 0 for role in ROLES for state in DEVICE_STATES}
        for device in devices:
            seen, role = device.last_seen_at, device.role
            if seen is None or role not in ROLES:
                continue
            if seen > self.online_since:
                counts[(role, "online")] += 1
            if seen > self.seen_since:
                counts[(role, "seen_7d")] += 1
        return counts

    def largest_skew(self, devices: Iterable[DeviceRow]) -> float:
        """Largest absolute clock skew among devices seen in the window (0 when
        none)."""
        skews = [
            abs(d.last_skew_seconds)
            for d in devices
            if d.last_skew_seconds is not None
            and d.last_seen_at is not None
            and d.last_seen_at > self.seen_since
        ]
        return max(skews, default=0.0)

    def lab(
        self,
        row: dict[str, Any],
        devices: list[DeviceRow],
        inventories: Mapping[str, dict[str, Any]],
        internet: Mapping[str, datetime],
    ) -> LabFigures:
        """The equipped-lab verdict and the school's lab PCs."""
        facts = device_facts(devices, inventories, internet)
        verdict = lab_verdict(_school(row), facts, now=self.now, policy=self.policy)
        return verdict, self.lab_pcs(row["code"], facts, inventories)

    def lab_signature(
        self,
        row: dict[str, Any],
        devices: list[DeviceRow],
        internet: Mapping[str, datetime],
    ) -> tuple[Any, ...]:
        """Everything ``lab`` depends on at this instant: equal signatures give
        equal lab figures (the instants of devices seen and online in the window
        matter only through that)."""
        low, high = self.now - self.window, self.now
        seen_since, now_text = self.seen_since, self.now_text
        entries = []
        for d in devices:
            seen = d.last_seen_at
            net = internet.get(d.id)
            recent = seen is not None and seen_since <= seen <= now_text
            online = net is not None and low <= net <= high
            entries.append(
                (
                    d.id,
                    d.role,
                    d.inventory_key,
                    None if recent else (seen,),
                    None if online else (net,),
                )
            )
        return (tuple(row.values()), self.now.date(), tuple(entries))

    def tested(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> TestFigures:
        """The connectivity verdict and the latest valid speed test of the window's
        stored speed tests ``rows``."""
        tests = speed_tests(rows, row, self.sessions(row.get("timezone")))
        verdict = connectivity(
            tests, now=self.now, students=row.get("students"), policy=self.policy
        )
        return verdict, last_valid_test(tests, self.now, self.window)

    def lab_pcs(
        self, code: str, facts: list[DeviceFacts], inventories: Mapping[str, Any]
    ) -> LabPcs:
        """The school's lab PCs against the minimum specification, and the lab PCs
        seen in the window by memory, OS and age."""
        lab = [f for f in facts if f.role == "lab"]
        checks = specification_checks(code, lab, self.now, self.policy)
        seen = [f for f in lab if _seen(f, self.now, self.window)]
        sections = [inventories.get(f.device_id, {}) for f in seen]
        return LabPcs(
            results=checks.devices,
            noncompliant=dict(checks.noncompliant),
            by_memory=_count(
                MEMORY_BUCKETS, (memory_bucket(f, self.policy) for f in seen)
            ),
            by_os=_count(
                (UNKNOWN_OS,), (os_label(section_data(s, "os")) for s in sections)
            ),
            by_age=_count(AGE_BUCKETS, (age_bucket(s, self.now) for s in sections)),
        )


def specification_checks(
    code: str, lab: list[DeviceFacts], now: datetime, policy: Policy
) -> LabVerdict:
    """``lab`` devices checked against the minimum specification whatever the
    school's target (judged as a lab of zero required PCs)."""
    school = School(code, "primary", has_informatics=True, lab_pcs_required=0)
    return lab_verdict(school, lab, now=now, policy=policy)


def device_compliance(
    facts: DeviceFacts, now: datetime, policy: Policy
) -> tuple[DeviceResult, tuple[Text, ...]]:
    """One device against the lab PC specification, with the reasons it fails."""
    verdict = specification_checks("-", [replace(facts, role="lab")], now, policy)
    return verdict.devices[0], verdict.reasons


# Pieces -------------------------------------------------------------------------------


def _school(row: dict[str, Any]) -> School:
    return School(
        code=row["code"],
        level=row["level"],
        has_informatics=row.get("has_informatics"),
        lab_pcs_required=row.get("lab_pcs_required"),
        students=row.get("students"),
    )


def latest_reached(verdicts: Mapping[str, list[Verdict]]) -> dict[str, float]:
    """Per device, the instant of its latest cycle that reached the Internet."""
    latest: dict[str, float] = {}
    for device, runs in verdicts.items():
        reached = [at for at, ok in runs if ok]
        if reached:
            latest[device] = max(reached)
    return latest


def _instants(stamps: Mapping[str, float]) -> dict[str, datetime]:
    return {key: datetime.fromtimestamp(at, UTC) for key, at in stamps.items()}


def device_facts(
    devices: Iterable[DeviceRow],
    inventories: Mapping[str, dict[str, Any]],
    internet: Mapping[str, datetime],
) -> list[DeviceFacts]:
    """What the lab figure needs of each device."""
    return [
        DeviceFacts.from_sections(
            device.id,
            device.role,
            inventories.get(device.id, {}),
            last_seen_at=from_storage(device.last_seen_at),
            last_internet_at=internet.get(device.id),
        )
        for device in devices
    ]


def speed_tests(
    rows: list[dict[str, Any]], school: dict[str, Any], sessions: list[Interval]
) -> list[SpeedTest]:
    """Stored speed tests as the connectivity class reads them."""
    contracted = school.get("contracted_download_mbps")
    return [
        SpeedTest(
            at=row["placed_at"],
            ok=bool(row["ok"]),
            download_bytes_per_second=row["download_bytes_per_second"],
            upload_bytes_per_second=row["upload_bytes_per_second"],
            latency_seconds=row["latency_seconds"],
            in_session=_inside(sessions, row["placed_at"]),
            flags=tuple(
                sorted(
                    set(row["flags"] or ()) | set(plausibility_flags(row, contracted))
                )
            ),
        )
        for row in rows
    ]


def last_valid_test(
    tests: Iterable[SpeedTest], now: datetime, window: timedelta
) -> datetime | None:
    """The latest test that counts for the class (ok, unflagged, in session)."""
    valid = [
        t.at
        for t in tests
        if t.ok
        and t.download_bytes_per_second is not None
        and not t.flags
        and t.in_session
        and now - window <= t.at <= now
    ]
    return max(valid, default=None)


def current_period_start(sessions: list[Interval], now: datetime) -> datetime | None:
    """Start of the session period ``now`` falls in (None out of session)."""
    for lo, hi in reversed(sessions):
        if lo <= now < hi:
            return lo
        if hi <= now:
            return None
    return None


def _inside(sessions: list[Interval], at: datetime) -> bool:
    return any(lo <= at < hi for lo, hi in sessions)


def _seen(facts: DeviceFacts, now: datetime, window: timedelta) -> bool:
    return facts.last_seen_at is not None and now - window <= facts.last_seen_at <= now


def _count(always: Iterable[str], values: Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(always, 0)
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


# Catalog buckets ----------------------------------------------------------------------


def memory_bucket(facts: DeviceFacts, policy: Policy) -> str:
    """``lt_4gib``, ``4_8gib``, ``ge_8gib`` by installed memory; from the usable
    memory plus the firmware's share when the modules are unknown."""
    memory = facts.installed_memory_bytes
    if memory is None and facts.usable_memory_bytes is not None:
        memory = facts.usable_memory_bytes + policy.usable_memory_tolerance_bytes
    if memory is None:
        return "unknown"
    if memory < 4 * GIB:
        return "lt_4gib"
    return "4_8gib" if memory < 8 * GIB else "ge_8gib"


def os_label(os_data: Mapping[str, Any]) -> str:
    """Family and version, e.g. ``Windows 10``, ``Ubuntu 22.04`` (``unknown``)."""
    name, version = clean_text(os_data.get("name")), clean_text(os_data.get("version"))
    if name is None:
        return UNKNOWN_OS
    windows = _WINDOWS.search(name)
    if windows is None:
        return " ".join(part for part in (name, version) if part)
    release = windows.group(1)
    label = "Windows " + ("XP" if release.lower() == "xp" else release.title())
    build = str(os_data.get("build") or "")
    if label == "Windows 10" and build.isdigit() and int(build) >= _WINDOWS_11_BUILD:
        return "Windows 11"
    return label


def age_bucket(sections: Mapping[str, Any], now: datetime) -> str:
    """``lt_5y``, ``5_10y``, ``ge_10y`` from the BIOS date (``unknown`` without one
    or with one in the future)."""
    text = section_data(sections, "system").get("bios_date")
    try:
        made = date.fromisoformat(str(text)[:10])
    except ValueError:
        return "unknown"
    years = (now.date() - made).days / 365.25
    if years < 0:
        return "unknown"
    if years < 5:
        return "lt_5y"
    return "5_10y" if years < 10 else "ge_10y"


# Kept between scrapes -----------------------------------------------------------------

_CACHES: weakref.WeakKeyDictionary[Storage, list[FiguresCache]] = (
    weakref.WeakKeyDictionary()
)
_CACHES_LOCK = threading.Lock()


def figures_cache(storage: Storage, config: Config) -> FiguresCache:
    """The cache of ``storage``'s figures under ``config`` (made on first use)."""
    with _CACHES_LOCK:
        caches = _CACHES.setdefault(storage, [])
        for cache in caches:
            if cache.config is config:
                return cache
        cache = FiguresCache(storage, config)
        caches.append(cache)
        return cache


class FiguresCache:
    """The figures of every active school at successive instants, computed from
    what changed in the database since the previous call.

    The result is the one ``computed_figures`` gives at the same instant. Each call
    reads the registry, the devices (a light row each) and the new probe cycles and
    speed tests. A school's Internet timeline is extended with its new cycle
    verdicts (``uptime.SchoolTimeline``) and clipped to the window at each call; its
    lab figures and its connectivity are judged again only when what they depend
    on changed (devices, inventories, speed tests, or the instants at which a
    device leaves the window). A call for an instant before an earlier call's, or
    a school holding cycles judged after the instant, is computed afresh.
    """

    def __init__(self, storage: Storage, config: Config) -> None:
        self._storage = weakref.ref(storage)  # the registry's key: never hold it
        self.config = config
        self.window = config.policy.uptime_window
        self.coverage = _coverage_seconds(config)
        self._lock = threading.Lock()
        self._latest: datetime | None = None
        self._registry: list[tuple[Any, ...]] | None = None
        self._schools: list[dict[str, Any]] = []
        self._cycles_seen = -1
        self._timelines: dict[str, SchoolTimeline] = {}
        self._tests_seen = 0
        self._tests: dict[str, list[dict[str, Any]]] = {}
        self._facts: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._labs: dict[str, tuple[tuple[Any, ...], LabFigures]] = {}
        self._tested: dict[str, tuple[tuple[Any, ...], TestFigures]] = {}

    @property
    def storage(self) -> Storage:
        storage = self._storage()
        if storage is None:
            raise RuntimeError("the storage of these figures was closed and dropped")
        return storage

    def figures(
        self, now: datetime, pause: Callable[[], None] | None = None
    ) -> dict[str, SchoolFigures]:
        """Figures of every active school at ``now``, by code (``pause`` called
        between schools)."""
        with self._lock:
            if self._latest is not None and now < self._latest:
                return computed_figures(self.storage, self.config, now)
            self._latest = now
            judge = Judge(self.config, now)
            with self.storage.snapshot():
                devices, events = self._read(now)
            figures = {}
            for row in self._schools:
                figures[row["code"]] = self._school(judge, row, devices, events)
                if pause is not None:
                    pause()
            return figures

    def _read(self, now: datetime) -> tuple[dict[str, list[DeviceRow]], Any]:
        """Bring the cache up to the database's state; return the devices by school
        and the window's asset events by school."""
        storage = self.storage
        registry = storage.school_rows()
        if registry != self._registry:
            self._registry, self._schools = registry, storage.schools()
        devices = devices_by_school(storage.device_states())
        self._read_facts(devices)
        self._read_cycles(now)
        self._read_tests(now)
        start, end = now - self.window, now + timedelta(microseconds=1)
        events = events_by_school(storage.asset_event_counts_between(start, end))
        return devices, events

    def _read_facts(self, devices: dict[str, list[DeviceRow]]) -> None:
        known = self._facts
        stale = {
            d.id: key
            for school in devices.values()
            for d in school
            if known.get(d.id, _NOTHING)[0] != (key := d.inventory_key)
        }
        read = self.storage.inventory_facts_of(list(stale)) if stale else {}
        for device, key in stale.items():
            known[device] = (key, read.get(device, {}))

    def _read_cycles(self, now: datetime) -> None:
        """Extend each school's timeline with its new cycles; rebuild it from the
        database when a stored cycle changed or a cycle came too late to extend."""
        active = {row["code"] for row in self._schools}
        if self._cycles_seen < 0:
            self._cycles_seen = self.storage.last_probe_sample()
            stale = set(active)
        else:
            stale = self._new_cycles(active)
        stale |= active - set(self._timelines)
        if stale:
            self._rebuild(stale, now)

    def _new_cycles(self, active: set[str]) -> set[str]:
        seen = self._cycles_seen
        rows = self.storage.probe_cycles_changed(seen)
        if rows:
            self._cycles_seen = rows[-1][5]
        stale, new = set(), {}
        for school, device, at, reached, first, _ in rows:
            if school not in active:
                continue
            if first <= seen:
                stale.add(school)
            verdict = (from_storage(at).timestamp(), bool(reached))
            new.setdefault(school, {}).setdefault(device, []).append(verdict)
        for school, verdicts in new.items():
            timeline = self._timelines.get(school)
            if school in stale or timeline is None or not timeline.add(verdicts):
                stale.add(school)
        return stale

    def _rebuild(self, schools: set[str], now: datetime) -> None:
        loaded_from = now - self.window - timedelta(seconds=self.coverage)
        if len(schools) > REBUILD_ONE_BY_ONE:
            rows = self.storage.probe_cycles(loaded_from, None)
        else:
            rows = []
            for school in sorted(schools):
                rows += self.storage.probe_cycles(loaded_from, None, school)
        verdicts = cycle_verdicts(rows)
        for school in schools:
            self._timelines[school] = SchoolTimeline.build(
                verdicts.get(school, {}), self.coverage, loaded_from.timestamp()
            )
        logger.debug("figures: rebuilt the timelines of %d schools", len(schools))

    def _read_tests(self, now: datetime) -> None:
        """Add new speed tests; forget those that left the window."""
        start = now - self.window
        newest = self.storage.last_speedtest()
        for row in self.storage.speedtests_after(self._tests_seen, start, newest):
            self._tests.setdefault(row["school"], []).append(row)
        self._tests_seen = newest
        for school, rows in self._tests.items():
            if rows and rows[0]["placed_at"] < start:
                self._tests[school] = [r for r in rows if r["placed_at"] >= start]

    def _school(
        self,
        judge: Judge,
        row: dict[str, Any],
        devices: dict[str, list[DeviceRow]],
        events: dict[str, dict[str, int]],
    ) -> SchoolFigures:
        code = row["code"]
        timeline = self._timelines[code]
        if not timeline.covers(judge.now, self.window):
            return figures_for(self.storage, self.config, judge.now, code)
        own = devices.get(code, [])
        sessions = judge.sessions(row.get("timezone"))
        uptime = timeline.uptime(sessions, judge.now, self.window)
        internet = _instants(timeline.last_internet(judge.now, self.window))
        return judge.assemble(
            row,
            own,
            uptime,
            self._lab(judge, row, own, internet),
            self._tested_at(judge, row),
            events.get(code, {}),
        )

    def _lab(
        self,
        judge: Judge,
        row: dict[str, Any],
        devices: list[DeviceRow],
        internet: dict[str, datetime],
    ) -> LabFigures:
        signature = judge.lab_signature(row, devices, internet)
        known = self._labs.get(row["code"])
        if known is not None and known[0] == signature:
            return known[1]
        inventories = {d.id: self._facts[d.id][1] for d in devices}
        lab = judge.lab(row, devices, inventories, internet)
        self._labs[row["code"]] = (signature, lab)
        return lab

    def _tested_at(self, judge: Judge, row: dict[str, Any]) -> TestFigures:
        start, now = judge.now - self.window, judge.now
        rows = [
            r
            for r in self._tests.get(row["code"], [])
            if start <= r["placed_at"] <= now
        ]
        signature = (tuple(row.values()), tuple(r["rowid"] for r in rows))
        known = self._tested.get(row["code"])
        if known is not None and known[0] == signature:
            return known[1]
        rows.sort(key=lambda r: (r["placed_at"], r["device"], r["run"], r["seq"]))
        tested = judge.tested(row, rows)
        self._tested[row["code"]] = (signature, tested)
        return tested


# As the API shows them ----------------------------------------------------------------


def thresholds(config: Config) -> dict[str, float]:
    """Every threshold in force, by name, in base units."""
    values = Policy.from_config(config).thresholds()
    values["offline_after_seconds"] = config.policy.offline_after.total_seconds()
    values["probe_interval_seconds"] = float(config.server.report_interval_seconds)
    return dict(sorted(values.items()))


def summary_json(figures: SchoolFigures) -> dict[str, Any]:
    """The figures of the school list."""
    devices: dict[str, dict[str, int]] = {role: {} for role in ROLES}
    for (role, state), count in figures.devices.items():
        devices[role][state] = count
    return {
        "in_session": figures.in_session,
        "last_seen": _wire(figures.last_seen),
        "offline_now": figures.offline_now,
        "internet_up": figures.internet_up,
        "devices": devices,
        "uptime_ratio": figures.uptime.uptime_ratio,
        "connectivity_class": figures.connectivity.connectivity_class,
        "connected": figures.connected.connected,
        "lab_equipped": figures.lab.equipped,
    }


def detail_json(figures: SchoolFigures) -> dict[str, Any]:
    """Every figure of one school, with reasons in English and Vietnamese."""
    return summary_json(figures) | {
        "at": _wire(figures.at),
        "uptime": uptime_json(figures.uptime),
        "connectivity": connectivity_json(figures),
        "connected_why": text_json(figures.connected.why),
        "lab": lab_json(figures),
        "devices_unsupported_os": figures.lab.unsupported_os,
        "clock_skew_seconds": figures.clock_skew_seconds,
        "asset_events": figures.asset_events,
    }


def uptime_json(uptime: Uptime) -> dict[str, Any]:
    """Internet uptime over the window (seconds of session time)."""
    return {
        "window": window_json(uptime),
        "ratio": uptime.uptime_ratio,
        "session_seconds": uptime.session_seconds,
        "up_seconds": uptime.up_seconds,
        "down_seconds": uptime.down_seconds,
        "no_device_seconds": uptime.no_device_seconds,
        "outages": len(uptime.outages),
        "ongoing_outage_started_at": _wire(uptime.ongoing_outage_started_at),
        "latest_verdict_at": _wire(uptime.latest_verdict_at),
    }


def window_json(uptime: Uptime) -> dict[str, str | None]:
    return {"start": _wire(uptime.window_start), "end": _wire(uptime.window_end)}


def outage_json(outage: Outage) -> dict[str, Any]:
    """One Internet outage; ``end`` is null while it goes on."""
    return {
        "start": _wire(outage.start),
        "end": _wire(outage.end),
        "in_session_seconds": outage.in_session_seconds,
        "ongoing": outage.end is None,
        "clipped_at_window_start": outage.clipped_at_window_start,
    }


def connectivity_json(figures: SchoolFigures) -> dict[str, Any]:
    verdict = figures.connectivity
    return {
        "class": verdict.connectivity_class,
        "median_download_bytes_per_second": verdict.median_download_bytes_per_second,
        "median_upload_bytes_per_second": verdict.median_upload_bytes_per_second,
        "median_latency_seconds": verdict.median_latency_seconds,
        "valid_tests": verdict.valid_tests,
        "excluded": dict(verdict.excluded),
        "good_threshold_bytes_per_second": verdict.good_threshold_bytes_per_second,
        "moderate_threshold_bytes_per_second": (
            verdict.moderate_threshold_bytes_per_second
        ),
        "last_valid_test_at": _wire(figures.last_speedtest_at),
    }


def lab_json(figures: SchoolFigures) -> dict[str, Any]:
    lab, pcs = figures.lab, figures.lab_pcs
    return {
        "equipped": lab.equipped,
        "compliant": lab.compliant if lab.required is not None else None,
        "required": lab.required,
        "why": text_json(lab.why),
        "reasons": [text_json(reason) for reason in lab.reasons],
        "lab_pcs_compliant": pcs.compliant,
        "lab_pcs_noncompliant": dict(pcs.noncompliant),
        "lab_pcs_by_memory": dict(pcs.by_memory),
        "lab_pcs_by_os": dict(pcs.by_os),
        "lab_pcs_by_age": dict(pcs.by_age),
        "pcs_seen": lab.pcs_seen,
        "thresholds": dict(lab.thresholds),
    }


def text_json(text: Text) -> dict[str, str]:
    return {"en": text.en, "vi": text.vi}


def _wire(instant: datetime | None) -> str | None:
    return to_wire(instant) if instant is not None else None


# One device ---------------------------------------------------------------------------


def device_figures(
    storage: Storage, config: Config, now: datetime, device: dict[str, Any]
) -> dict[str, Any]:
    """A device against the lab PC specification, and why, as the API shows it."""
    start = now - config.policy.uptime_window
    end = now + timedelta(microseconds=1)
    with storage.snapshot():
        cycles = storage.probe_cycles(start, end, device["school"])
        sections = storage.inventory_facts_of([device["id"]]).get(device["id"], {})
    verdicts = cycle_verdicts(cycles).get(device["school"], {})
    internet = _instants(latest_reached(verdicts))
    facts = DeviceFacts.from_sections(
        device["id"],
        device["role"],
        sections,
        last_seen_at=device["last_seen_at"],
        last_internet_at=internet.get(device["id"]),
    )
    result, reasons = device_compliance(facts, now, Policy.from_config(config))
    return compliance_json(facts, result, reasons, sections)


def compliance_json(
    facts: DeviceFacts,
    result: DeviceResult,
    reasons: Iterable[Text],
    sections: Mapping[str, Any],
) -> dict[str, Any]:
    """Whether a device meets the lab PC specification, the facts it was judged on
    and every failed check (value and limit in base units)."""
    return {
        "compliant": result.compliant,
        "counts_for_lab": facts.role == "lab",
        "failures": [
            {"reason": f.reason, "value": _plain(f.value), "limit": _plain(f.limit)}
            for f in result.failures
        ],
        "reasons": [text_json(reason) for reason in reasons],
        "unsupported_os": result.unsupported_os,
        "logical_cpus": facts.logical_cpus,
        "installed_memory_bytes": facts.installed_memory_bytes,
        "usable_memory_bytes": facts.usable_memory_bytes,
        "system_disk_bytes": facts.system_disk_bytes,
        "os": facts.os_name,
        "os_label": os_label(section_data(sections, "os")),
        "last_seen_at": _wire(facts.last_seen_at),
        "last_internet_at": _wire(facts.last_internet_at),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_wire(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


# The province report -----------------------------------------------------------------


def report_row(figures: SchoolFigures) -> SchoolRow:
    """The school's line of the province report."""
    row = figures.info
    return SchoolRow.from_verdicts(
        code=row["code"],
        name=row["name"],
        level=row["level"],
        commune=row["commune"],
        connectivity=figures.connectivity,
        connected=figures.connected,
        lab=figures.lab,
        pcs_by_role=figures.pcs_by_role(),
        asset_events=sum(figures.asset_events.values()),
        last_seen_at=figures.last_seen,
    )


def district_report(storage: Storage, config: Config, now: datetime) -> Report:
    """The province report of every active school for the window ending at ``now``."""
    figures = computed_figures(storage, config, now)
    return build_report(
        [report_row(f) for f in figures.values()],
        period_start=now - config.policy.uptime_window,
        period_end=now,
        generated_at=now,
        policy=Policy.from_config(config),
        timezone=config.sessions.timezone,
    )
