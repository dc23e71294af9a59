"""The database: pragmas, migrations, idempotent inserts, counters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from schoolmon.server.storage import (
    SCHEMA_VERSION,
    Storage,
    StorageError,
    connect,
    migrate,
    schema_version,
)


def test_new_database_is_durable_wal_at_the_latest_schema(storage):
    """WAL, synchronous FULL, a busy timeout, foreign keys, latest schema version."""
    pragma = {
        name: storage.db.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
    }

    assert (pragma, schema_version(storage.db), sorted(storage.db.table_names())) == (
        {
            "journal_mode": "wal",
            "synchronous": 2,
            "busy_timeout": 10000,
            "foreign_keys": 1,
        },
        SCHEMA_VERSION,
        [
            "asset_events",
            "counters",
            "device_facts",
            "devices",
            "enrollment_tokens",
            "inventories",
            "inventory_snapshots",
            "probe_cycles",
            "probe_samples",
            "schema_version",
            "schools",
            "speedtest_state",
            "speedtests",
        ],
    )


def test_database_one_version_behind_is_migrated_keeping_its_data(db_path: Path):
    """A file at version 2 gains the later columns and tables, rows intact."""
    old = connect(db_path)
    migrate(old, target=2)
    old.execute(
        "INSERT INTO schools (code, name, level, commune, active, updated_at) "
        "VALUES ('C01', 'Trường THCS Cẩm Phúc', 'lower_secondary', 'Cẩm Phúc', 1, "
        "'2026-12-01T02:00:00.000000Z')"
    )
    old_facts = (
        schema_version(old),
        "speedtest_state" in old.table_names(),
        "method" in old["probe_samples"].columns_dict,
    )
    old.close()

    storage = Storage(db_path)

    assert (
        old_facts,
        schema_version(storage.db),
        [(s["code"], s["name"], s["timezone"]) for s in storage.schools()],
        "speedtest_state" in storage.db.table_names(),
        "method" in storage.db["probe_samples"].columns_dict,
    ) == (
        (2, False, False),
        SCHEMA_VERSION,
        [("C01", "Trường THCS Cẩm Phúc", None)],
        True,
        True,
    )
    storage.close()


def test_database_from_a_newer_collector_is_refused(db_path: Path):
    """A schema newer than this code is an error, not a silent downgrade."""
    db = connect(db_path)
    migrate(db)
    db.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION + 1])
    db.close()

    with pytest.raises(StorageError) as error:
        Storage(db_path)

    assert str(error.value) == (
        f"database {str(db_path)!r}: database schema version {SCHEMA_VERSION + 1} is "
        f"newer than this collector's ({SCHEMA_VERSION}); upgrade schoolmon"
    )


def test_postgresql_url_is_refused_clearly():
    """The PostgreSQL backend is not in this version; the message says so."""
    with pytest.raises(StorageError) as error:
        Storage("postgresql://schoolmon@localhost/schoolmon")

    assert str(error.value) == (
        "database 'postgresql://schoolmon@localhost/schoolmon': the PostgreSQL "
        "backend is not available in this version; give a SQLite file path"
    )


def test_failed_transaction_leaves_nothing_behind(registered, clock):
    """An exception inside a transaction rolls every write of it back."""
    with pytest.raises(RuntimeError), registered.transaction():
        registered.add_enrollment_token("hash-1", "C01", "lab", clock())
        raise RuntimeError("stop")

    assert registered.enrollment_token("hash-1") is None


def test_committed_write_is_seen_by_another_connection(registered, clock, db_path):
    """What a write committed is on disk for any other reader at once."""
    registered.add_enrollment_token("hash-2", "C02", "office", clock())

    other = sqlite3.connect(db_path)
    row = other.execute("SELECT hash, school, role FROM enrollment_tokens").fetchall()
    other.close()

    assert row == [("hash-2", "C02", "office")]


def test_counters_add_up_and_survive_reopening(registered, db_path):
    """Counters are stored sums, kept when the database is opened again."""
    registered.bump_counters([("reports_received", {"result": "accepted"}, 2)])
    registered.bump_counters([("reports_received", {"result": "accepted"}, 3)])
    registered.close()

    reopened = Storage(db_path)

    assert reopened.counters() == [
        {"name": "reports_received", "labels": {"result": "accepted"}, "value": 5}
    ]
    reopened.close()


def _inventory_sections() -> dict:
    """A stored inventory: the fact fields, others beside them, a failed section."""
    return {
        "system": {"status": "ok", "data": {"hostname": "LAB-01", "bios_date": "2019"}},
        "cpu": {"status": "ok", "data": {"logical_cores": 4, "model": "i5"}},
        "memory": {"status": "ok", "data": {"installed_bytes": 8 * 2**30}},
        "disks": {
            "status": "ok",
            "data": {"physical": [{"index": 0, "size_bytes": 256 * 10**9}]},
        },
        "os": {"status": "error", "data": None},
        "software": {"status": "ok", "data": {"packages": [{"name": "x"}] * 50}},
    }


def test_migration_7_fills_device_facts_as_saving_an_inventory_does(
    registered, db_path, clock
):
    """A database at schema 6 gets each stored inventory's facts, the same ones
    ``save_inventory`` keeps, and the figures read them without the inventory."""
    sections = _inventory_sections()
    registered.add_device(
        {"id": "d_1", "school": "C01", "role": "lab", "credential_hash": "h"}
        | {"enrolled_at": clock()}
    )
    registered.save_inventory("d_1", "abc", sections, clock(), snapshot=True)
    saved = registered.db.execute("SELECT * FROM device_facts").fetchall()
    registered.db.execute("DROP TABLE device_facts")
    registered.db.execute("DELETE FROM schema_version WHERE version = 7")
    registered.close()

    migrated = Storage(db_path)

    assert (
        schema_version(migrated.db),
        migrated.db.execute("SELECT * FROM device_facts").fetchall(),
        migrated.inventory_facts(),
    ) == (
        SCHEMA_VERSION,
        saved,
        {
            "d_1": {
                "system": {"bios_date": "2019"},
                "cpu": {"logical_cores": 4},
                "memory": {"installed_bytes": 8 * 2**30},
                "disks": {"physical": [{"index": 0, "size_bytes": 256 * 10**9}]},
            }
        },
    )
    migrated.close()
