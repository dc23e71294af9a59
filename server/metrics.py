"""``/metrics``: a custom collector that builds every family fresh at scrape time.

Families come from the figures (``figures.school_figures``, one pass of queries for
the whole district) and the database, so a restart loses nothing: counters are read
from the ``counters`` and ``asset_events`` tables and never go backwards. Every active
school keeps its series even when silent. A value that is not known (an uptime ratio
without any measured session time, a median without a valid speed test, the
Internet verdict before any probe) is exported as NaN, never as a 0 that would read
as a measurement; each such family's HELP says so. No sample carries a timestamp and
no ``*_created`` series is exported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from schoolmon.server.auth import ROLES
from schoolmon.server.clock import Clock
from schoolmon.server.config import LEVELS, Config
from schoolmon.server.figures import (
    DEVICE_STATES,
    SchoolFigures,
    school_figures,
    thresholds,
)
from schoolmon.server.policy import CLASSES
from schoolmon.server.storage import Storage

NAN = math.nan
UNKNOWN_IS_NAN = " NaN when not known."
ASSET_EVENT_KINDS = (
    "component_added",
    "component_removed",
    "component_changed",
    "device_moved",
    "identity_conflict",
)
OWN_COUNTERS = {
    "reports_received": (
        "Reports the collector received, by whether it stored them.",
        ("result",),
        [("accepted",), ("rejected",)],
    ),
    "samples_ingested": (
        "Samples in received reports, by kind and whether they were new.",
        ("kind", "outcome"),
        [
            (k, o)
            for k in ("probe", "speedtest", "inventory")
            for o in ("stored", "duplicate")
        ],
    ),
    "http_requests": (
        "HTTP requests the collector answered, by method, route and status.",
        ("method", "route", "status"),
        [],
    ),
}

Value = Callable[[SchoolFigures], float]
Labelled = Callable[[SchoolFigures], Mapping[tuple[str, ...], float]]


def _ratio(value: float | None) -> float:
    return NAN if value is None else float(value)


def _flag(value: bool | None) -> float:
    return NAN if value is None else float(value)


def _timestamp(instant: datetime | None) -> float:
    return instant.timestamp() if instant is not None else 0.0


SCHOOL_INFO_HELP = (
    "A registered active school (always 1); latitude and longitude in decimal "
    "degrees from the registry, left out when the registry has none."
)
INFO_LABELS = (
    ("school", "code"),
    ("name", "name"),
    ("level", "level"),
    ("commune", "commune"),
)

# One value per school: (name, HELP, value).
SCHOOL_GAUGES: tuple[tuple[str, str, Value], ...] = (
    (
        "school_in_session",
        "1 while the school is in session by its timetable and holidays, else 0.",
        lambda f: float(f.in_session),
    ),
    (
        "school_last_seen_timestamp_seconds",
        "Time of the latest report from any device of the school (0 if never).",
        lambda f: _timestamp(f.last_seen),
    ),
    (
        "school_internet_up",
        "1 when the school's latest probe cycle in the uptime window reached the "
        "Internet, else 0." + UNKNOWN_IS_NAN,
        lambda f: _flag(f.internet_up),
    ),
    (
        "school_internet_uptime_ratio",
        "Share of session time in the uptime window in which a device of the school "
        "reached the Internet, time with no device on left out." + UNKNOWN_IS_NAN,
        lambda f: _ratio(f.uptime.uptime_ratio),
    ),
    (
        "school_download_bytes_per_second",
        "Median download of the valid session speed tests of the uptime window."
        + UNKNOWN_IS_NAN,
        lambda f: _ratio(f.connectivity.median_download_bytes_per_second),
    ),
    (
        "school_upload_bytes_per_second",
        "Median upload of the valid session speed tests of the uptime window."
        + UNKNOWN_IS_NAN,
        lambda f: _ratio(f.connectivity.median_upload_bytes_per_second),
    ),
    (
        "school_latency_seconds",
        "Median latency of the valid session speed tests of the uptime window."
        + UNKNOWN_IS_NAN,
        lambda f: _ratio(f.connectivity.median_latency_seconds),
    ),
    (
        "school_connected",
        "1 when the school is connected (uptime at least the threshold and class "
        "good or moderate), else 0.",
        lambda f: float(f.connected.connected),
    ),
    (
        "school_lab_equipped",
        "1 when the school's lab is equipped, else 0; also 0 for a school without "
        'an equipped-lab target, whose schoolmon_school_lab_pcs{state="required"} '
        "is 0.",
        lambda f: float(f.lab_target and bool(f.lab.equipped)),
    ),
    (
        "school_clock_skew_seconds",
        "Largest absolute clock skew among the school's devices seen in the uptime "
        "window (0 when none).",
        lambda f: f.clock_skew_seconds,
    ),
    (
        "school_devices_unsupported_os",
        "Devices seen in the uptime window whose OS its vendor no longer supports.",
        lambda f: float(f.lab.unsupported_os),
    ),
    (
        "school_no_device_seconds",
        "Session time in the uptime window with no device of the school on.",
        lambda f: f.uptime.no_device_seconds,
    ),
    (
        "school_outages_7d",
        "Internet outages in session in the uptime window.",
        lambda f: float(len(f.uptime.outages)),
    ),
    (
        "school_speedtest_last_timestamp_seconds",
        "Time of the latest valid session speed test in the uptime window (0 if none).",
        lambda f: _timestamp(f.last_speedtest_at),
    ),
)


def _devices(f: SchoolFigures) -> dict[tuple[str, ...], float]:
    return {(r, s): f.devices[(r, s)] for r in ROLES for s in DEVICE_STATES}


def _lab_pcs(f: SchoolFigures) -> dict[tuple[str, ...], float]:
    required = f.lab.required if f.lab_target else 0
    return {("compliant",): f.lab_pcs.compliant, ("required",): required or 0}


def _keyed(values: Mapping[str, int]) -> dict[tuple[str, ...], float]:
    return {(key,): value for key, value in values.items()}


# Values by extra labels per school: (name, HELP, label names, values).
SCHOOL_LABELLED: tuple[tuple[str, str, tuple[str, ...], Labelled], ...] = (
    (
        "school_devices",
        "Devices of the school by role and state (online: reported within the "
        "offline window; seen_7d: within the uptime window).",
        ("role", "state"),
        _devices,
    ),
    (
        "school_connectivity",
        "1 for the school's connectivity class (unknown without a valid speed test "
        "in the uptime window), 0 for the others.",
        ("class",),
        lambda f: {
            (c,): float(c == f.connectivity.connectivity_class) for c in CLASSES
        },
    ),
    (
        "school_lab_pcs",
        "Lab PCs meeting the minimum specification (compliant) and the lab PCs the "
        "school's equipped-lab target requires (required, 0 without a target).",
        ("state",),
        _lab_pcs,
    ),
    (
        "school_lab_pcs_noncompliant",
        "Lab PCs failing the minimum specification, by reason (a PC may fail several).",
        ("reason",),
        lambda f: _keyed(f.lab_pcs.noncompliant),
    ),
    (
        "school_lab_pcs_by_memory",
        "Lab PCs seen in the uptime window by installed memory.",
        ("bucket",),
        lambda f: _keyed(f.lab_pcs.by_memory),
    ),
    (
        "school_lab_pcs_by_os",
        "Lab PCs seen in the uptime window by OS family and version.",
        ("os",),
        lambda f: _keyed(f.lab_pcs.by_os),
    ),
    (
        "school_lab_pcs_by_age",
        "Lab PCs seen in the uptime window by age from their BIOS date.",
        ("bucket",),
        lambda f: _keyed(f.lab_pcs.by_age),
    ),
)


class SchoolmonCollector(Collector):
    """Exports schoolmon's figures; register it in a fresh CollectorRegistry."""

    def __init__(self, storage: Storage, config: Config, clock: Clock) -> None:
        self.storage = storage
        self.config = config
        self.clock = clock

    def describe(self) -> list[Metric]:
        """Nothing at registration: the families exist only at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        figures = list(school_figures(self.storage, self.config, self.clock()).values())
        devices = self.storage.devices()
        yield from school_families(figures)
        yield asset_events_family(figures, self.storage.asset_event_counts())
        yield district_family(figures)
        yield threshold_family(self.config)
        if len(devices) <= self.config.metrics.per_device_max:
            yield from device_families(devices, self.storage.device_os_names())
        yield from counter_families(self.storage.counters())


def new_registry(storage: Storage, config: Config, clock: Clock) -> CollectorRegistry:
    """A fresh registry holding only a SchoolmonCollector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SchoolmonCollector(storage, config, clock))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(registry)


