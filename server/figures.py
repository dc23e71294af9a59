"""Headline figures per school (SPEC.md "Headline figures"), from the database.

One pass of queries reads what every active school needs (``Snapshot``); the pure
modules then judge each school: ``uptime`` (Internet uptime, outages, time with no
device on, the latest verdict), ``policy`` (connectivity class, connected school,
equipped lab) and this module's catalog buckets (lab PCs by memory, OS and age).

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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from schoolmon.agent.inventory.normalize import clean_text, section_data
from schoolmon.server.auth import ROLES
from schoolmon.server.clock import from_storage, to_wire
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
from schoolmon.server.uptime import Outage, ProbeSample, Uptime, compute_uptime
from schoolmon.server.uptime import offline_now as offline_verdict

DEVICE_STATES = ("online", "seen_7d")
MEMORY_BUCKETS = ("lt_4gib", "4_8gib", "ge_8gib", "unknown")
AGE_BUCKETS = ("lt_5y", "5_10y", "ge_10y", "unknown")
UNKNOWN_OS = "unknown"
_WINDOWS = re.compile(r"windows\s+(xp|vista|server\s+\d+|\d+(?:\.\d+)?)", re.I)
_WINDOWS_11_BUILD = 22000


# What the database holds --------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Everything the figures read, by school code (devices' inventories by id)."""

    schools: list[dict[str, Any]]
    devices: dict[str, list[dict[str, Any]]]
    cycles: dict[str, list[tuple[Any, ...]]]
    speedtests: dict[str, list[dict[str, Any]]]
    inventories: dict[str, dict[str, Any]]
    asset_events: dict[tuple[str, str], int]


def load_snapshot(
    storage: Storage, config: Config, now: datetime, school: str | None = None
) -> Snapshot:
    """Read what the figures need with one query per kind (all active schools, or
    the one ``school``)."""
    window = config.policy.uptime_window
    coverage = timedelta(seconds=_coverage_seconds(config))
    start, end = now - window, now + timedelta(microseconds=1)
    if school is None:
        schools = storage.schools()
    else:
        schools = [row for row in [storage.school(school)] if row is not None]

    return Snapshot(
        schools=schools,
        devices=_by_school(storage.devices(school)),
        cycles=_by_first(storage.probe_cycles(start - coverage, end, school)),
        speedtests=_by_school(storage.speedtests_between(start, end, school)),
        inventories=storage.inventory_facts(school),
        asset_events=storage.asset_event_counts_between(start, end),
    )


def _by_school(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["school"], []).append(row)
    return grouped


