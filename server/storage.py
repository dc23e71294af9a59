"""All SQL of the collector, on SQLite (sqlite-utils) or PostgreSQL (psycopg 3).

``--db`` names a SQLite file or a ``postgresql://`` URL; one ``Storage`` class serves
both. The SQL is written once, in the dialect both speak (``?`` parameters, ``ON
CONFLICT``, ``CASE``, ``COALESCE``); ``pg.translate`` adapts it for psycopg, and the
few places where the engines differ (JSON extraction, the schema's DDL, how a write
transaction begins) branch on ``Storage.postgres``. Times are fixed-width ISO text on
both (same ordering, same decoding; PostgreSQL compares text with the "C" collation,
byte by byte, as SQLite does), flags are integers 0/1, JSON is text.

On SQLite the database runs in WAL mode with ``synchronous=FULL``: a report is
committed before the collector answers it, so an acknowledged report survives a power
cut (PostgreSQL commits durably by default). The schema is created and upgraded at
start through ``schema_version`` and the ordered ``MIGRATIONS`` (``PG_MIGRATIONS``
hold the same schema in PostgreSQL's DDL).

Concurrency: SQLite's ``BEGIN IMMEDIATE`` lets one write transaction run at a time,
and the ingest code relies on it (enrollment reads then inserts, the inventory hash
compare, ``last_seq``, the speed-test compare-and-set), as do the figures kept between
scrapes, which read rows changed after a rowid (right only when rowids become visible
in commit order). On PostgreSQL several collector processes may share one database,
so every write transaction takes one global ``pg_advisory_xact_lock``
(``pg.WRITE_LOCK``) right after ``BEGIN``: write transactions of all processes are
serialized exactly as SQLite's writer lock serializes them, and kept short. Reads
(each thread's own connection; ``snapshot()`` is a repeatable-read transaction) and
the parsing and validation of requests run in parallel across processes. Migrations
take the same lock, so collectors starting at once do not race.

Rows come back as dicts: JSON columns decoded, instants as aware UTC datetimes, flags
as bools.

Retention (``retention.py`` drives it; the "Retention" block below has the SQL): raw
probe samples are kept ``retention.probe_samples_days`` (uptime window + 1 day by
default) and then deleted in batches; the probe cycles of that old time are rolled
up into ``probe_runs`` (one row per run of a device's consecutive cycles with the
same verdict, each within the verdict coverage of the previous), which
``probe_cycles`` reads back as verdicts giving the same timeline, so a report of
any past period shows the same uptime, outages and connected verdict as before the
roll-up. Only the instant of the latest verdict inside a run (``latest_verdict_at``,
a device's last Internet instant) moves, by less than one coverage. At 5-minute
reports this holds about 4.5 MiB per device and grows by about 3 KiB per device per
day (bench/README.md "Storage growth"). Inventory snapshots are kept only when
more than volatile fields changed (``ingest``, ``assets.history_hash``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlite_utils
from schoolmon.server import pg
from schoolmon.server.clock import from_storage, to_storage
from schoolmon.server.clocks import USABLE_METHODS

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
JSON_COLUMNS = frozenset(
    {"identity", "health", "sections", "detail", "server", "flags", "labels"}
)
BOOL_COLUMNS = frozenset({"active", "has_informatics", "ok"})
TIME_COLUMNS = frozenset({"wall_time"})
_PLAIN = frozenset({str, int, float})
SCHOOL_FIELDS = (
    "name",
    "level",
    "commune",
    "has_informatics",
    "lab_pcs_required",
    "students",
    "contracted_download_mbps",
    "latitude",
    "longitude",
)
PROBE_COLUMNS = (
    "device",
    "school",
    "run",
    "seq",
    "cycle",
    "boot_id",
    "wall_time",
    "monotonic",
    "placed_at",
    "received_at",
    "target",
    "scope",
    "kind",
    "ok",
    "duration_seconds",
    "reason",
    "detail",
)
# The columns migration 1 created; later migrations add to SPEEDTEST_COLUMNS below.
SPEEDTEST_COLUMNS_V1 = (
    "device",
    "school",
    "run",
    "seq",
    "boot_id",
    "wall_time",
    "monotonic",
    "placed_at",
    "received_at",
    "ok",
    "reason",
    "backend",
    "tool",
    "tool_version",
    "server",
    "download_bytes_per_second",
    "upload_bytes_per_second",
    "latency_seconds",
    "jitter_seconds",
    "bytes_used",
    "streams",
    "started_at",
    "duration_seconds",
    "flags",
)
SPEEDTEST_COLUMNS = (*SPEEDTEST_COLUMNS_V1, "message")

# How ``clocks.place`` placed a sample (``clocks.METHODS``; added by migration 3).
PLACEMENT_METHOD = "method"
# What a sample's or speed test's row holds, in the table's column order (named, as
# ``SELECT *`` would also give PostgreSQL's ``rowid`` column).
_PROBE_ROW = ", ".join((*PROBE_COLUMNS, PLACEMENT_METHOD))
_SPEEDTEST_ROW = ", ".join((*SPEEDTEST_COLUMNS_V1, PLACEMENT_METHOD, "message"))


INVENTORY_FACTS = (
    ("system", "bios_date"),
    ("cpu", "logical_cores"),
    ("memory", "installed_bytes"),
    ("memory", "usable_bytes"),
    ("disks", "physical"),
    ("disks", "volumes"),
    ("os", "family"),
    ("os", "name"),
    ("os", "version"),
    ("os", "build"),
    ("os", "vendor_supported"),
)
"""Inventory fields the headline figures read: (section, field)."""
INVENTORY_HASHES = "SELECT device, hash FROM inventories INDEXED BY inventories_content"
_FACT_PATHS = ", ".join(f"'$.{s}.data.{f}'" for s, f in INVENTORY_FACTS)

# Device facts (migration 8) --------------------------------------------------------
#
# The ``INVENTORY_FACTS`` of each device's latest inventory, written with the
# inventory (``Storage.save_inventory``) so that the figures never parse an
# inventory's JSON: ``facts`` is a JSON array of the fields' values in the order of
# ``INVENTORY_FACTS`` (null where absent), ``hash`` the inventory's content hash. A
# change to ``INVENTORY_FACTS`` needs a migration that fills the table again.

DEVICE_FACTS_TABLE = """
CREATE TABLE device_facts (
    device TEXT PRIMARY KEY REFERENCES devices (id),
    hash TEXT,
    facts TEXT NOT NULL
)"""

# SQLite's json_extract with several paths gives exactly that array.
DEVICE_FACTS_BACKFILL = (
    "INSERT INTO device_facts (device, hash, facts) "
    f"SELECT device, hash, json_extract(sections, {_FACT_PATHS}) FROM inventories"
)

DEVICE_FACTS_UPSERT = (
    "INSERT INTO device_facts (device, hash, facts) VALUES (?, ?, ?) "
    "ON CONFLICT (device) DO UPDATE SET hash = excluded.hash, facts = excluded.facts"
)


class StorageError(RuntimeError):
    """The database cannot be used as asked; the message says why."""


class TransactionLost(StorageError):
    """A savepoint could not be undone: the database ended the whole transaction."""


@dataclass
class ImportSummary:
    """What a registry import changed."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)


# Probe cycles -----------------------------------------------------------------------
#
# One row per (device, cycle key) holds what the cycle's verdict needs (design.md:
# a cycle reached the Internet when any internet-scope https sample in it is ok; a
# cycle without any internet-scope sample is judged by its collector-scope https
# samples): its first instant, whether it has an internet-scope sample, and the first
# ok https instant per scope. ``verdict_at`` (the first qualifying ok instant, else
# the first instant) and ``reached`` follow from them. A sample stored late, in
# another report, updates its cycle. ``first_sample`` and ``last_sample`` are the
# rowids of the samples that created and last changed the row, so a reader can ask
# what changed since it last looked. Samples whose placement is unusable
# (``clocks.USABLE_METHODS``) are left out, as the figures leave them out.

_USABLE = ", ".join(f"'{method}'" for method in sorted(USABLE_METHODS))
_CYCLE_KEY = "{p}run || '/' || COALESCE(CAST({p}cycle AS TEXT), 's' || {p}seq)"
_OK_AT = (
    "CASE WHEN {p}ok = 1 AND {p}kind = 'https' AND {p}scope = '{scope}' "
    "THEN {p}placed_at END"
)
_HAS_INTERNET = "CASE WHEN {p}scope = 'internet' THEN 1 ELSE 0 END"
_VERDICT_OK = "CASE WHEN has_internet = 1 THEN internet_ok_at ELSE collector_ok_at END"

