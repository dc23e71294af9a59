"""``/metrics``: every family built from the database, written in the Prometheus text
format (0.0.4) by this module, as ``prometheus_client`` would write it.

Families come from the figures (``figures.school_figures``, kept between calls and
read from what changed) and the database, so a restart loses nothing: counters are read
from the ``counters`` and ``asset_events`` tables and never go backwards. Every active
school keeps its series even when silent. A value that is not known (an uptime ratio
without any measured session time, a median without a valid speed test, the
Internet verdict before any probe) is exported as NaN, never as a 0 that would read
as a measurement; each such family's HELP says so. No sample carries a timestamp and
no ``*_created`` series is exported.

While the app runs, the figures are computed off the request path by a refresher
thread every ``metrics.refresh_seconds`` and a scrape serves the last result
(``MetricsExporter``): a scrape costs the bytes, never seconds of a report's time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.utils import floatToGoString
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

logger = logging.getLogger(__name__)

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


REFRESH_CPU_SHARE = 0.5
"""At most this share of the time goes to a background refresh (see ``Pacer``)."""
PACE_SLICE_SECONDS = 0.01
GZIP_LEVEL = 6
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around deflate


class Pacer:
    """Gives the CPU back during a long background computation: called between
    steps, it sleeps after each ``slice`` seconds of work so that the work takes at
    most ``share`` of the time. Asleep, the thread holds no GIL, so reports are
    served between slices instead of waiting behind seconds of Python."""

    def __init__(
        self,
        share: float = REFRESH_CPU_SHARE,
        slice: float = PACE_SLICE_SECONDS,
        timer: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"CPU share {share!r}: give a number in (0, 1]")
        self.rest_per_work = (1 - share) / share
        self.slice, self.timer, self.sleep = slice, timer, sleep
        self._since = timer()

    def __call__(self) -> None:
        worked = self.timer() - self._since
        if worked >= self.slice:
            self.sleep(worked * self.rest_per_work)
            self._since = self.timer()


@dataclass(frozen=True)
class Kept:
    """The figures' part of the exposition as computed at one instant, and the same
    bytes fed to a gzip compressor that is not finished yet: a copy of it finishes
    a whole gzip body with the counters of the moment, compressing only those."""

    at: datetime
    text: bytes
    schools: tuple[str, ...]
    compressed: bytes
    compressor: Any  # zlib's Compress object (not a public type)

    @classmethod
    def of(cls, at: datetime, text: bytes, schools: tuple[str, ...]) -> Kept:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
        return cls(at, text, schools, compressor.compress(text), compressor)

    def gzip(self, tail: bytes) -> bytes:
        """``text + tail`` as one gzip body."""
        compressor = self.compressor.copy()
        return self.compressed + compressor.compress(tail) + compressor.flush()


class MetricsExporter:
    """Renders ``/metrics``; the figures' part is kept between scrapes while a
    refresher runs.

    Without a running refresher (a fresh exporter, an app served without its
    lifespan, tests) every ``render`` computes the figures at the clock's instant,
    so a scrape right after a report sees it. ``start`` runs a daemon thread that
    computes them at once and then every ``metrics.refresh_seconds``, on the
    storage's read connections (never the writers' lock) and paced (``Pacer``) so
    that reports keep being served meanwhile; ``render`` then serves the last
    result, at most that old plus one computation, and computes only when none was
    made yet. Every counter is read from the database at every render (the
    collector's own counters and the asset events per school and kind, two small
    tables), so whichever collector process answers, a counter never goes back to
    an older value. The kept figures are also kept gzip-compressed,
    so a scrape that accepts gzip (Prometheus does) sends a small share of the bytes
    (5 % at 5,000 schools in bench/scrape.py) and compresses only the counters.
    """

    def __init__(self, storage: Storage, config: Config, clock: Clock) -> None:
        self.storage, self.config, self.clock = storage, config, clock
        self._kept: Kept | None = None
        self._events: tuple[tuple[str, ...], dict, bytes] | None = None
        self._compute = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._before: Callable[[], None] | None = None
        self._after_first: Callable[[], None] | None = None

    @property
    def running(self) -> bool:
        """Whether the refresher thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(
        self,
        before_refresh: Callable[[], None] | None = None,
        after_first: Callable[[], None] | None = None,
    ) -> None:
        """Start the refresher thread (once); it calls ``before_refresh`` before
        each computation (the app writes its pending request counts there) and
        ``after_first`` once the first one succeeded (the app freezes the garbage
        collector's view of what is now long-lived there)."""
        if self._thread is not None:
            return
        self._before, self._after_first = before_refresh, after_first
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._refresh_loop, name="metrics-refresher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the refresher thread and forget the kept figures."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()
        self._kept = None

    @property
    def kept_at(self) -> datetime | None:
        """The clock's instant of the kept figures (None before the first)."""
        kept = self._kept
        return kept.at if kept is not None else None

    def render(self, gzipped: bool = False) -> bytes:
        """The whole exposition in the Prometheus text format 0.0.4 (as a gzip body
        with ``gzipped``)."""
        if not self.running:
            text, schools = self.figures_text(self.clock())
            text = text.encode("utf-8") + self._counters(schools)
            return zlib.compress(text, GZIP_LEVEL, _GZIP_WBITS) if gzipped else text
        kept = self._kept_figures()
        counters = self._counters(kept.schools)
        return kept.gzip(counters) if gzipped else kept.text + counters

    def _counters(self, schools: tuple[str, ...]) -> bytes:
        """Every counter family, as the database holds it now (the asset events'
        lines, one per school and kind, are written again only when a count or the
        schools changed)."""
        storage = self.storage
        counts = storage.asset_event_counts()
        written = self._events
        if written is None or written[:2] != (schools, counts):
            text = asset_events_text(schools, counts).encode("utf-8")
            written = self._events = (schools, counts, text)
        return written[2] + counter_text(storage.counters()).encode("utf-8")

    def refresh(self, pause: Callable[[], None] | None = None) -> None:
        """Compute the figures now and keep them (``pause`` called between steps)."""
        if self._before is not None:
            self._before()
        with self._compute:
            self._keep(pause)

    def figures_text(
        self, now: datetime, pause: Callable[[], None] | None = None
    ) -> tuple[str, tuple[str, ...]]:
        """Every family but the counters, at ``now`` (``pause`` called between
        schools and between families), and the active schools' codes."""
        started = time.perf_counter()
        storage = self.storage
        with storage.snapshot():  # every family from one state of the database
            figures = list(school_figures(storage, self.config, now, pause).values())
            parts = [
                school_text(figures, pause),
                district_text(figures),
                threshold_text(self.config),
            ]
            if storage.device_count() <= self.config.metrics.per_device_max:
                devices = storage.devices()
                parts.append(device_text(devices, storage.device_os_names()))
        logger.debug(
            "metrics: %d schools in %.3f s", len(figures), time.perf_counter() - started
        )
        return "".join(parts), tuple(school.code for school in figures)

    def _keep(self, pause: Callable[[], None] | None = None) -> Kept:
        now = self.clock()
        text, schools = self.figures_text(now, pause)
        self._kept = Kept.of(now, text.encode("utf-8"), schools)
        return self._kept

    def _kept_figures(self) -> Kept:
        kept = self._kept
        if kept is not None:
            return kept
        with self._compute:  # the refresher's first computation may be under way
            return self._kept if self._kept is not None else self._keep()

    def _refresh_loop(self) -> None:
        period, first = self.config.metrics.refresh_seconds, self._after_first
        while True:
            try:
                self.refresh(Pacer())
            except Exception:
                logger.exception("metrics: computing the figures failed")
            else:
                if first is not None:
                    first()
                first = None
            if self._stop.wait(period):
                return