def _by_first(rows: Iterable[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(row)
    return grouped


def _coverage_seconds(config: Config) -> float:
    return config.server.report_interval_seconds * 1.5


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
    storage: Storage, config: Config, now: datetime
) -> dict[str, SchoolFigures]:
    """Figures of every active school, by code, from one pass of queries."""
    snapshot = load_snapshot(storage, config, now)
    judge = Judge(config, now)
    return {row["code"]: judge.school(row, snapshot) for row in snapshot.schools}


def figures_for(
    storage: Storage, config: Config, now: datetime, code: str
) -> SchoolFigures | None:
    """Figures of one school (None when it is not registered)."""
    snapshot = load_snapshot(storage, config, now, school=code)
    if not snapshot.schools:
        return None
    return Judge(config, now).school(snapshot.schools[0], snapshot)


class Judge:
    """Turns a snapshot into figures at one instant with one configuration."""

    def __init__(self, config: Config, now: datetime) -> None:
        self.config, self.now = config, now
        self.policy = Policy.from_config(config)
        self.window = config.policy.uptime_window
        self._sessions: dict[str | None, list[Interval]] = {}

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
        """The figures of the school ``row``."""
        code, sessions = row["code"], self.sessions(row.get("timezone"))
        devices = snapshot.devices.get(code, [])
        samples = [_verdict_sample(cycle) for cycle in snapshot.cycles.get(code, [])]
        uptime = compute_uptime(
            samples,
            sessions,
            self.config.server.report_interval_seconds,
            self.now,
            self.window,
        )
        facts = device_facts(devices, snapshot.inventories, last_internet(samples))
        tests = speed_tests(snapshot.speedtests.get(code, []), row, sessions)
        return self._figures(row, devices, uptime, facts, tests, snapshot)

    def _figures(
        self,
        row: dict[str, Any],
        devices: list[dict[str, Any]],
        uptime: Uptime,
        facts: list[DeviceFacts],
        tests: list[SpeedTest],
        snapshot: Snapshot,
    ) -> SchoolFigures:
        period_start = current_period_start(
            self.sessions(row.get("timezone")), self.now
        )
        last_seen = max(
            (d["last_seen_at"] for d in devices if d["last_seen_at"]), default=None
        )
        verdict = connectivity(
            tests, now=self.now, students=row.get("students"), policy=self.policy
        )
        return SchoolFigures(
            info=row,
            at=self.now,
            in_session=period_start is not None,
            last_seen=last_seen,
            offline_now=self.offline(last_seen, period_start),
            devices=device_counts(devices, self.config, self.now),
            uptime=uptime,
            connectivity=verdict,
            last_speedtest_at=last_valid_test(tests, self.now, self.window),
            connected=connected(
                uptime.uptime_ratio, verdict.connectivity_class, self.policy
            ),
            lab=lab_verdict(_school(row), facts, now=self.now, policy=self.policy),
            lab_pcs=self.lab_pcs(row["code"], facts, snapshot.inventories),
            clock_skew_seconds=largest_skew(devices, self.now, self.window),
            asset_events=_asset_events(row["code"], snapshot.asset_events),
        )

    def offline(
        self, last_seen: datetime | None, period_start: datetime | None
    ) -> bool:
        """Offline now: in session and silent for ``offline_after`` of session."""
        if period_start is None:
            return False
        since = max(last_seen, period_start) if last_seen else period_start
        return offline_verdict(since, True, self.now, self.config.policy.offline_after)

    def lab_pcs(
        self, code: str, facts: list[DeviceFacts], inventories: dict[str, Any]
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


def _verdict_sample(cycle: tuple[Any, ...]) -> ProbeSample:
    """One probe cycle as the single sample that carries its verdict."""
    _, device, key, first, has_internet, internet_ok, collector_ok = cycle
    reached_at = internet_ok if has_internet else collector_ok
    at = from_storage(reached_at or first)
    return ProbeSample(device, at, key, "internet", "https", reached_at is not None)


def last_internet(samples: Iterable[ProbeSample]) -> dict[str, datetime]:
    """Per device, its latest cycle that reached the Internet."""
    latest: dict[str, datetime] = {}
    for sample in samples:
        known = latest.get(sample.device)
        if sample.ok and (known is None or sample.placed_at > known):
            latest[sample.device] = sample.placed_at
    return latest


def device_facts(
    devices: list[dict[str, Any]],
    inventories: dict[str, dict[str, Any]],
    internet: dict[str, datetime],
) -> list[DeviceFacts]:
    """What the lab figure needs of each device."""
    return [
        DeviceFacts.from_sections(
            device["id"],
            device["role"],
            inventories.get(device["id"], {}),
            last_seen_at=device["last_seen_at"],
            last_internet_at=internet.get(device["id"]),
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


def device_counts(
    devices: Iterable[dict[str, Any]], config: Config, now: datetime
) -> dict[tuple[str, str], int]:
    """Devices per (role, state) for every role and state, zeros included.

    ``online``: reported within the offline window; ``seen_7d``: within the uptime
    window (7 days by default).
    """
    counts = {(role, state): 0 for role in ROLES for state in DEVICE_STATES}
    windows = {
        "online": config.policy.offline_after,
        "seen_7d": config.policy.uptime_window,
    }
    for device in devices:
        seen = device["last_seen_at"]
        for state, window in windows.items():
            if seen is not None and now - seen < window and device["role"] in ROLES:
                counts[(device["role"], state)] += 1
    return counts


def largest_skew(
    devices: Iterable[dict[str, Any]], now: datetime, window: timedelta
) -> float:
    """Largest absolute clock skew among devices seen in the window (0 when none)."""
    skews = [
        abs(d["last_skew_seconds"])
        for d in devices
        if d["last_skew_seconds"] is not None
        and d["last_seen_at"] is not None
        and now - d["last_seen_at"] < window
    ]
    return max(skews, default=0.0)


def _asset_events(code: str, counts: dict[tuple[str, str], int]) -> dict[str, int]:
    return {kind: n for (school, kind), n in sorted(counts.items()) if school == code}


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
    cycles = storage.probe_cycles(start, end, device["school"])
    samples = [_verdict_sample(c) for c in cycles if c[1] == device["id"]]
    sections = storage.inventory_facts(device["school"]).get(device["id"], {})
    facts = device_facts([device], {device["id"]: sections}, last_internet(samples))
    result, reasons = device_compliance(facts[0], now, Policy.from_config(config))
    return compliance_json(facts[0], result, reasons, sections)


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
    figures = school_figures(storage, config, now)
    return build_report(
        [report_row(f) for f in figures.values()],
        period_start=now - config.policy.uptime_window,
        period_end=now,
        generated_at=now,
        policy=Policy.from_config(config),
        timezone=config.sessions.timezone,
    )