PROBE_CYCLES_TABLE = f"""
CREATE TABLE probe_cycles (
    device TEXT NOT NULL,
    cycle_key TEXT NOT NULL,
    school TEXT NOT NULL,
    first_at TEXT NOT NULL,
    has_internet INTEGER NOT NULL,
    internet_ok_at TEXT,
    collector_ok_at TEXT,
    first_sample INTEGER NOT NULL,
    last_sample INTEGER NOT NULL,
    verdict_at TEXT GENERATED ALWAYS AS (COALESCE({_VERDICT_OK}, first_at)) STORED,
    reached INTEGER GENERATED ALWAYS AS (
        CASE WHEN {_VERDICT_OK} IS NOT NULL THEN 1 ELSE 0 END) STORED,
    PRIMARY KEY (device, cycle_key)
)"""

_CYCLE_COLUMNS = (
    "device, cycle_key, school, first_at, has_internet, internet_ok_at, "
    "collector_ok_at, first_sample, last_sample"
)

PROBE_CYCLES_BACKFILL = f"""
INSERT INTO probe_cycles ({_CYCLE_COLUMNS})
SELECT device, {_CYCLE_KEY.format(p="")}, MIN(school), MIN(placed_at),
    MAX({_HAS_INTERNET.format(p="")}),
    MIN({_OK_AT.format(p="", scope="internet")}),
    MIN({_OK_AT.format(p="", scope="collector")}),
    MIN(rowid), MAX(rowid)
FROM probe_samples
WHERE {PLACEMENT_METHOD} IS NULL OR {PLACEMENT_METHOD} IN ({_USABLE})
GROUP BY device, {_CYCLE_KEY.format(p="")}"""

_USABLE_SAMPLE = (
    f"NEW.{PLACEMENT_METHOD} IS NULL OR NEW.{PLACEMENT_METHOD} IN ({_USABLE})"
)


def _cycle_upsert(least: str, greatest: str, old: str = "") -> str:
    """The statement a stored sample runs on its cycle: the two-argument minimum and
    maximum are SQLite's MIN/MAX, PostgreSQL's LEAST/GREATEST (``old``: how the
    stored row is named in the update, which PostgreSQL wants qualified)."""
    return f"""INSERT INTO probe_cycles ({_CYCLE_COLUMNS})
    VALUES (
        NEW.device, {_CYCLE_KEY.format(p="NEW.")}, NEW.school, NEW.placed_at,
        {_HAS_INTERNET.format(p="NEW.")},
        {_OK_AT.format(p="NEW.", scope="internet")},
        {_OK_AT.format(p="NEW.", scope="collector")},
        NEW.rowid, NEW.rowid
    )
    ON CONFLICT (device, cycle_key) DO UPDATE SET
        first_at = {least}({old}first_at, excluded.first_at),
        has_internet = {greatest}({old}has_internet, excluded.has_internet),
        internet_ok_at = COALESCE(
            {least}({old}internet_ok_at, excluded.internet_ok_at),
            {old}internet_ok_at, excluded.internet_ok_at),
        collector_ok_at = COALESCE(
            {least}({old}collector_ok_at, excluded.collector_ok_at),
            {old}collector_ok_at, excluded.collector_ok_at),
        last_sample = excluded.last_sample;"""


PROBE_CYCLES_TRIGGER = f"""
CREATE TRIGGER probe_cycles_follow_samples AFTER INSERT ON probe_samples
WHEN {_USABLE_SAMPLE}
BEGIN
    {_cycle_upsert("MIN", "MAX")}
END"""


# Migrations -------------------------------------------------------------------------


def _m1_core(db: sqlite_utils.Database) -> None:
    """Schools, tokens, devices, inventories, probes, speed tests, asset events."""
    db["schools"].create(
        {
            "code": str,
            "name": str,
            "level": str,
            "commune": str,
            "has_informatics": int,
            "lab_pcs_required": int,
            "students": int,
            "contracted_download_mbps": float,
            "latitude": float,
            "longitude": float,
            "active": int,
            "created_at": str,
            "updated_at": str,
        },
        pk="code",
        not_null={"name", "level", "commune", "active", "updated_at"},
        defaults={"active": 1},
    )
    db["enrollment_tokens"].create(
        {"hash": str, "school": str, "role": str, "created_at": str, "revoked_at": str},
        pk="hash",
        not_null={"school", "role", "created_at"},
        foreign_keys=[("school", "schools", "code")],
    )
    db["devices"].create(
        {
            "id": str,
            "school": str,
            "role": str,
            "hostname": str,
            "identity": str,
            "credential_hash": str,
            "credential_revoked_at": str,
            "enrolled_at": str,
            "last_seen_at": str,
            "last_skew_seconds": float,
            "agent_version": str,
            "boot_id": str,
            "health": str,
        },
        pk="id",
        not_null={"school", "role", "credential_hash", "enrolled_at"},
        foreign_keys=[("school", "schools", "code")],
    )
    db["devices"].create_index(["credential_hash"], unique=True)
    db["devices"].create_index(["school"])
    _m1_inventories(db)
    _m1_measurements(db)
    db["asset_events"].create(
        {
            "id": int,
            "device": str,
            "school": str,
            "kind": str,
            "detail": str,
            "at": str,
        },
        pk="id",
        not_null={"device", "school", "kind", "at"},
        foreign_keys=[("device", "devices", "id")],
    )
    db["asset_events"].create_index(["device", "at"])


def _m1_inventories(db: sqlite_utils.Database) -> None:
    db["inventories"].create(
        {"device": str, "hash": str, "sections": str, "received_at": str},
        pk="device",
        not_null={"sections", "received_at"},
        foreign_keys=[("device", "devices", "id")],
    )
    db["inventory_snapshots"].create(
        {"id": int, "device": str, "hash": str, "sections": str, "received_at": str},
        pk="id",
        not_null={"device", "sections", "received_at"},
        foreign_keys=[("device", "devices", "id")],
    )
    db["inventory_snapshots"].create_index(["device", "received_at"])


def _m1_measurements(db: sqlite_utils.Database) -> None:
    types = {"seq": int, "cycle": int, "monotonic": float, "ok": int}
    types |= {"duration_seconds": float}
    db["probe_samples"].create(
        {name: types.get(name, str) for name in PROBE_COLUMNS},
        not_null={"device", "school", "run", "seq", "placed_at", "received_at", "ok"},
        foreign_keys=[("device", "devices", "id")],
    )
    db["probe_samples"].create_index(["device", "run", "seq"], unique=True)
    db["probe_samples"].create_index(["school", "placed_at"])
    numbers = {"download_bytes_per_second", "upload_bytes_per_second"}
    numbers |= {"latency_seconds", "jitter_seconds", "duration_seconds", "monotonic"}
    integers = {"seq", "ok", "bytes_used", "streams"}
    db["speedtests"].create(
        {
            name: float if name in numbers else int if name in integers else str
            for name in SPEEDTEST_COLUMNS_V1
        },
        not_null={"device", "school", "run", "seq", "placed_at", "received_at", "ok"},
        foreign_keys=[("device", "devices", "id")],
    )
    db["speedtests"].create_index(["device", "run", "seq"], unique=True)
    db["speedtests"].create_index(["school", "placed_at"])


def _m2_zones_and_counters(db: sqlite_utils.Database) -> None:
    """Per-school time zone; the collector's own counters, kept across restarts."""
    db["schools"].add_column("timezone", str)
    db["counters"].create(
        {"name": str, "labels": str, "value": int},
        pk=("name", "labels"),
        not_null={"value"},
    )


def _m3_placement_and_speedtest_state(db: sqlite_utils.Database) -> None:
    """How each sample was placed in time; each school's speed-test slot state."""
    db["probe_samples"].add_column(PLACEMENT_METHOD, str)
    db["speedtests"].add_column(PLACEMENT_METHOD, str)
    db["speedtest_state"].create(
        {"school": str, "version": int, "state": str},
        pk="school",
        not_null={"version", "state"},
    )


def _m4_device_last_seq(db: sqlite_utils.Database) -> None:
    """The highest sample seq stored per device: an agent whose state directory was
    restored from a disk image learns from it that its counter went back."""
    db["devices"].add_column("last_seq", int)


