"""``/metrics``: a custom collector that builds every family fresh at scrape time.

Families come from the figures and the database, so a restart loses nothing: counters
are read from the ``counters`` and ``asset_events`` tables and never go backwards.
Every active school keeps its series even when silent. No sample carries a timestamp
and no ``*_created`` series is exported.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from schoolmon.server.auth import ROLES
from schoolmon.server.clock import Clock
from schoolmon.server.config import LEVELS, Config
from schoolmon.server.figures import DEVICE_STATES, SchoolFigures, school_figures
from schoolmon.server.storage import Storage

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
        now = self.clock()
        figures = school_figures(self.storage, self.config, now)
        devices = self.storage.devices()
        yield from school_families(figures.values(), devices, self.config, now)
        yield asset_events_family(figures, self.storage.asset_event_counts())
        yield district_family(figures.values())
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


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"schoolmon_{name}", documentation, labels=labels)


def school_families(
    figures: Any, devices: list[dict[str, Any]], config: Config, now: datetime
) -> Iterator[Metric]:
    """Per-school gauges of SPEC.md and the design catalog."""
    info = _gauge(
        "school_info",
        "A registered active school (always 1).",
        ["school", "name", "level", "commune"],
    )
    session = _gauge(
        "school_in_session",
        "1 while the school is in session by its timetable and holidays, else 0.",
        ["school"],
    )
    last_seen = _gauge(
        "school_last_seen_timestamp_seconds",
        "Time of the latest report from any device of the school (0 if never).",
        ["school"],
    )
    counts = _gauge(
        "school_devices",
        "Devices of the school by role and state "
        "(online: reported within the offline window; seen_7d: within the "
        "uptime window).",
        ["school", "role", "state"],
    )
    internet = _gauge(
        "school_internet_up",
        "1 when the school's latest probe cycle reached the Internet, else 0.",
        ["school"],
    )
    skew = _gauge(
        "school_clock_skew_seconds",
        "Largest absolute clock skew among the "
        "school's devices seen in the uptime window (0 when none).",
        ["school"],
    )

    skews = _largest_skews(devices, config, now)
    for school in figures:
        code = school.code
        info.add_metric(
            [code, school.info["name"], school.info["level"], school.info["commune"]], 1
        )
        session.add_metric([code], int(school.in_session))
        last_seen.add_metric([code], _timestamp(school.last_seen))
        for role in ROLES:
            for state in DEVICE_STATES:
                counts.add_metric([code, role, state], school.devices[(role, state)])
        internet.add_metric([code], int(bool(school.internet_up)))
        skew.add_metric([code], skews.get(code, 0.0))
    yield from (info, session, last_seen, counts, internet, skew)


def asset_events_family(
    figures: dict[str, SchoolFigures], counts: dict[tuple[str, str], int]
) -> Metric:
    """Asset events by school and kind, zeros included for every active school."""
    family = CounterMetricFamily(
        "schoolmon_asset_events",
        "Asset events recorded for the school's devices, by kind.",
        labels=["school", "kind"],
    )
    for code in figures:
        for kind in ASSET_EVENT_KINDS:
            family.add_metric([code, kind], counts.get((code, kind), 0))
    return family


def district_family(figures: Any) -> Metric:
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
    for name, value in policy_thresholds(config).items():
        family.add_metric([name], value)
    return family


def policy_thresholds(config: Config) -> dict[str, float]:
    """The thresholds in force, by name, in base units."""
    policy, lab = config.policy, config.lab
    thresholds = {
        "offline_after_seconds": policy.offline_after.total_seconds(),
        "uptime_window_seconds": policy.uptime_window.total_seconds(),
        "uptime_ratio": policy.connected_uptime_ratio,
        "good_download_bytes_per_second": policy.good_download_bytes_per_second,
        "good_download_bytes_per_second_per_student": (
            policy.good_download_bytes_per_second_per_student
        ),
        "per_student_above_students": policy.per_student_above_students,
        "moderate_download_bytes_per_second": policy.moderate_download_bytes_per_second,
        "lab_min_logical_cpus": lab.min_logical_cpus,
        "lab_min_memory_bytes": lab.min_memory_bytes,
        "lab_min_system_disk_bytes": lab.min_system_disk_bytes,
    }
    for level, count in sorted(lab.pcs_required.items()):
        thresholds[f"lab_pcs_required_{level}"] = count
    return thresholds


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
        last_seen.add_metric(keys, _timestamp(device["last_seen_at"]))
        info.add_metric(
            keys
            + [
                device["hostname"] or "",
                device["role"],
                os_names.get(device["id"]) or "unknown",
            ],
            1,
        )
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


def _largest_skews(
    devices: list[dict[str, Any]], config: Config, now: datetime
) -> dict[str, float]:
    skews: dict[str, float] = {}
    for device in devices:
        seen, skew = device["last_seen_at"], device["last_skew_seconds"]
        if seen is None or skew is None or now - seen >= config.policy.uptime_window:
            continue
        skews[device["school"]] = max(skews.get(device["school"], 0.0), abs(skew))
    return skews


def _timestamp(instant: datetime | None) -> float:
    return instant.timestamp() if instant is not None else 0.0
