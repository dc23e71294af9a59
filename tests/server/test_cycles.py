"""The per-cycle verdict table (``probe_cycles``) and the figures kept between
scrapes: late samples, mixed scopes, duplicates, unusable placements, the migration
that fills the table from stored samples, and cached figures equal to fresh ones."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from schoolmon.server.clock import to_storage
from schoolmon.server.figures import computed_figures, school_figures
from schoolmon.server.storage import SCHEMA_VERSION, Storage, schema_version

pytestmark = pytest.mark.databases("sqlite", "postgresql")

SCHEMA_4 = (
    "DROP TABLE asset_event_counts",
    "DROP TABLE device_facts",
    "DROP TABLE probe_runs",
    "ALTER TABLE speedtests DROP COLUMN message",
    "DROP INDEX inventories_content",
    "DROP TRIGGER probe_cycles_follow_samples",
    "DROP TABLE probe_cycles",
    "DELETE FROM schema_version WHERE version >= 5",
)
COLUMNS = (
    "device, cycle_key, school, first_at, has_internet, internet_ok_at, "
    "collector_ok_at, verdict_at, reached"
)


def enrolled(storage, clock, device_id: str, school: str = "C02") -> None:
    storage.add_device(
        {
            "id": device_id,
            "school": school,
            "role": "lab",
            "credential_hash": device_id,
            "enrolled_at": clock(),
        }
    )


def sample(clock, seq: int, seconds: float, scope: str, kind: str, ok: bool, **more):
    """A stored probe sample of device d_1 (C02), placed ``seconds`` after now."""
    at = clock() + timedelta(seconds=seconds)
    row = {
        "device": "d_1",
        "school": "C02",
        "run": "r",
        "seq": seq,
        "cycle": 1,
        "wall_time": at,
        "placed_at": at,
        "received_at": clock(),
        "scope": scope,
        "kind": kind,
        "ok": ok,
        "method": "monotonic",
    }
    return row | more


def cycles(storage) -> list[tuple]:
    return storage.db.execute(
        f"SELECT {COLUMNS} FROM probe_cycles ORDER BY device, cycle_key"
    ).fetchall()


def t(clock, seconds: float) -> str:
    return to_storage(clock() + timedelta(seconds=seconds))


def test_cycles_of_mixed_scopes_get_the_design_verdict(registered, clock):
    """Internet-scope https decides; collector-scope https only without internet
    samples; a cycle without an ok qualifying sample is judged at its start."""
    enrolled(registered, clock, "d_1")
    rows = [
        sample(clock, 1, 0, "collector", "https", True, cycle=1),
        sample(clock, 2, 1, "internet", "https", False, cycle=1),
        sample(clock, 3, 300, "collector", "tcp", True, cycle=2),
        sample(clock, 4, 301, "collector", "https", True, cycle=2),
        sample(clock, 5, 600, "internet", "dns", True, cycle=3),
        sample(clock, 6, 601, "internet", "https", True, cycle=3),
        sample(clock, 7, 900, "internet", "https", True, cycle=None),
    ]

    registered.insert_probe_samples(rows)

    assert cycles(registered) == [
        ("d_1", "r/1", "C02", t(clock, 0), 1, None, t(clock, 0), t(clock, 0), 0),
        ("d_1", "r/2", "C02", t(clock, 300), 0, None, t(clock, 301), t(clock, 301), 1),
        ("d_1", "r/3", "C02", t(clock, 600), 1, t(clock, 601), None, t(clock, 601), 1),
        ("d_1", "r/s7", "C02", t(clock, 900), 1, t(clock, 900), None, t(clock, 900), 1),
    ]


def test_late_samples_of_a_stored_cycle_change_its_verdict(registered, clock):
    """A cycle judged by its collector https sample is judged again when an
    internet-scope sample of it arrives in a later report, and an earlier ok sample
    moves its verdict instant."""
    enrolled(registered, clock, "d_1")
    registered.insert_probe_samples([sample(clock, 2, 10, "collector", "https", True)])
    first = cycles(registered)

    registered.insert_probe_samples([sample(clock, 3, 20, "internet", "https", False)])
    failed = cycles(registered)
    registered.insert_probe_samples([sample(clock, 1, 5, "internet", "https", True)])

    assert (first, failed, cycles(registered)) == (
        [("d_1", "r/1", "C02", t(clock, 10), 0, None, t(clock, 10), t(clock, 10), 1)],
        [("d_1", "r/1", "C02", t(clock, 10), 1, None, t(clock, 10), t(clock, 10), 0)],
        [
            (
                "d_1",
                "r/1",
                "C02",
                t(clock, 5),
                1,
                t(clock, 5),
                t(clock, 10),
                t(clock, 5),
                1,
            )
        ],
    )


def test_duplicates_and_unplaced_samples_leave_cycles_alone(registered, clock):
    """A sample stored before (same device, run, seq) placed elsewhere by a later
    report, and a sample whose placement is unusable, change no cycle."""
    enrolled(registered, clock, "d_1")
    registered.insert_probe_samples([sample(clock, 1, 0, "internet", "https", False)])

    stored = registered.insert_probe_samples(
        [
            sample(clock, 1, -60, "internet", "https", True),
            sample(clock, 2, 3, "internet", "https", True, method="unplaced"),
        ]
    )

    assert (stored, cycles(registered)) == (
        1,
        [("d_1", "r/1", "C02", t(clock, 0), 1, None, None, t(clock, 0), 0)],
    )


# SQLite only: SCHEMA_4 takes the file back with SQLite's DDL; the same upgrade on
# PostgreSQL is test_storage_postgres.py's.
def test_migration_fills_the_table_from_stored_samples(db_path: Path, clock):
    """A database at schema 4 gets the verdict of every stored cycle, the same rows
    the trigger gives when the samples arrive afterwards."""
    rows = [
        sample(clock, 1, 0, "collector", "https", True, cycle=1),
        sample(clock, 2, 1, "internet", "https", False, cycle=1),
        sample(clock, 3, 300, "collector", "https", True, cycle=2),
        sample(clock, 4, 301, "internet", "https", True, cycle=2, method=None),
        sample(clock, 5, 600, "internet", "https", True, cycle=3, method="unplaced"),
    ]
    at_four = Storage(db_path)
    for sql in SCHEMA_4:
        at_four.db.execute(sql)
    registered_before(at_four, clock)
    at_four.insert_probe_samples(rows)
    at_four.close()

    migrated = Storage(db_path)
    backfilled = (schema_version(migrated.db), cycles(migrated))
    migrated.db.execute("DELETE FROM probe_cycles")
    migrated.db.execute("DELETE FROM probe_samples")
    migrated.insert_probe_samples(rows)

    assert (
        backfilled
        == (SCHEMA_VERSION, cycles(migrated))
        == (
            9,
            [
                (
                    "d_1",
                    "r/1",
                    "C02",
                    t(clock, 0),
                    1,
                    None,
                    t(clock, 0),
                    t(clock, 0),
                    0,
                ),
                (
                    "d_1",
                    "r/2",
                    "C02",
                    t(clock, 300),
                    1,
                    t(clock, 301),
                    t(clock, 300),
                    t(clock, 301),
                    1,
                ),
            ],
        )
    )
    migrated.close()


def registered_before(storage: Storage, clock) -> None:
    storage.import_schools(
        [{"code": "C02", "name": "THCS", "level": "lower_secondary", "commune": "X"}],
        clock(),
    )
    enrolled(storage, clock, "d_1")


# Figures kept between scrapes ---------------------------------------------------------


def district_day(storage, clock, rng: random.Random) -> list[list[dict]]:
    """Reports of three devices over a school day, in arrival order: mostly one
    cycle at a time, some failing, one device's morning uploaded late at noon, and
    one cycle completed by a sample in a later report."""
    reports: list[list[dict]] = []
    for device in ("d_1", "d_2", "d_3"):
        enrolled(storage, clock, device, school="C01" if device == "d_3" else "C02")
    start = clock() - timedelta(hours=2)
    for step in range(60):
        for n, device in enumerate(("d_1", "d_2", "d_3")):
            at = start + timedelta(minutes=5 * step, seconds=17 * n + rng.randint(0, 9))
            ok = rng.random() > 0.25
            report = [
                cycle_sample(device, step, 0, at, "internet", ok),
                cycle_sample(device, step, 1, at, "collector", True),
            ]
            if device == "d_2" and step < 24:
                reports.append([])  # the link is down: kept in the outbox
                continue
            reports.append(report)
        if step == 24:
            backlog = [
                cycle_sample("d_2", s, k, start + timedelta(minutes=5 * s), scope, True)
                for s in range(24)
                for k, scope in enumerate(("internet", "collector"))
            ]
            reports.append(backlog)
    reports.append(
        [cycle_sample("d_1", 40, 2, start + timedelta(minutes=200), "internet", True)]
    )
    return reports


def cycle_sample(device, cycle, k, at, scope, ok) -> dict:
    return {
        "device": device,
        "school": "C01" if device == "d_3" else "C02",
        "run": "r",
        "seq": cycle * 10 + k,
        "cycle": cycle,
        "wall_time": at + timedelta(seconds=k),
        "placed_at": at + timedelta(seconds=k),
        "received_at": at,
        "scope": scope,
        "kind": "https",
        "ok": ok,
        "method": "monotonic",
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_figures_kept_between_scrapes_equal_fresh_ones(registered, config, clock, seed):
    """Scraping after each report, as time passes (sessions start and end, devices
    go silent), gives the figures a fresh computation gives at the same instant."""
    rng = random.Random(seed)
    clock.set(clock().replace(hour=4))  # 11:00 local: the morning ends at 11:30
    reports = district_day(registered, clock, rng)
    start = clock() - timedelta(hours=2)
    differences = []

    for index, report in enumerate(reports):
        now = start + timedelta(minutes=5 * (index // 3), seconds=60 + index)
        if report:
            registered.insert_probe_samples(report)
            registered.update_device(report[0]["device"], last_seen_at=now)
        if index % 4 == 0 or index == len(reports) - 1:
            kept = school_figures(registered, config, now)
            fresh = computed_figures(registered, config, now)
            differences += [code for code in fresh if kept[code] != fresh[code]]

    later = [start + timedelta(days=days) for days in (2, 8)]
    assert (
        differences,
        [school_figures(registered, config, at) for at in later]
        == [computed_figures(registered, config, at) for at in later],
    ) == ([], True)