def _gauge(name: str, documentation: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"schoolmon_{name}", documentation, labels=list(labels))


def school_families(figures: list[SchoolFigures]) -> Iterator[Metric]:
    """Per-school gauges of SPEC.md and the design catalog, every school listed."""
    yield school_info_family(figures)

    for name, documentation, value in SCHOOL_GAUGES:
        family = _gauge(name, documentation, ["school"])
        for school in figures:
            family.add_metric([school.code], value(school))
        yield family

    for name, documentation, labels, values in SCHOOL_LABELLED:
        family = _gauge(name, documentation, ["school", *labels])
        for school in figures:
            for key, number in values(school).items():
                family.add_metric([school.code, *key], number)
        yield family


def school_info_family(figures: list[SchoolFigures]) -> Metric:
    """One series per school; ``latitude``/``longitude`` only where the registry
    knows them (an absent label is what Prometheus makes of an empty one)."""
    info = _gauge("school_info", SCHOOL_INFO_HELP, [])
    for school in figures:
        info.add_sample("schoolmon_school_info", _info_labels(school.info), 1)
    return info


def _info_labels(row: Mapping[str, Any]) -> dict[str, str]:
    labels = {key: row[column] for key, column in INFO_LABELS}
    for key in ("latitude", "longitude"):
        if row.get(key) is not None:
            labels[key] = repr(float(row[key]))
    return labels


