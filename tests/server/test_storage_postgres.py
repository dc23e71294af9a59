"""The PostgreSQL schema: its migrations, upgrades that keep data, collectors that
start at once, and tables that hold what SQLite's hold."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from schoolmon.server.storage import (
    PG_MIGRATIONS,
    SCHEMA_VERSION,
    Storage,
    connect,
    migrate,
    schema_version,
)

pytestmark = pytest.mark.postgres

DAY = datetime(2026, 12, 1, tzinfo=UTC)
AT = "2026-12-01T02:00:{:02d}.000000Z"
SCHOOL = (
    "INSERT INTO schools (code, name, level, commune, active, updated_at) "
    "VALUES ('C02', 'Trường THCS Cẩm Phúc', 'lower_secondary', 'Cẩm Phúc', 1, %s)"
)
DEVICE = (
    "INSERT INTO devices (id, school, role, credential_hash, enrolled_at) "
    "VALUES ('d_1', 'C02', 'lab', 'h', %s)"
)
SAMPLE = (
    "INSERT INTO probe_samples (device, school, run, seq, cycle, placed_at, "
    "received_at, scope, kind, ok, method) "
    "VALUES ('d_1', 'C02', 'r', %s, %s, %s, %s, %s, 'https', %s, %s)"
)
COLUMNS = {
    "sqlite": (
        "SELECT name, CASE WHEN type LIKE 'TEXT%' THEN 'TEXT' ELSE type END, "
        'CASE WHEN "notnull" OR pk > 0 THEN 1 ELSE 0 END '
        "FROM pragma_table_xinfo('{table}')"
    ),
    "postgresql": (
        "SELECT column_name, CASE data_type WHEN 'text' THEN 'TEXT' "
        "WHEN 'double precision' THEN 'REAL' WHEN 'bigint' THEN 'INTEGER' "
        "WHEN 'integer' THEN 'INTEGER' ELSE data_type END, "
        "CASE WHEN is_nullable = 'NO' THEN 1 ELSE 0 END "
        "FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = '{table}' AND column_name <> 'rowid' "
        "ORDER BY ordinal_position"
    ),
}


def versions(db) -> list[int]:
    rows = db.execute("SELECT version FROM schema_version ORDER BY version")
    return [row[0] for row in rows.fetchall()]


def test_every_migration_has_its_postgresql_variant():
    """A migration added to MIGRATIONS needs its DDL in PG_MIGRATIONS too."""
    assert len(PG_MIGRATIONS) == SCHEMA_VERSION


def test_new_database_migrates_to_the_latest_version_once(postgres_url: str):
    """A fresh database reaches SCHEMA_VERSION; migrating again changes nothing."""
    db = connect(postgres_url)
    first = migrate(db)
    again = migrate(db)

    assert (first, again, versions(db)) == (
        SCHEMA_VERSION,
        SCHEMA_VERSION,
        list(range(1, SCHEMA_VERSION + 1)),
    )
    db.close()


def test_database_at_version_4_is_upgraded_keeping_rows_and_judging_cycles(
    postgres_url: str,
):
    """Rows stored at schema 4 survive the upgrade, and the stored samples' cycles
    get the verdicts SQLite's migration gives them (unusable placements left out)."""
    old = connect(postgres_url)
    migrate(old, target=4)
    old.execute(SCHOOL, [AT.format(0)])
    old.execute(DEVICE, [AT.format(0)])
    for seq, cycle, second, scope, ok, method in [
        (1, 1, 0, "collector", 1, "monotonic"),
        (2, 1, 1, "internet", 0, "monotonic"),
        (3, 2, 30, "collector", 1, "monotonic"),
        (4, 2, 31, "internet", 1, None),
        (5, 3, 50, "internet", 1, "unplaced"),
    ]:
        at = AT.format(second)
        old.execute(SAMPLE, [seq, cycle, at, at, scope, ok, method])
    at_four = schema_version(old)
    old.close()

    storage = Storage(postgres_url)
    cycles = storage.db.execute(
        "SELECT device, cycle_key, school, first_at, has_internet, internet_ok_at, "
        "collector_ok_at, verdict_at, reached FROM probe_cycles ORDER BY cycle_key"
    ).fetchall()

    assert (
        at_four,
        schema_version(storage.db),
        [(s["code"], s["name"], s["timezone"]) for s in storage.schools()],
        storage.device("d_1")["last_seq"],
        len(storage.probe_samples("C02", DAY, DAY + timedelta(days=1))),
        cycles,
    ) == (
        4,
        SCHEMA_VERSION,
        [("C02", "Trường THCS Cẩm Phúc", None)],
        None,
        5,
        [
            ("d_1", "r/1", "C02", AT.format(0), 1, None, AT.format(0), AT.format(0), 0),
            (
                "d_1",
                "r/2",
                "C02",
                AT.format(30),
                1,
                AT.format(31),
                AT.format(30),
                AT.format(31),
                1,
            ),
        ],
    )
    storage.close()


def test_collectors_starting_at_once_migrate_once(postgres_url: str):
    """Two Storage objects opening a fresh database at the same moment both start,
    and each migration is recorded once."""
    opened: list[Storage] = []
    ready = threading.Barrier(2)

    def open_storage() -> None:
        ready.wait()
        opened.append(Storage(postgres_url))

    threads = [threading.Thread(target=open_storage) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorded = versions(opened[0].db)
    for storage in opened:
        storage.close()

    assert (len(opened), recorded) == (2, list(range(1, SCHEMA_VERSION + 1)))


def test_tables_have_the_columns_and_not_nulls_of_sqlite(
    postgres_url: str, db_path: Path
):
    """Every table has SQLite's columns, in SQLite's order, of the matching types
    (BIGINT for INTEGER, DOUBLE PRECISION for REAL) and with the same NOT NULLs (a
    key's columns count as NOT NULL; PostgreSQL's ``rowid`` columns aside)."""
    backends = {"sqlite": Storage(db_path), "postgresql": Storage(postgres_url)}
    tables = [
        row[0]
        for row in backends["sqlite"]
        .db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetchall()
    ]
    columns = {
        name: {
            table: storage.db.execute(COLUMNS[name].format(table=table)).fetchall()
            for table in tables
        }
        for name, storage in backends.items()
    }
    for storage in backends.values():
        storage.close()

    assert columns["postgresql"] == columns["sqlite"]


def end_other_connections(url: str) -> int:
    """End every other connection to the database of ``url``, as a database
    restart does; return how many were ended."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_storage_connects_again_when_the_database_ended_its_connections(
    postgres_url, caplog
):
    """After the database ends the collector's connections (a restart), the next
    write, snapshot and read each connect again and nothing stored is lost."""
    storage = Storage(postgres_url)
    accepted = [("reports_received", {"result": "accepted"}, 1)]
    storage.bump_counters(accepted)
    with storage.snapshot():
        before = storage.counters()

    ended = [end_other_connections(postgres_url)]
    storage.bump_counters(accepted)
    ended.append(end_other_connections(postgres_url))
    with storage.snapshot():
        in_snapshot = storage.counters()
    ended.append(end_other_connections(postgres_url))
    after = storage.counters()
    storage.close()

    assert (before[0]["value"], in_snapshot[0]["value"], after[0]["value"]) == (
        1,
        2,
        2,
    )
    # The writer and the reader, then the writer alone (the reader was not used in
    # between), then the reader alone.
    assert ended == [2, 1, 1]
    assert [r.message.split(": ")[1] for r in caplog.records] == [
        "connection lost (terminating connection due to administrator command); "
        "connecting again"
    ] * 3
