"""The database: pragmas, migrations, idempotent inserts, counters; on SQLite and,
where a test takes ``db_target``, on PostgreSQL too."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from schoolmon.server.pg import redact
from schoolmon.server.storage import (
    SCHEMA_VERSION,
    Storage,
    StorageError,
    connect,
    migrate,
    schema_version,
)

from tests.support.databases import query, table_names

pytestmark = pytest.mark.databases("sqlite", "postgresql")


def test_new_sqlite_database_is_durable_wal(db_path: Path):
    """WAL, synchronous FULL, a busy timeout, foreign keys (SQLite's pragmas)."""
    storage = Storage(db_path)
    pragma = {
        name: storage.db.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
    }
    storage.close()

    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,
        "busy_timeout": 10000,
        "foreign_keys": 1,
    }


def test_new_database_is_at_the_latest_schema(storage):
    """A new database has every table, at the latest schema version."""
    assert (schema_version(storage.db), table_names(storage)) == (
        SCHEMA_VERSION,
        [
            "asset_event_counts",
            "asset_events",
            "counters",
            "device_facts",
            "devices",
            "enrollment_tokens",
            "inventories",
            "inventory_snapshots",
            "probe_cycles",
            "probe_runs",
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


def test_database_from_a_newer_collector_is_refused(db_target: str):
    """A schema newer than this code is an error, not a silent downgrade."""
    db = connect(db_target)
    migrate(db)
    db.execute(f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION + 1})")
    db.close()

    with pytest.raises(StorageError) as error:
        Storage(db_target)

    assert str(error.value) == (
        f"database {db_target!r}: database schema version {SCHEMA_VERSION + 1} is "
        f"newer than this collector's ({SCHEMA_VERSION}); upgrade schoolmon"
    )


def test_unreachable_postgresql_is_one_line_without_the_password():
    """A server that does not answer: one line naming the URL, password hidden."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(StorageError) as error:
        Storage(f"postgresql://schoolmon:s3cret@127.0.0.1:{port}/schoolmon")

    assert str(error.value) == (
        f"database 'postgresql://schoolmon:***@127.0.0.1:{port}/schoolmon': "
        f'connection failed: connection to server at "127.0.0.1", port {port} '
        "failed: Connection refused"
    )


def test_unknown_url_scheme_is_refused_clearly():
    """Only SQLite paths and postgresql:// URLs are databases; the message says so."""
    with pytest.raises(StorageError) as error:
        Storage("mysql://schoolmon@localhost/schoolmon")

    assert str(error.value) == (
        "database 'mysql://schoolmon@localhost/schoolmon': unknown URL scheme; give "
        "a SQLite file path or a postgresql:// URL"
    )


def test_failed_transaction_leaves_nothing_behind(registered, clock):
    """An exception inside a transaction rolls every write of it back."""
    with pytest.raises(RuntimeError), registered.transaction():
        registered.add_enrollment_token("hash-1", "C01", "lab", clock())
        raise RuntimeError("stop")

    assert registered.enrollment_token("hash-1") is None


def test_committed_write_is_seen_by_another_connection(registered, clock, db_target):
    """What a write committed is on disk for any other reader at once."""
    registered.add_enrollment_token("hash-2", "C02", "office", clock())

    other = connect(db_target)
    row = other.execute("SELECT hash, school, role FROM enrollment_tokens").fetchall()
    other.close()

    assert row == [("hash-2", "C02", "office")]


def test_counters_add_up_and_survive_reopening(registered, db_target):
    """Counters are stored sums, kept when the database is opened again."""
    registered.bump_counters([("reports_received", {"result": "accepted"}, 2)])
    registered.bump_counters([("reports_received", {"result": "accepted"}, 3)])
    registered.close()

    reopened = Storage(db_target)

    assert reopened.counters() == [
        {"name": "reports_received", "labels": {"result": "accepted"}, "value": 5}
    ]
    reopened.close()


def test_two_storages_bumping_at_once_lose_no_increment(storage, db_target):
    """Two Storage objects on one database, each bumping from its own threads, add
    up to every increment: their write transactions take turns."""
    other = Storage(db_target)
    increments = [("reports_received", {"result": "accepted"}, 1)]

    def bump(target: Storage) -> None:
        for _ in range(100):
            target.bump_counters(increments)
            with target.transaction():
                target.bump_counters(increments)

    threads = [
        threading.Thread(target=bump, args=(target,))
        for target in (storage, other, storage, other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()

    assert storage.counters() == [
        {"name": "reports_received", "labels": {"result": "accepted"}, "value": 800}
    ]


def test_inventory_facts_and_os_names_are_read_from_the_stored_json(storage, clock):
    """The figures' inventory fields come out as stored (nested lists, JSON nulls,
    Vietnamese text, a NUL character elsewhere in the inventory); missing fields
    are left out."""
    storage.import_schools(
        [{"code": "C01", "name": "A", "level": "x", "commune": "y"}], clock()
    )
    sections = {
        "os": {"data": {"name": "Windows 10 Pro – Tiếng Việt", "build": None}},
        "memory": {"data": {"installed_bytes": 8589934592, "usable_bytes": 8.5e9}},
        "disks": {"data": {"physical": [{"model": "KINGSTON", "bytes": 256}]}},
        "software": {"data": {"programs": [{"name": "odd\u0000name"}]}},
    }
    for device in ("d_1", "d_2"):
        storage.add_device(
            {
                "id": device,
                "school": "C01",
                "role": "lab",
                "credential_hash": device,
                "enrolled_at": clock(),
            }
        )
    storage.save_inventory("d_1", "h1", sections, clock(), snapshot=False)

    assert (
        storage.inventory_facts("C01"),
        storage.inventory_facts_of(["d_1", "d_2"]),
        storage.device_os_names(),
    ) == (
        {
            "d_1": {
                "os": {"name": "Windows 10 Pro – Tiếng Việt"},
                "memory": {"installed_bytes": 8589934592, "usable_bytes": 8.5e9},
                "disks": {"physical": [{"model": "KINGSTON", "bytes": 256}]},
            }
        },
        {
            "d_1": {
                "os": {"name": "Windows 10 Pro – Tiếng Việt"},
                "memory": {"installed_bytes": 8589934592, "usable_bytes": 8.5e9},
                "disks": {"physical": [{"model": "KINGSTON", "bytes": 256}]},
            }
        },
        {"d_1": "Windows 10 Pro – Tiếng Việt"},
    )


def test_nul_in_text_is_stored_where_the_backend_can_hold_it(storage, clock):
    """SQLite keeps a NUL character in text; PostgreSQL cannot hold one and stores
    U+FFFD in its place instead of refusing the row."""
    storage.import_schools(
        [{"code": "C01", "name": "A", "level": "x", "commune": "y"}], clock()
    )
    storage.add_device(
        {
            "id": "d_1",
            "school": "C01",
            "role": "lab",
            "hostname": "LAB\x00PC",
            "credential_hash": "h",
            "enrolled_at": clock(),
        }
    )

    expected = "LAB\ufffdPC" if storage.postgres else "LAB\x00PC"
    assert storage.device("d_1")["hostname"] == expected


def test_read_connections_of_ended_threads_are_closed(registered):
    """A server's worker threads come and go: only the latest ended thread's read
    connection stays open, not one per thread that ever read."""
    for _ in range(5):
        thread = threading.Thread(target=registered.schools)
        thread.start()
        thread.join()

    assert len(registered._readers) == 1


def test_database_urls_are_named_without_their_password():
    """Messages and logs name a PostgreSQL URL with its password hidden, wherever
    the URL carries it."""
    assert [
        redact(url)
        for url in (
            "postgresql://schoolmon:s3cret@db.district.lan:5432/schoolmon",
            "postgres://db.district.lan/schoolmon?sslmode=require&password=s3cret",
            "postgresql://schoolmon@db.district.lan/schoolmon",
        )
    ] == [
        "postgresql://schoolmon:***@db.district.lan:5432/schoolmon",
        "postgres://db.district.lan/schoolmon?sslmode=require&password=***",
        "postgresql://schoolmon@db.district.lan/schoolmon",
    ]


def stored_facts(storage: Storage) -> list[tuple[str, str, list]]:
    """The device_facts rows, their facts decoded (the JSON text's spacing is the
    backend's own)."""
    rows = query(storage, "SELECT device, hash, facts FROM device_facts")
    return [(device, hash_, json.loads(facts)) for device, hash_, facts in rows]


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


def test_migration_8_fills_device_facts_as_saving_an_inventory_does(
    registered, db_target, clock
):
    """A database at schema 7 (before device_facts) gets each stored inventory's
    facts, the same ones ``save_inventory`` keeps, and the figures read them
    without the inventory."""
    sections = _inventory_sections()
    registered.add_device(
        {"id": "d_1", "school": "C01", "role": "lab", "credential_hash": "h"}
        | {"enrolled_at": clock()}
    )
    registered.save_inventory("d_1", "abc", sections, clock(), snapshot=True)
    saved = stored_facts(registered)
    registered.db.execute("DROP TABLE asset_event_counts")
    registered.db.execute("DROP TABLE device_facts")
    registered.db.execute("DELETE FROM schema_version WHERE version >= 8")
    registered.close()

    migrated = Storage(db_target)

    assert (
        schema_version(migrated.db),
        stored_facts(migrated),
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


def test_asset_event_counts_follow_recorded_events_and_migration_9_fills_them(
    registered, db_target, clock
):
    """Each recorded event counts once for its school and kind; a database at
    schema 8 gets the counts of the events it already holds."""
    for device in ("d_1", "d_2"):
        registered.add_device(
            {"id": device, "school": "C01", "role": "lab", "credential_hash": device}
            | {"enrolled_at": clock()}
        )
    events = [("d_1", "C01", "component_removed"), ("d_2", "C01", "component_removed")]
    events += [("d_1", "C02", "moved"), ("d_1", "C01", "component_added")]
    for device, school, kind in events:
        registered.add_asset_event(device, school, kind, {"part": "ram"}, clock())
    counted = registered.asset_event_counts()
    registered.db.execute("DROP TABLE asset_event_counts")
    registered.db.execute("DELETE FROM schema_version WHERE version = 9")
    registered.close()

    migrated = Storage(db_target)

    assert (
        counted,
        migrated.asset_event_counts(),
        query(migrated, "SELECT kind FROM asset_events ORDER BY id"),
    ) == (
        {
            ("C01", "component_removed"): 2,
            ("C02", "moved"): 1,
            ("C01", "component_added"): 1,
        },
        counted,
        [(kind,) for _, _, kind in events],
    )
    migrated.close()