def new_registry(storage: Storage, config: Config, clock: Clock) -> MetricsExporter:
    """A fresh exporter of ``storage``'s figures (no refresher running)."""
    return MetricsExporter(storage, config, clock)


def render(exporter: MetricsExporter, gzipped: bool = False) -> bytes:
    """The exporter's exposition in the Prometheus text format (gzip-compressed with
    ``gzipped``)."""
    return exporter.render(gzipped)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header value names gzip with a quality above 0."""
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            return _quality(params) > 0
    return False


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


# The text format (0.0.4), written as prometheus_client writes it ----------------------


def _escape(value: str) -> str:
    """A label value: backslash, newline and double quote escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str, documentation: str, kind: str) -> str:
    text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"


class Family:
    """The lines of one family whose samples share its label names."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], kind: str = "gauge"
    ) -> None:
        self.name = f"schoolmon_{name}" + ("_total" if kind == "counter" else "")
        self.lines = [_header(self.name, documentation, kind)]
        # Labels go out sorted by name; values come in the declared order.
        self._order = sorted(range(len(labels)), key=lambda i: labels[i])
        self._names = [f'{labels[i]}="' for i in self._order]

    def add(self, values: Sequence[str], value: float) -> None:
        """One sample: label values in the declared order, then the value."""
        if not self._names:
            self.lines.append(f"{self.name} {floatToGoString(value)}\n")
            return
        labels = '",'.join(
            name + _escape(values[i])
            for name, i in zip(self._names, self._order, strict=True)
        )
        self.lines.append(f'{self.name}{{{labels}"}} {floatToGoString(value)}\n')

    def text(self) -> str:
        return "".join(self.lines)


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    """One sample line with labels of its own (sorted by name)."""
    pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{pairs}}} {floatToGoString(value)}\n"


# Families -----------------------------------------------------------------------------


def school_text(
    figures: list[SchoolFigures], pause: Callable[[], None] | None = None
) -> str:
    """Per-school gauges of SPEC.md and the design catalog, every school listed
    (``pause`` called after each school's samples)."""
    pause = pause or _no_pause
    parts = [school_info_text(figures)]

    for name, documentation, value in SCHOOL_GAUGES:
        family = Family(name, documentation, ["school"])
        for school in figures:
            family.add([school.code], value(school))
            pause()
        parts.append(family.text())

    for name, documentation, labels, values in SCHOOL_LABELLED:
        family = Family(name, documentation, ["school", *labels])
        for school in figures:
            for key, number in values(school).items():
                family.add([school.code, *key], number)
            pause()
        parts.append(family.text())
    return "".join(parts)


def _no_pause() -> None:
    return None


def school_info_text(figures: list[SchoolFigures]) -> str:
    """One series per school; ``latitude``/``longitude`` only where the registry
    knows them (an absent label is what Prometheus makes of an empty one)."""
    name = "schoolmon_school_info"
    lines = [_header(name, SCHOOL_INFO_HELP, "gauge")]
    lines += [_sample(name, _info_labels(school.info), 1) for school in figures]
    return "".join(lines)


def _info_labels(row: Mapping[str, Any]) -> dict[str, str]:
    labels = {key: row[column] for key, column in INFO_LABELS}
    for key in ("latitude", "longitude"):
        if row.get(key) is not None:
            labels[key] = repr(float(row[key]))
    return labels


def asset_events_text(
    schools: Sequence[str], counts: dict[tuple[str, str], int]
) -> str:
    """Asset events by school and kind, zeros included for every active school
    (``schools``: their codes)."""
    family = Family(
        "asset_events",
        "Asset events recorded for the school's devices, by kind.",
        ["school", "kind"],
        kind="counter",
    )
    for code in schools:
        for kind in ASSET_EVENT_KINDS:
            family.add([code, kind], counts.get((code, kind), 0))
    return family.text()


def district_text(figures: list[SchoolFigures]) -> str:
    """Registered active schools by level, every level listed."""
    family = Family(
        "district_schools", "Registered active schools by level.", ["level"]
    )
    levels = [school.info["level"] for school in figures]
    for level in LEVELS:
        family.add([level], levels.count(level))
    return family.text()


def threshold_text(config: Config) -> str:
    """Each threshold in force, in base units."""
    family = Family(
        "policy_threshold",
        "A threshold of the headline figures in force "
        "in the collector's configuration, in base units.",
        ["name"],
    )
    for name, value in thresholds(config).items():
        family.add([name], value)
    return family.text()


def device_text(devices: list[dict[str, Any]], os_names: dict[str, str | None]) -> str:
    """Per-device series (only exported while the fleet is small)."""
    last_seen = Family(
        "device_last_seen_timestamp_seconds",
        "Time of the device's latest report (0 if never).",
        ["school", "device"],
    )
    info = Family(
        "device_info",
        "A device with an agent (always 1).",
        ["school", "device", "hostname", "role", "os"],
    )
    skew = Family(
        "device_clock_skew_seconds",
        "The device's clock minus the collector's at its latest report (0 if never).",
        ["school", "device"],
    )
    for device in devices:
        keys = [device["school"], device["id"]]
        os_name = os_names.get(device["id"]) or "unknown"
        last_seen.add(keys, _timestamp(device["last_seen_at"]))
        info.add([*keys, device["hostname"] or "", device["role"], os_name], 1)
        skew.add(keys, device["last_skew_seconds"] or 0.0)
    return last_seen.text() + info.text() + skew.text()


def counter_text(rows: list[dict[str, Any]]) -> str:
    """The collector's own counters, persisted in the database."""
    parts = []
    for name, (documentation, labels, always) in OWN_COUNTERS.items():
        family = Family(name, documentation, labels, kind="counter")
        values = {tuple(key): 0 for key in always}
        for row in rows:
            if row["name"] == name:
                values[tuple(row["labels"][label] for label in labels)] = row["value"]
        for key, value in sorted(values.items()):
            family.add(key, value)
        parts.append(family.text())
    return "".join(parts)