def _m5_probe_cycles(db: sqlite_utils.Database) -> None:
    """Each probe cycle's verdict, kept by a trigger on ``probe_samples`` in the
    transaction that stores a sample, and filled from the samples already stored.
    Also an index that reads inventories' hashes without their (large) rows."""
    db.execute("CREATE INDEX inventories_content ON inventories (device, hash)")
    db.execute(PROBE_CYCLES_TABLE)
    db.execute("CREATE INDEX probe_cycles_school ON probe_cycles (school, verdict_at)")
    db.execute("CREATE INDEX probe_cycles_last_sample ON probe_cycles (last_sample)")
    db.execute(PROBE_CYCLES_BACKFILL)
    db.execute(PROBE_CYCLES_TRIGGER)


def _m6_speedtest_message(db: sqlite_utils.Database) -> None:
    """What an agent said about a failed speed test, beside its reason."""
    db["speedtests"].add_column("message", str)


# Retention (migration 7) ----------------------------------------------------------
#
# Raw probe samples older than the retention window are deleted in batches, and the
# probe cycles of that old time are rolled up into ``probe_runs``: one row per run
# of consecutive cycles of a device with the same verdict whose spacing stays within
# the verdict coverage the run was built with (``coverage_seconds``). A verdict
# covers its coverage or until the device's next one, so such a run covers exactly
# ``[first_at, last_at + coverage)`` (cut by the device's next verdict), as its
# cycles did. ``probe_cycles`` reads the runs back as verdicts spaced one second
# under that coverage (``RUN_POINT_MARGIN``): their spans meet exactly, so the
# timeline, the uptime, the outages and the connected verdict of any period come
# out as before the roll-up (for a reader whose coverage is at least the run's).

RUN_POINT_MARGIN = timedelta(seconds=1)

PROBE_RUNS_TABLE = """
CREATE TABLE probe_runs (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    school TEXT NOT NULL,
    first_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    reached INTEGER NOT NULL,
    cycles INTEGER NOT NULL,
    coverage_seconds REAL NOT NULL
)"""

# The same table in PostgreSQL's DDL, for PG_MIGRATIONS at the same position as
# ``_m7_probe_runs`` in MIGRATIONS (the PostgreSQL backend's conventions: TEXT in
# the C collation, BIGINT, DOUBLE PRECISION, an identity id).
_PG_M7_PROBE_RUNS = """
CREATE TABLE probe_runs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    device TEXT COLLATE "C" NOT NULL,
    school TEXT COLLATE "C" NOT NULL,
    first_at TEXT COLLATE "C" NOT NULL,
    last_at TEXT COLLATE "C" NOT NULL,
    reached BIGINT NOT NULL,
    cycles BIGINT NOT NULL,
    coverage_seconds DOUBLE PRECISION NOT NULL
);
CREATE INDEX probe_runs_last ON probe_runs (last_at);
CREATE INDEX probe_runs_device ON probe_runs (device, last_at)"""

# Reads the samples' rowid (SQLite's own; a PostgreSQL table of samples needs a
# rowid column): one batch of a school's old samples, never the newest sample of
# all, because readers follow samples by rowid and SQLite numbers a new row from the
# largest rowid left, so deleting the newest would hand its rowid out again.
PRUNE_PROBE_SAMPLES = (
    "DELETE FROM probe_samples WHERE rowid IN (SELECT rowid FROM probe_samples "
    "WHERE school = ? AND placed_at < ? AND rowid < ? LIMIT ?)"
)
NEWEST_PROBE_SAMPLE = "SELECT MAX(rowid) FROM probe_samples"


def _m7_probe_runs(db: sqlite_utils.Database) -> None:
    """Rolled-up probe cycles older than the retention window (see above)."""
    db.execute(PROBE_RUNS_TABLE)
    db.execute("CREATE INDEX probe_runs_last ON probe_runs (last_at)")
    db.execute("CREATE INDEX probe_runs_device ON probe_runs (device, last_at)")