def asset_events_family(
    figures: list[SchoolFigures], counts: dict[tuple[str, str], int]
) -> Metric:
    """Asset events by school and kind, zeros included for every active school."""
    family = CounterMetricFamily(
        "schoolmon_asset_events",
        "Asset events recorded for the school's devices, by kind.",
        labels=["school", "kind"],
    )
    for school in figures:
        for kind in ASSET_EVENT_KINDS:
            family.add_metric([school.code, kind], counts.get((school.code, kind), 0))
    return family


def district_family(figures: list[SchoolFigures]) -> Metric:
    """Registered active schools by level, every level listed."""
    family = _gauge(
        "district_schools", "Registered active schools by level.", ["level"]
    )
    levels = [school.info["level"] for school in figures]
    for level in LEVELS:
        family.add_metric([level], levels.count(level))
    return family


def threshold_family(config: Config) -> Metric:
    """Each threshold in force, in base units."""
    family = _gauge(
        "policy_threshold",
        "A threshold of the headline figures in force "
        "in the collector's configuration, in base units.",
        ["name"],
    )
    for name, value in thresholds(config).items():
        family.add_metric([name], value)
    return family


def device_families(
    devices: list[dict[str, Any]], os_names: dict[str, str | None]
) -> Iterator[Metric]:
    """Per-device series (only exported while the fleet is small)."""
    last_seen = _gauge(
        "device_last_seen_timestamp_seconds",
        "Time of the device's latest report (0 if never).",
        ["school", "device"],
    )
    info = _gauge(
        "device_info",
        "A device with an agent (always 1).",
        ["school", "device", "hostname", "role", "os"],
    )
    skew = _gauge(
        "device_clock_skew_seconds",
        "The device's clock minus the collector's at its latest report (0 if never).",
        ["school", "device"],
    )
    for device in devices:
        keys = [device["school"], device["id"]]
        os_name = os_names.get(device["id"]) or "unknown"
        last_seen.add_metric(keys, _timestamp(device["last_seen_at"]))
        info.add_metric([*keys, device["hostname"] or "", device["role"], os_name], 1)
        skew.add_metric(keys, device["last_skew_seconds"] or 0.0)
    yield from (last_seen, info, skew)


def counter_families(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    """The collector's own counters, persisted in the database."""
    for name, (documentation, labels, always) in OWN_COUNTERS.items():
        family = CounterMetricFamily(f"schoolmon_{name}", documentation, labels=labels)
        values = {tuple(key): 0 for key in always}
        for row in rows:
            if row["name"] == name:
                values[tuple(row["labels"][label] for label in labels)] = row["value"]
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
        yield family