def run_points(
    first: datetime,
    last: datetime,
    coverage: float,
    start: datetime,
    end: datetime | None,
) -> list[datetime]:
    """The verdict instants a run reads back as within ``[start, end)``: from
    ``first`` every coverage less ``RUN_POINT_MARGIN``, and ``last``."""
    step = max(timedelta(seconds=coverage) - RUN_POINT_MARGIN, RUN_POINT_MARGIN)
    skip = max(0, -((first - start) // step)) if start > first else 0
    points = []
    at = first + skip * step
    while at < last and (end is None or at < end):
        points.append(at)
        at += step
    if last >= start and (end is None or last < end):
        points.append(last)
    return points


def _m8_device_facts(db: sqlite_utils.Database) -> None:
    """The inventory fields the figures read, one small row per device, filled from
    the stored inventories (plain SQL; the back-fill is SQLite's JSON)."""
    db.execute(DEVICE_FACTS_TABLE)
    db.execute(DEVICE_FACTS_BACKFILL)


# Asset event counts (migration 9) ---------------------------------------------------
#
# ``schoolmon_asset_events_total`` is a counter that every collector process serves
# at every scrape: it is read from one small row per (school, kind), kept in the
# transaction that records an event, never from a count over the whole history.

ASSET_EVENT_COUNTS_TABLE = """
CREATE TABLE asset_event_counts (
    school TEXT NOT NULL,
    kind TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (school, kind)
)"""
ASSET_EVENT_COUNTS_BACKFILL = (
    "INSERT INTO asset_event_counts (school, kind, value) "
    "SELECT school, kind, COUNT(*) FROM asset_events GROUP BY school, kind"
)
ASSET_EVENT_COUNT_BUMP = (
    "INSERT INTO asset_event_counts (school, kind, value) VALUES (?, ?, 1) "
    "ON CONFLICT (school, kind) DO UPDATE SET value = asset_event_counts.value + 1"
)


def _m9_asset_event_counts(db: sqlite_utils.Database) -> None:
    """Asset events counted per school and kind, filled from those recorded."""
    db.execute(ASSET_EVENT_COUNTS_TABLE)
    db.execute(ASSET_EVENT_COUNTS_BACKFILL)


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _m1_core,
    _m2_zones_and_counters,
    _m3_placement_and_speedtest_state,
    _m4_device_last_seq,
    _m5_probe_cycles,
    _m6_speedtest_message,
    _m7_probe_runs,
    _m8_device_facts,
    _m9_asset_event_counts,
)
SCHEMA_VERSION = len(MIGRATIONS)


# PostgreSQL migrations --------------------------------------------------------------
#
# The same schema as MIGRATIONS, one entry per migration, in PostgreSQL's DDL: TEXT
# (compared byte by byte, as SQLite does), BIGINT for integers, DOUBLE PRECISION for
# reals, the same NOT NULLs, keys and indexes. ``probe_samples`` and ``speedtests``
# get a real ``rowid`` column, so the SQL that reads SQLite's rowid reads it on both.
# A later migration adds its PostgreSQL variant here, at the same position.

_TEXT = 'TEXT COLLATE "C"'
_PG_ROWID = "rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
_PG_ID = "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

_PG_M1_CORE = f"""
CREATE TABLE schools (
    code {_TEXT} PRIMARY KEY,
    name {_TEXT} NOT NULL,
    level {_TEXT} NOT NULL,
    commune {_TEXT} NOT NULL,
    has_informatics BIGINT,
    lab_pcs_required BIGINT,
    students BIGINT,
    contracted_download_mbps DOUBLE PRECISION,
    latitude DOUBLE PRECISION,
    longitude DOUBLE PRECISION,
    active BIGINT NOT NULL DEFAULT 1,
    created_at {_TEXT},
    updated_at {_TEXT} NOT NULL
);
CREATE TABLE enrollment_tokens (
    hash {_TEXT} PRIMARY KEY,
    school {_TEXT} NOT NULL REFERENCES schools (code),
    role {_TEXT} NOT NULL,
    created_at {_TEXT} NOT NULL,
    revoked_at {_TEXT}
);
CREATE TABLE devices (
    id {_TEXT} PRIMARY KEY,
    school {_TEXT} NOT NULL REFERENCES schools (code),
    role {_TEXT} NOT NULL,
    hostname {_TEXT},
    identity {_TEXT},
    credential_hash {_TEXT} NOT NULL,
    credential_revoked_at {_TEXT},
    enrolled_at {_TEXT} NOT NULL,
    last_seen_at {_TEXT},
    last_skew_seconds DOUBLE PRECISION,
    agent_version {_TEXT},
    boot_id {_TEXT},
    health {_TEXT}
);
CREATE UNIQUE INDEX idx_devices_credential_hash ON devices (credential_hash);
CREATE INDEX idx_devices_school ON devices (school);
CREATE TABLE inventories (
    device {_TEXT} PRIMARY KEY REFERENCES devices (id),
    hash {_TEXT},
    sections {_TEXT} NOT NULL,
    received_at {_TEXT} NOT NULL
);
CREATE TABLE inventory_snapshots (
    {_PG_ID},
    device {_TEXT} NOT NULL REFERENCES devices (id),
    hash {_TEXT},
    sections {_TEXT} NOT NULL,
    received_at {_TEXT} NOT NULL
);
CREATE INDEX idx_inventory_snapshots_device_received_at
    ON inventory_snapshots (device, received_at);
CREATE TABLE probe_samples (
    {_PG_ROWID},
    device {_TEXT} NOT NULL REFERENCES devices (id),
    school {_TEXT} NOT NULL,
    run {_TEXT} NOT NULL,
    seq BIGINT NOT NULL,
    cycle BIGINT,
    boot_id {_TEXT},
    wall_time {_TEXT},
    monotonic DOUBLE PRECISION,
    placed_at {_TEXT} NOT NULL,
    received_at {_TEXT} NOT NULL,
    target {_TEXT},
    scope {_TEXT},
    kind {_TEXT},
    ok BIGINT NOT NULL,
    duration_seconds DOUBLE PRECISION,
    reason {_TEXT},
    detail {_TEXT}
);
CREATE UNIQUE INDEX idx_probe_samples_device_run_seq
    ON probe_samples (device, run, seq);
CREATE INDEX idx_probe_samples_school_placed_at ON probe_samples (school, placed_at);
CREATE TABLE speedtests (
    {_PG_ROWID},
    device {_TEXT} NOT NULL REFERENCES devices (id),
    school {_TEXT} NOT NULL,
    run {_TEXT} NOT NULL,
    seq BIGINT NOT NULL,
    boot_id {_TEXT},
    wall_time {_TEXT},
    monotonic DOUBLE PRECISION,
    placed_at {_TEXT} NOT NULL,
    received_at {_TEXT} NOT NULL,
    ok BIGINT NOT NULL,
    reason {_TEXT},
    backend {_TEXT},
    tool {_TEXT},
    tool_version {_TEXT},
    server {_TEXT},
    download_bytes_per_second DOUBLE PRECISION,
    upload_bytes_per_second DOUBLE PRECISION,
    latency_seconds DOUBLE PRECISION,
    jitter_seconds DOUBLE PRECISION,
    bytes_used BIGINT,
    streams BIGINT,
    started_at {_TEXT},
    duration_seconds DOUBLE PRECISION,
    flags {_TEXT}
);
CREATE UNIQUE INDEX idx_speedtests_device_run_seq ON speedtests (device, run, seq);
CREATE INDEX idx_speedtests_school_placed_at ON speedtests (school, placed_at);
CREATE TABLE asset_events (
    {_PG_ID},
    device {_TEXT} NOT NULL REFERENCES devices (id),
    school {_TEXT} NOT NULL,
    kind {_TEXT} NOT NULL,
    detail {_TEXT},
    at {_TEXT} NOT NULL
);
CREATE INDEX idx_asset_events_device_at ON asset_events (device, at);
"""

_PG_M2_ZONES_AND_COUNTERS = f"""
ALTER TABLE schools ADD COLUMN timezone {_TEXT};
CREATE TABLE counters (
    name {_TEXT},
    labels {_TEXT},
    value BIGINT NOT NULL,
    PRIMARY KEY (name, labels)
);
"""

_PG_M3_PLACEMENT_AND_SPEEDTEST_STATE = f"""
ALTER TABLE probe_samples ADD COLUMN {PLACEMENT_METHOD} {_TEXT};
ALTER TABLE speedtests ADD COLUMN {PLACEMENT_METHOD} {_TEXT};
CREATE TABLE speedtest_state (
    school {_TEXT} PRIMARY KEY,
    version BIGINT NOT NULL,
    state {_TEXT} NOT NULL
);
"""

_PG_M4_DEVICE_LAST_SEQ = "ALTER TABLE devices ADD COLUMN last_seq BIGINT;"

# The trigger's function runs the statement SQLite's trigger runs, with LEAST and
# GREATEST (which skip NULLs; the COALESCE around them keeps SQLite's result).
_PG_M5_PROBE_CYCLES = f"""
CREATE INDEX inventories_content ON inventories (device, hash);
CREATE TABLE probe_cycles (
    device {_TEXT} NOT NULL,
    cycle_key {_TEXT} NOT NULL,
    school {_TEXT} NOT NULL,
    first_at {_TEXT} NOT NULL,
    has_internet BIGINT NOT NULL,
    internet_ok_at {_TEXT},
    collector_ok_at {_TEXT},
    first_sample BIGINT NOT NULL,
    last_sample BIGINT NOT NULL,
    verdict_at {_TEXT} GENERATED ALWAYS AS (
        COALESCE({_VERDICT_OK}, first_at)) STORED,
    reached BIGINT GENERATED ALWAYS AS (
        CASE WHEN {_VERDICT_OK} IS NOT NULL THEN 1 ELSE 0 END) STORED,
    PRIMARY KEY (device, cycle_key)
);
CREATE INDEX probe_cycles_school ON probe_cycles (school, verdict_at);
CREATE INDEX probe_cycles_last_sample ON probe_cycles (last_sample);
{PROBE_CYCLES_BACKFILL};
CREATE FUNCTION probe_cycles_follow_samples() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    {_cycle_upsert("LEAST", "GREATEST", old="probe_cycles.")}
    RETURN NULL;
END
$$;
CREATE TRIGGER probe_cycles_follow_samples AFTER INSERT ON probe_samples
FOR EACH ROW WHEN ({_USABLE_SAMPLE})
EXECUTE FUNCTION probe_cycles_follow_samples();
"""

_PG_M6_SPEEDTEST_MESSAGE = f"ALTER TABLE speedtests ADD COLUMN message {_TEXT};"

_PG_FACT_PATHS = ", ".join(f"j #> '{{{s},data,{f}}}'" for s, f in INVENTORY_FACTS)
_PG_M8_DEVICE_FACTS = f"""
CREATE TABLE device_facts (
    device TEXT COLLATE "C" PRIMARY KEY REFERENCES devices (id),
    hash TEXT COLLATE "C",
    facts TEXT COLLATE "C" NOT NULL
);
INSERT INTO device_facts (device, hash, facts)
SELECT device, hash, (
    SELECT json_build_array({_PG_FACT_PATHS})::text
    FROM (SELECT {pg.json_of("sections")} AS j OFFSET 0) AS v
) FROM inventories"""


_PG_M9_ASSET_EVENT_COUNTS = f"""
CREATE TABLE asset_event_counts (
    school TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (school, kind)
);
{ASSET_EVENT_COUNTS_BACKFILL}"""


PG_MIGRATIONS: tuple[str, ...] = (
    _PG_M1_CORE,
    _PG_M2_ZONES_AND_COUNTERS,
    _PG_M3_PLACEMENT_AND_SPEEDTEST_STATE,
    _PG_M4_DEVICE_LAST_SEQ,
    _PG_M5_PROBE_CYCLES,
    _PG_M6_SPEEDTEST_MESSAGE,
    _PG_M7_PROBE_RUNS,
    _PG_M8_DEVICE_FACTS,
    _PG_M9_ASSET_EVENT_COUNTS,
)


PG_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

Database = sqlite_utils.Database | psycopg.Connection
"""An open database: a SQLite file through sqlite-utils, or a PostgreSQL connection."""


def connect(path: str | Path) -> Database:
    """Open the SQLite file at ``path`` with the pragmas the collector relies on, or
    the PostgreSQL database a ``postgresql://`` URL names."""
    if pg.is_url(str(path)):
        return pg.connect(str(path))
    conn = sqlite3.connect(
        str(path), check_same_thread=False, isolation_level=None, timeout=10
    )
    db = sqlite_utils.Database(conn)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.enable_wal()
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


def reader_connection(path: str | Path) -> sqlite3.Connection | psycopg.Connection:
    """A read-only connection to the database at ``path`` (one per thread)."""
    if pg.is_url(str(path)):
        return pg.connect(str(path), read_only=True)
    conn = sqlite3.connect(
        str(path), check_same_thread=False, isolation_level=None, timeout=10
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = 1")
    return conn


def schema_version(db: Database) -> int:
    """The schema version the database is at (0 when empty)."""
    if isinstance(db, psycopg.Connection):
        exists = db.execute("SELECT to_regclass('schema_version')").fetchone()[0]
        if exists is None:
            return 0
    elif not db["schema_version"].exists():
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return row[0] or 0


def migrate(db: Database, target: int = SCHEMA_VERSION) -> int:
    """Run the migrations the database misses, each in its own transaction."""
    if isinstance(db, psycopg.Connection):
        return _migrate_postgres(db, target)
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = schema_version(db)
    _check_not_newer(current)
    for number in range(current + 1, target + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[number - 1](db)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", [number])
        except BaseException:
            db.rollback()
            raise
        db.commit()
        logger.info("database migrated to schema version %d", number)
    return schema_version(db)


def _migrate_postgres(conn: psycopg.Connection, target: int) -> int:
    """``migrate`` on PostgreSQL: each migration in its own transaction holding the
    write lock, the version read again under it (another collector starting at the
    same time may have run it meanwhile)."""
    while True:
        with _postgres_write(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            current = schema_version(conn)
            _check_not_newer(current)
            if current >= target:
                return current
            if current >= len(PG_MIGRATIONS):
                raise StorageError(
                    f"schema version {current + 1} has no PostgreSQL migration in "
                    "this collector (PG_MIGRATIONS); use a SQLite file"
                )
            conn.execute(PG_MIGRATIONS[current])
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (%s)", [current + 1]
            )
        logger.info("database migrated to schema version %d", current + 1)


@contextmanager
def _postgres_write(conn: psycopg.Connection, begun: bool = False) -> Iterator[None]:
    """One PostgreSQL write transaction, serialized with every other one (``begun``:
    the caller has sent its ``BEGIN``)."""
    if not begun:
        conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [pg.WRITE_LOCK])
        yield
    except BaseException:
        if not conn.broken:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _check_not_newer(current: int) -> None:
    if current > SCHEMA_VERSION:
        raise StorageError(
            f"database schema version {current} is newer than this collector's "
            f"({SCHEMA_VERSION}); upgrade schoolmon"
        )


@contextmanager
def _sqlite_write(db: sqlite_utils.Database) -> Iterator[None]:
    """One SQLite write transaction; ``BEGIN IMMEDIATE`` waits for the writer lock."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


# The storage object -----------------------------------------------------------------


class Storage:
    """The collector's database: a SQLite file path or a ``postgresql://`` URL.

    Thread-safe: writes go through one connection behind a lock; reads outside a
    write transaction use a connection of their own thread, so a long read (a
    scrape) never holds up a write (SQLite's WAL, PostgreSQL's MVCC). Several
    ``Storage`` objects, in one process or many, may share one PostgreSQL database:
    their write transactions take turns (module docstring).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.postgres = pg.is_url(self.path)
        self.name = pg.redact(self.path) if self.postgres else self.path
        if "://" in self.path and not self.postgres:
            raise StorageError(
                f"database {self.path!r}: unknown URL scheme; give a SQLite file "
                "path or a postgresql:// URL"
            )
        try:
            self.db = connect(self.path)
        except (sqlite3.DatabaseError, psycopg.Error) as error:
            raise self._error(error) from error
        try:
            migrate(self.db)
        except (sqlite3.DatabaseError, psycopg.Error, StorageError) as error:
            self.db.close()
            raise self._error(error) from error
        self._conn = self.db if self.postgres else self.db.conn
        self._lock = threading.RLock()
        self._depth = 0
        self._writer: int | None = None
        self._local = threading.local()
        self._readers: dict[threading.Thread, Any] = {}
        self._readers_lock = threading.Lock()
        self._os_names: dict[str, tuple[str, str | None]] = {}
        self._os_names_lock = threading.Lock()

    def _error(self, error: Exception) -> StorageError:
        """``error`` in one line naming the database (never its password)."""
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        return StorageError(f"database {self.name!r}: {reason}")

    def close(self) -> None:
        with self._lock:
            self.db.close()
        with self._readers_lock:
            for conn in self._readers.values():
                conn.close()
            self._readers.clear()

    @contextmanager
    def transaction(self) -> Iterator[Storage]:
        """One write transaction (nested calls join the outer one); commits on exit."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            if self.postgres:
                begin = _postgres_write(self._postgres_begin(), begun=True)
            else:
                begin = _sqlite_write(self.db)
            with begin:
                self._depth, self._writer = 1, threading.get_ident()
                try:
                    yield self
                finally:
                    self._depth, self._writer = 0, None

    @contextmanager
    def snapshot(self) -> Iterator[Storage]:
        """Reads inside see one committed state of the database (one read
        transaction on this thread's reader; nested calls join it)."""
        if self._writer == threading.get_ident() or getattr(self._local, "open", 0):
            yield self
            return
        if self.postgres:
            conn = self._again_if_lost(
                lambda: self._begun(self._reader(), PG_SNAPSHOT), self._drop_reader
            )
        else:
            conn = self._begun(self._reader(), "BEGIN")
        self._local.open = 1
        try:
            yield self
        finally:
            self._local.open = 0
            conn.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection | psycopg.Connection:
        """This thread's read connection; opening one closes those of threads that
        ended (a server's worker threads come and go; PostgreSQL's connections are
        counted)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self.postgres and (conn.closed or conn.broken):
            self._drop_reader()
            conn = None
        if conn is None:
            conn = reader_connection(self.path)
            self._local.conn = conn
            with self._readers_lock:
                for thread in [t for t in self._readers if not t.is_alive()]:
                    self._readers.pop(thread).close()
                self._readers[threading.current_thread()] = conn
        return conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a read: inside this thread's write transaction on the writer (to see
        its own writes), else on this thread's reader (on PostgreSQL outside a
        snapshot, once more on a new connection if the database ended the old one)."""
        if self._writer == threading.get_ident():
            return self._execute(self._conn, sql, params)
        if not self.postgres or getattr(self._local, "open", 0):
            return self._execute(self._reader(), sql, params)
        return self._again_if_lost(
            lambda: self._execute(self._reader(), sql, params), self._drop_reader
        )

    # PostgreSQL connections lost (a database restart) -------------------------------

    def _postgres_begin(self) -> psycopg.Connection:
        """``BEGIN`` on the write connection, connected again first when the
        database ended the old one; the connection in use."""
        return self._again_if_lost(
            lambda: self._begun(self.db, "BEGIN"), self._drop_writer
        )

    def _again_if_lost(self, step: Callable[[], Any], drop: Callable[[], None]) -> Any:
        """``step``, and once more after ``drop`` when it failed because the
        database ended its connection (nothing of it had run: a failure inside a
        transaction is the caller's to see)."""
        try:
            return step()
        except psycopg.OperationalError as error:
            logger.warning(
                "database %s: connection lost (%s); connecting again",
                pg.redact(self.path), str(error).strip() or type(error).__name__,
            )  # fmt: skip
            drop()
            return step()

    @staticmethod
    def _begun(conn: Any, begin: str) -> Any:
        conn.execute(begin)
        return conn

    def _drop_writer(self) -> None:
        with suppress(psycopg.Error):
            self.db.close()
        self.db = self._conn = connect(self.path)

    def _drop_reader(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        with self._readers_lock:
            self._readers.pop(threading.current_thread(), None)
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()

    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        """A statement on ``conn``, its SQL and parameters as this backend takes them;
        the cursor."""
        if self.postgres:
            return conn.execute(pg.translate(sql), list(params))
        return conn.execute(sql, list(params))

    def _execute_many(self, sql: str, params: Sequence[Sequence[Any]]) -> int:
        """One statement per parameter row on the writer; how many rows it changed."""
        if not self.postgres:
            return self._conn.executemany(sql, params).rowcount
        cursor = self._conn.cursor()
        cursor.executemany(pg.translate(sql), params)
        return cursor.rowcount

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._read(sql, params).fetchall()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self._read(sql, params)
        names = [column[0] for column in cursor.description]
        return [_decode(dict(zip(names, row, strict=True))) for row in cursor]

    def _one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.transaction():
            return self._execute(self._conn, sql, params).rowcount

    # Schools ------------------------------------------------------------------------

    def schools(self, active_only: bool = True) -> list[dict[str, Any]]:
        """Registered schools by code (active ones unless told otherwise)."""
        where = "WHERE active = 1" if active_only else ""
        return self._rows(f"SELECT * FROM schools {where} ORDER BY code")

    def school(self, code: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM schools WHERE code = ?", [code])

    def import_schools(
        self, rows: Iterable[dict[str, Any]], now: datetime
    ) -> ImportSummary:
        """Upsert the whole registry at once; schools not in ``rows`` become inactive.

        Each row has ``code`` and the fields it carries; a field absent from a row
        keeps its stored value.
        """
        summary = ImportSummary()
        with self.transaction():
            known = {row["code"]: row for row in self.schools(active_only=False)}
            seen = set()
            for row in rows:
                seen.add(row["code"])
                self._upsert_school(row, known.get(row["code"]), now, summary)
            for code, old in known.items():
                if code not in seen and old["active"]:
                    self._write(
                        "UPDATE schools SET active = 0, updated_at = ? WHERE code = ?",
                        [to_storage(now), code],
                    )
                    summary.deactivated.append(code)
        return summary

    def _upsert_school(
        self,
        row: dict[str, Any],
        old: dict[str, Any] | None,
        now: datetime,
        summary: ImportSummary,
    ) -> None:
        code = row["code"]
        values = {name: row[name] for name in SCHOOL_FIELDS if name in row}
        if old is None:
            self._insert_school(code, values, now)
            summary.added.append(code)
            return
        changed = {k: v for k, v in values.items() if old.get(k) != v}
        if not old["active"]:
            changed["active"] = 1
            summary.reactivated.append(code)
        if not changed:
            summary.unchanged.append(code)
            return
        assignments = ", ".join(f"{name} = ?" for name in changed)
        self._write(
            f"UPDATE schools SET {assignments}, updated_at = ? WHERE code = ?",
            [*changed.values(), to_storage(now), code],
        )
        summary.updated.append(code)
        if "name" in changed:
            summary.renamed.append(code)

    def _insert_school(self, code: str, values: dict[str, Any], now: datetime) -> None:
        names = ["code", *values, "active", "created_at", "updated_at"]
        params = [code, *values.values(), 1, to_storage(now), to_storage(now)]
        self._write(
            f"INSERT INTO schools ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            params,
        )

    # Enrollment tokens ----------------------------------------------------------------

    def add_enrollment_token(
        self, token_hash: str, school: str, role: str, now: datetime
    ) -> None:
        self._write(
            "INSERT INTO enrollment_tokens (hash, school, role, created_at) "
            "VALUES (?, ?, ?, ?)",
            [token_hash, school, role, to_storage(now)],
        )

    def enrollment_token(self, token_hash: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM enrollment_tokens WHERE hash = ?", [token_hash])

    def revoke_enrollment_token(self, token_hash: str, now: datetime) -> bool:
        """Revoke a token; False when no such live token exists."""
        return bool(
            self._write(
                "UPDATE enrollment_tokens SET revoked_at = ? "
                "WHERE hash = ? AND revoked_at IS NULL",
                [to_storage(now), token_hash],
            )
        )

    # Devices --------------------------------------------------------------------------

    def add_device(self, device: dict[str, Any]) -> None:
        """Store a new device; ``identity`` and ``health`` are dicts."""
        row = _encode(device)
        names = list(row)
        self._write(
            f"INSERT INTO devices ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            list(row.values()),
        )

    def device(self, device_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM devices WHERE id = ?", [device_id])

    def devices(self, school: str | None = None) -> list[dict[str, Any]]:
        """All devices, or those of one school, by id."""
        if school is None:
            return self._rows("SELECT * FROM devices ORDER BY id")
        return self._rows(
            "SELECT * FROM devices WHERE school = ? ORDER BY id", [school]
        )

    def revoke_device_credential(self, device_id: str, now: datetime) -> bool:
        return bool(
            self._write(
                "UPDATE devices SET credential_revoked_at = ? "
                "WHERE id = ? AND credential_revoked_at IS NULL",
                [to_storage(now), device_id],
            )
        )

    def update_device(self, device_id: str, **values: Any) -> None:
        """Set columns of a device (dicts become JSON, datetimes text)."""
        row = _encode(values)
        assignments = ", ".join(f"{name} = ?" for name in row)
        self._write(
            f"UPDATE devices SET {assignments} WHERE id = ?", [*row.values(), device_id]
        )

    def last_seen_by_school(self) -> dict[str, datetime]:
        """Latest report time of any device, per school that has one."""
        rows = self._rows(
            "SELECT school, MAX(last_seen_at) AS last_seen_at FROM devices "
            "WHERE last_seen_at IS NOT NULL GROUP BY school"
        )
        return {row["school"]: row["last_seen_at"] for row in rows}

    # Inventories ----------------------------------------------------------------------

    def inventory(self, device_id: str) -> dict[str, Any] | None:
        """The latest inventory of a device: hash, sections, received_at."""
        return self._one("SELECT * FROM inventories WHERE device = ?", [device_id])

    def save_inventory(
        self,
        device_id: str,
        inventory_hash: str | None,
        sections: dict[str, Any],
        received_at: datetime,
        snapshot: bool,
    ) -> None:
        """Replace the latest inventory; with ``snapshot`` also keep it in history."""
        row = [device_id, inventory_hash, _json(sections), to_storage(received_at)]
        with self.transaction():
            self._write(
                "INSERT INTO inventories (device, hash, sections, received_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
                "hash = excluded.hash, sections = excluded.sections, "
                "received_at = excluded.received_at",
                row,
            )
            if snapshot:
                self._write(
                    "INSERT INTO inventory_snapshots (device, hash, sections, "
                    "received_at) VALUES (?, ?, ?, ?)",
                    row,
                )
            self._save_facts(device_id, inventory_hash, sections)

    def _save_facts(
        self, device_id: str, inventory_hash: str | None, sections: dict[str, Any]
    ) -> None:
        """Keep the device's ``INVENTORY_FACTS`` beside its latest inventory."""
        self._write(
            DEVICE_FACTS_UPSERT, [device_id, inventory_hash, facts_json(sections)]
        )

    def device_os_names(self) -> dict[str, str | None]:
        """The OS name of each device's latest inventory (None when unknown).

        Names are kept between calls by inventory hash and read again only for
        inventories whose content changed (or that have no hash): parsing every
        inventory's JSON costs more than a scrape may.
        """
        with self._os_names_lock, self.snapshot():
            stored = dict(self._tuples(INVENTORY_HASHES))
            known = self._os_names
            stale = [
                d
                for d, h in stored.items()
                if h is None or known.get(d, (None,))[0] != h
            ]
            for start in range(0, len(stale), 500):
                chunk = stale[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                name_sql = self._json_text("sections", "os.data.name")
                for device, content, name in self._tuples(
                    f"SELECT device, hash, {name_sql} "
                    f"FROM inventories WHERE device IN ({marks})",
                    chunk,
                ):
                    known[device] = (content, name)
            return {device: known[device][1] for device in stored}

    def inventory_snapshots(self, device_id: str) -> list[dict[str, Any]]:
        """Every distinct inventory of a device, oldest first."""
        return self._rows(
            "SELECT * FROM inventory_snapshots WHERE device = ? ORDER BY id",
            [device_id],
        )

    # Probe samples and speed tests ----------------------------------------------------

    def insert_probe_samples(self, rows: Sequence[dict[str, Any]]) -> int:
        """Store samples not stored before (by device, run, seq); return how many."""
        return self._insert_new(
            "probe_samples", (*PROBE_COLUMNS, PLACEMENT_METHOD), rows
        )

    def insert_speedtests(self, rows: Sequence[dict[str, Any]]) -> int:
        """Store speed tests not stored before (device, run, seq); return how many."""
        return self._insert_new(
            "speedtests", (*SPEEDTEST_COLUMNS, PLACEMENT_METHOD), rows
        )

    def _insert_new(
        self, table: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]
    ) -> int:
        if not rows:
            return 0
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) "
            "ON CONFLICT (device, run, seq) DO NOTHING"
        )
        params = _encoded_rows(columns, rows)
        with self.transaction():
            return self._execute_many(sql, params)

    def probe_samples(
        self, school: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Samples of a school placed in ``[start, end)``, in time order."""
        return self._rows(
            f"SELECT {_PROBE_ROW} FROM probe_samples WHERE school = ? "
            "AND placed_at >= ? "
            "AND placed_at < ? ORDER BY placed_at, device, run, seq",
            [school, to_storage(start), to_storage(end)],
        )

    def latest_cycle(self, school: str) -> list[dict[str, Any]]:
        """All samples of the most recently placed probe cycle of a school."""
        latest = self._one(
            "SELECT device, run, cycle FROM probe_samples WHERE school = ? "
            "ORDER BY placed_at DESC, seq DESC LIMIT 1",
            [school],
        )
        if latest is None:
            return []
        return self._rows(
            f"SELECT {_PROBE_ROW} FROM probe_samples WHERE device = ? AND run = ? "
            "AND cycle IS NOT DISTINCT FROM ? ORDER BY seq",
            [latest["device"], latest["run"], latest["cycle"]],
        )

    def speedtests(
        self, school: str, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Speed tests of a school placed in ``[start, end)``, in time order."""
        return self._rows(
            f"SELECT {_SPEEDTEST_ROW} FROM speedtests WHERE school = ? "
            "AND placed_at >= ? "
            "AND placed_at < ? ORDER BY placed_at, device, run, seq",
            [school, to_storage(start), to_storage(end)],
        )

    # Reads for the headline figures (one query per kind for the whole district) ------

    def probe_cycles(
        self, start: datetime, end: datetime | None, school: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Verdicts of the probe cycles whose verdict instant is in ``[start, end)``
        (``end`` None: from ``start`` on), of every active school (or only
        ``school``), by school and device.

        Rows ``(school, device, verdict_at, reached)``, the instant as stored text.
        """
        scope, params = self._school_scope(school)
        until = "" if end is None else " AND verdict_at < ?"
        params += [to_storage(start)] + ([] if end is None else [to_storage(end)])
        rows = self._tuples(
            "SELECT school, device, verdict_at, reached FROM probe_cycles "
            f"WHERE {scope} AND verdict_at >= ?{until} "
            "ORDER BY school, device, verdict_at",
            params,
        )
        runs = self._probe_run_verdicts(start, end, school)
        return sorted(rows + runs) if runs else rows

    def last_probe_sample(self) -> int:
        """The rowid of the latest sample that created or changed a probe cycle."""
        row = self._tuples("SELECT MAX(last_sample) FROM probe_cycles")
        return row[0][0] or 0

    def last_speedtest(self) -> int:
        """The rowid of the latest stored speed test (0 when none)."""
        return self._tuples("SELECT MAX(rowid) FROM speedtests")[0][0] or 0

    def probe_cycles_changed(self, after_sample: int) -> list[tuple[Any, ...]]:
        """Probe cycles that samples stored after the sample rowid ``after_sample``
        created or changed, of any school.

        Rows ``(school, device, verdict_at, reached, first_sample, last_sample)``: a
        cycle with ``first_sample <= after_sample`` existed before and changed.
        """
        return self._tuples(
            "SELECT school, device, verdict_at, reached, first_sample, last_sample "
            "FROM probe_cycles WHERE last_sample > ? ORDER BY last_sample",
            [after_sample],
        )

    def device_states(self, school: str | None = None) -> list[tuple[Any, ...]]:
        """What the figures read of every device (or those of ``school``), by id:
        rows ``(school, id, role, last_seen_at, last_skew_seconds,
        inventory hash)``, instants as stored text. (Columns stored after an
        inventory's sections are left alone: reading them walks the whole JSON.)"""
        where, params = ("WHERE d.school = ? ", [school]) if school else ("", [])
        return self._tuples(
            "SELECT d.school, d.id, d.role, d.last_seen_at, d.last_skew_seconds, "
            "i.hash FROM devices d "
            "LEFT JOIN inventories i INDEXED BY inventories_content "
            f"ON i.device = d.id {where}ORDER BY d.id",
            params,
        )

    def school_rows(self) -> list[tuple[Any, ...]]:
        """Active schools by code as raw rows (cheap to compare with a copy)."""
        return self._tuples("SELECT * FROM schools WHERE active = 1 ORDER BY code")

    def speedtests_after(
        self, after: int, since: datetime, until: int
    ) -> list[dict[str, Any]]:
        """Speed tests stored after the rowid ``after`` up to ``until`` and placed
        from ``since`` on, unusable placements left out, each with its ``rowid``."""
        usable, methods = self._usable_placement()
        return self._rows(
            f"SELECT rowid, {_SPEEDTEST_ROW} FROM speedtests WHERE rowid > ? "
            "AND rowid <= ? "
            f"AND placed_at >= ?{usable} ORDER BY rowid",
            [after, until, to_storage(since), *methods],
        )

    def speedtests_between(
        self, start: datetime, end: datetime, school: str | None = None
    ) -> list[dict[str, Any]]:
        """Speed tests placed in ``[start, end)`` of every active school (or only
        ``school``), in time order; unusable placements left out."""
        scope, params = self._school_scope(school)
        usable, methods = self._usable_placement()
        return self._rows(
            f"SELECT {_SPEEDTEST_ROW} FROM speedtests WHERE {scope} "
            "AND placed_at >= ? "
            f"AND placed_at < ?{usable} ORDER BY placed_at, device, run, seq",
            [*params, to_storage(start), to_storage(end), *methods],
        )

    def inventory_facts(self, school: str | None = None) -> dict[str, dict[str, Any]]:
        """Per device of every active school (or only ``school``): the inventory
        fields the figures read, as bare section data ``{section: {field: value}}``.

        Read from ``device_facts`` (kept with each inventory), never from the
        inventories' JSON.
        """
        scope, params = self._school_scope(school, column="d.school")
        sql = (
            "SELECT f.device, f.facts FROM device_facts f "
            f"JOIN devices d ON d.id = f.device WHERE {scope}"
        )
        return _facts_by_device(self._tuples(sql, params))

    def inventory_facts_of(self, devices: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``inventory_facts`` of the given devices (whatever their school)."""
        facts: dict[str, dict[str, Any]] = {}
        for start in range(0, len(devices), 500):
            chunk = list(devices[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            sql = f"SELECT device, facts FROM device_facts WHERE device IN ({marks})"
            facts |= _facts_by_device(self._tuples(sql, chunk))
        return facts

    def device_count(self) -> int:
        """How many devices the database holds (of any school)."""
        return self._tuples("SELECT COUNT(*) FROM devices")[0][0]

    def _json_text(self, column: str, path: str) -> str:
        """SQL giving the text at the dotted ``path`` of the JSON text ``column``."""
        if not self.postgres:
            return f"json_extract({column}, '$.{path}')"
        return f"({pg.json_of(column)} #>> '{{{path.replace('.', ',')}}}')"

    def asset_event_counts_between(
        self, start: datetime, end: datetime
    ) -> dict[tuple[str, str], int]:
        """Asset events per (school, kind) recorded in ``[start, end)``."""
        rows = self._rows(
            "SELECT school, kind, COUNT(*) AS n FROM asset_events "
            "WHERE at >= ? AND at < ? GROUP BY school, kind",
            [to_storage(start), to_storage(end)],
        )
        return {(row["school"], row["kind"]): row["n"] for row in rows}

    def _school_scope(
        self, school: str | None, column: str = "school"
    ) -> tuple[str, list[Any]]:
        if school is not None:
            return f"{column} = ?", [school]
        return f"{column} IN (SELECT code FROM schools WHERE active = 1)", []

    def _usable_placement(self) -> tuple[str, list[str]]:
        """SQL keeping rows whose placement method is usable (rows stored before
        methods were recorded, with none, are kept)."""
        methods = sorted(USABLE_METHODS)
        marks = ", ".join("?" for _ in methods)
        return (
            f" AND ({PLACEMENT_METHOD} IS NULL OR {PLACEMENT_METHOD} IN ({marks}))",
            methods,
        )

    # Asset events ---------------------------------------------------------------------

    def add_asset_event(
        self,
        device_id: str,
        school: str,
        kind: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> None:
        with self.transaction():
            self._write(
                "INSERT INTO asset_events (device, school, kind, detail, at) "
                "VALUES (?, ?, ?, ?, ?)",
                [device_id, school, kind, _json(detail), to_storage(at)],
            )
            self._write(ASSET_EVENT_COUNT_BUMP, [school, kind])

    def speedtest_state(self, school: str) -> dict[str, Any] | None:
        """A school's speed-test slot state row: school, version, state (JSON text)."""
        return self._one("SELECT * FROM speedtest_state WHERE school = ?", [school])

    def compare_and_set_speedtest_state(
        self, school: str, expected_version: int, new_version: int, state: str
    ) -> bool:
        """Store ``state`` only if the stored version is still ``expected_version``.

        Version 0 means "no row yet". True when this call wrote the row.
        """
        if expected_version == 0:
            sql = (
                "INSERT INTO speedtest_state (school, version, state) VALUES (?, ?, ?) "
                "ON CONFLICT (school) DO NOTHING"
            )
            return self._write(sql, [school, new_version, state]) == 1
        sql = (
            "UPDATE speedtest_state SET version = ?, state = ? "
            "WHERE school = ? AND version = ?"
        )
        return self._write(sql, [new_version, state, school, expected_version]) == 1

    def asset_events(self, device_id: str) -> list[dict[str, Any]]:
        """Asset events of a device, oldest first."""
        return self._rows(
            "SELECT * FROM asset_events WHERE device = ? ORDER BY at, id", [device_id]
        )

    def asset_event_counts(self) -> dict[tuple[str, str], int]:
        """Number of asset events per (school, kind), as counted when recorded."""
        rows = self._tuples("SELECT school, kind, value FROM asset_event_counts")
        return {(school, kind): value for school, kind, value in rows}

    # Counters -------------------------------------------------------------------------

    def bump_counters(
        self, increments: Iterable[tuple[str, dict[str, str], int]]
    ) -> None:
        """Add to the collector's own counters (name, labels, amount)."""
        params = [[name, _json(labels), amount] for name, labels, amount in increments]
        if not params:
            return
        with self.transaction():
            self._execute_many(
                "INSERT INTO counters (name, labels, value) VALUES (?, ?, ?) "
                "ON CONFLICT (name, labels) DO UPDATE "
                "SET value = counters.value + excluded.value",
                params,
            )

    def counters(self) -> list[dict[str, Any]]:
        """Every counter: name, labels (dict), value."""
        return self._rows("SELECT * FROM counters ORDER BY name, labels")

    # Retention (see "Retention" above MIGRATIONS) -----------------------------------

    def _probe_run_verdicts(
        self, start: datetime, end: datetime | None, school: str | None
    ) -> list[tuple[Any, ...]]:
        """Rolled-up runs read back as cycle rows ``(school, device, verdict_at,
        reached)`` within ``[start, end)``."""
        scope, params = self._school_scope(school)
        until = "" if end is None else " AND first_at < ?"
        params += [to_storage(start)] + ([] if end is None else [to_storage(end)])
        rows = self._tuples(
            "SELECT school, device, first_at, last_at, reached, coverage_seconds "
            f"FROM probe_runs WHERE {scope} AND last_at >= ?{until}",
            params,
        )
        return [
            (code, device, to_storage(at), reached)
            for code, device, first, last, reached, coverage in rows
            for at in run_points(
                from_storage(first), from_storage(last), coverage, start, end
            )
        ]

    def retention_schools(self) -> list[str]:
        """Every school code ever registered (samples keep their school's code)."""
        return [row[0] for row in self._tuples("SELECT code FROM schools")]

    def newest_probe_sample(self) -> int:
        """The rowid of the newest stored probe sample (0 when none)."""
        return self._tuples(NEWEST_PROBE_SAMPLE)[0][0] or 0

    def delete_probe_samples(
        self, school: str, before: datetime, below: int, limit: int
    ) -> int:
        """Delete up to ``limit`` samples of ``school`` placed before ``before``
        with a rowid below ``below``, in one short transaction; return how many."""
        return self._write(
            PRUNE_PROBE_SAMPLES, [school, to_storage(before), below, limit]
        )

    def old_probe_cycles(
        self, school: str, before: datetime, limit: int
    ) -> list[tuple[Any, ...]]:
        """Up to ``limit`` probe cycles of ``school`` judged before ``before``, in
        time order: rows ``(device, cycle_key, verdict_at, reached)``."""
        return self._tuples(
            "SELECT device, cycle_key, verdict_at, reached FROM probe_cycles "
            "WHERE school = ? AND verdict_at < ? ORDER BY verdict_at LIMIT ?",
            [school, to_storage(before), limit],
        )

    def latest_probe_run(self, device: str) -> dict[str, Any] | None:
        """The device's run that ends last (None when it has none)."""
        return self._one(
            "SELECT * FROM probe_runs WHERE device = ? "
            "ORDER BY last_at DESC, id DESC LIMIT 1",
            [device],
        )

    def save_probe_runs(
        self,
        runs: Sequence[dict[str, Any]],
        cycles: Sequence[tuple[str, str]],
    ) -> None:
        """Write runs (those with an ``id`` are extended, the others added) and
        delete the probe cycles ``(device, cycle_key)`` they now hold."""
        with self.transaction():
            for run in runs:
                values = [to_storage(run["last_at"]), run["cycles"]]
                if run.get("id") is not None:
                    self._write(
                        "UPDATE probe_runs SET last_at = ?, cycles = ? WHERE id = ?",
                        [*values, run["id"]],
                    )
                    continue
                self._write(
                    "INSERT INTO probe_runs (last_at, cycles, device, school, "
                    "first_at, reached, coverage_seconds) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        *values,
                        run["device"],
                        run["school"],
                        to_storage(run["first_at"]),
                        int(run["reached"]),
                        run["coverage_seconds"],
                    ],
                )
            for device, cycle_key in cycles:
                self._write(
                    "DELETE FROM probe_cycles WHERE device = ? AND cycle_key = ?",
                    [device, cycle_key],
                )

    # For ingest: credentials, identities, parts of a transaction ------------------

    def credential_owner(self, credential_hash: str) -> dict[str, Any] | None:
        """What checking a credential needs of its device: id, school,
        credential_hash, credential_revoked_at (not the whole row)."""
        return self._one(
            "SELECT id, school, credential_hash, credential_revoked_at FROM devices "
            "WHERE credential_hash = ?",
            [credential_hash],
        )

    def device_identity_texts(self) -> list[tuple[Any, ...]]:
        """Every device's identity as raw rows ``(id, school, identity JSON text,
        conflict_reported)`` by id, for a caller that keeps what it parsed by text;
        ``conflict_reported`` is 1 once an identity_conflict event names the
        device."""
        return self._tuples(
            "SELECT d.id, d.school, d.identity, CASE WHEN EXISTS (SELECT 1 FROM "
            "asset_events e WHERE e.device = d.id AND e.kind = 'identity_conflict') "
            "THEN 1 ELSE 0 END AS conflict_reported FROM devices d ORDER BY d.id"
        )

    @contextmanager
    def savepoint(self) -> Iterator[Storage]:
        """A part of this thread's write transaction that is undone alone when it
        raises; the transaction goes on with the other parts.

        Raises TransactionLost (from the part's error) when the database ended
        the whole transaction instead (SQLite does so on some I/O errors).
        """
        if self._writer != threading.get_ident():
            raise StorageError("a savepoint needs a write transaction on this thread")
        self.db.execute("SAVEPOINT part")
        try:
            yield self
        except BaseException as error:
            try:
                self.db.execute("ROLLBACK TO part")
                self.db.execute("RELEASE part")
            except (sqlite3.Error, psycopg.Error) as lost:
                raise TransactionLost(f"the transaction was ended: {lost}") from error
            raise
        self.db.execute("RELEASE part")


# Encoding ---------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _encode_value(name: str, value: Any) -> Any:
    if value is None or type(value) in _PLAIN and name not in JSON_COLUMNS:
        return value
    if isinstance(value, datetime):
        return to_storage(value)
    if name in JSON_COLUMNS and value is not None:
        return _json(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _encoded_rows(
    columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[list[Any]]:
    """``_encode_value`` of every column of every row, with each column's encoder
    chosen once for all rows (samples are written by the thousand)."""
    encoders = [
        (name, _encode_json if name in JSON_COLUMNS else _encode_scalar)
        for name in columns
    ]
    return [[encode(row.get(name)) for name, encode in encoders] for row in rows]


def _encode_json(value: Any) -> Any:
    return None if value is None else _json(value)


def _encode_scalar(value: Any) -> Any:
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, datetime):
        return to_storage(value)
    return int(value) if isinstance(value, bool) else value


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    return {name: _encode_value(name, value) for name, value in row.items()}


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    return {name: _decode_value(name, value) for name, value in row.items()}


def _decode_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in JSON_COLUMNS:
        return json.loads(value)
    if name in BOOL_COLUMNS:
        return bool(value)
    if name.endswith("_at") or name in TIME_COLUMNS:
        return from_storage(value)
    return value


def facts_json(sections: dict[str, Any]) -> str:
    """The ``device_facts.facts`` text of an inventory's merged ``sections``."""
    values = []
    for section, name in INVENTORY_FACTS:
        envelope = sections.get(section)
        data = envelope.get("data") if isinstance(envelope, dict) else None
        values.append(data.get(name) if isinstance(data, dict) else None)
    return _json(values)


def _facts_by_device(rows: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    return {device: _facts_sections(json.loads(values)) for device, values in rows}


def _facts_sections(values: list[Any]) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    for (section, name), value in zip(INVENTORY_FACTS, values, strict=True):
        if value is not None:
            sections.setdefault(section, {})[name] = value
    return sections
