"""The retention job: old raw samples deleted, old probe cycles rolled up into runs
that give the same figures, a database whose row counts stay bounded."""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from schoolmon.server.api import create_app
from schoolmon.server.cli import main
from schoolmon.server.clock import from_storage, to_storage
from schoolmon.server.config import ConfigError, config_from_mapping
from schoolmon.server.figures import computed_figures, district_report
from schoolmon.server.retention import plan_runs, prune
from schoolmon.server.storage import Storage, run_points

from tests.support.databases import query

pytestmark = pytest.mark.databases("sqlite", "postgresql")

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday, 07:00 in Hanoi
CYCLE = 300
COVERAGE = 450.0
# Device, school, scopes it probes, and when it is on and reaching the Internet.
DEVICES = (
    ("d_always", "C02", ("internet", "collector")),
    ("d_day", "C02", ("internet", "collector")),
    ("d_collector", "C02", ("collector",)),
    ("d_school", "C01", ("internet", "collector")),
)


def on(device: str, day: int, k: int) -> bool:
    """Whether the device runs cycle ``k`` (of 288) of ``day``."""
    hour = k * CYCLE / 3600
    if device == "d_day":
        return hour < 10
    if device == "d_school":
        return 0 <= hour < 9 and day % 7 < 6
    if device == "d_collector":
        return not 5 <= hour < 5.4  # a 24-minute gap: longer than the coverage
    return True


def reaches(device: str, day: int, k: int, rng: random.Random) -> bool:
    hour, chance = k * CYCLE / 3600, rng.random()
    if device != "d_school" and day % 7 in (1, 3) and 3 <= hour < 4.2:
        return False  # the school's link is down on a school morning
    if device == "d_school":
        return day % 7 != 2  # down all Wednesday
    return chance > 0.03  # now and then one failed cycle


def day_samples(day: int) -> list[dict]:
    """One day of samples of every device; the same week after week."""
    rows = []
    for index, (device, school, scopes) in enumerate(DEVICES):
        rng = random.Random(index * 10 + day % 7)
        for k in range(288):
            jitter = rng.uniform(-25, 25)
            ok = reaches(device, day, k, rng)
            if not on(device, day, k):
                continue
            at = START + timedelta(days=day, seconds=k * CYCLE + jitter)
            for j, scope in enumerate(scopes):
                placed = at + timedelta(seconds=j)
                rows.append(
                    {
                        "device": device,
                        "school": school,
                        "run": f"r{day}",
                        "seq": k * 2 + j,
                        "cycle": k,
                        "wall_time": placed,
                        "placed_at": placed,
                        "received_at": placed,
                        "scope": scope,
                        "kind": "https",
                        "ok": ok or scope == "collector" and len(scopes) == 2,
                        "method": "monotonic",
                    }
                )
    return rows


def month(storage: Storage, days: int, config=None, prune_daily: bool = False):
    """Store ``days`` days of samples (pruning after each day when asked)."""
    for device, school, _ in DEVICES:
        storage.add_device(
            {
                "id": device,
                "school": school,
                "role": "lab",
                "credential_hash": device,
                "enrolled_at": START,
            }
        )
    for day in range(days):
        storage.insert_probe_samples(day_samples(day))
        if prune_daily:
            prune(storage, config, START + timedelta(days=day + 1))


def counts(storage: Storage) -> dict[str, int]:
    tables = ("probe_samples", "probe_cycles", "probe_runs")
    return {
        t: storage.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables
    }


@pytest.fixture
def settings():
    return config_from_mapping({})


def test_a_past_month_reads_the_same_after_the_roll_up(registered, settings):
    """The province report and every school's uptime figures (timeline, outages,
    in-session up/down seconds) of past periods, weekly and a 28-day month, are
    the same before and after old cycles were rolled up and samples deleted; only
    the instant of the latest verdict inside a rolled-up run may move, by less
    than one coverage."""
    month(registered, 40)
    monthly = config_from_mapping({"policy": {"uptime_window_days": 28}})
    instants = [START + timedelta(days=d, hours=3, minutes=7) for d in range(8, 33, 3)]
    instants += [START + timedelta(days=d) for d in (14, 21, 28)]
    cases = [(settings, now) for now in instants] + [(monthly, instants[-1])]

    def figures():
        return [
            (
                district_report(registered, config, now),
                {
                    c: f.uptime
                    for c, f in computed_figures(registered, config, now).items()
                },
            )
            for config, now in cases
        ]

    before = figures()
    old = query(
        registered,
        "SELECT COUNT(*) FROM probe_cycles WHERE verdict_at < ?",
        [to_storage(START + timedelta(days=32))],
    )[0][0]
    result = prune(registered, settings, START + timedelta(days=40))
    after = figures()

    assert (result.cycles_rolled_up, result.samples_deleted > 0) == (old, True)
    assert [r for r, _ in after] == [r for r, _ in before]
    assert [_without_latest(u) for _, u in after] == [
        _without_latest(u) for _, u in before
    ]
    assert all(u["C01"].outages and u["C02"].down_seconds for _, u in before)
    for (_, old), (_, new) in zip(before, after, strict=True):
        for code in old:
            moved = _latest(new[code]) - _latest(old[code])
            assert abs(moved) < timedelta(seconds=COVERAGE)


def _without_latest(uptimes: dict) -> dict:
    return {code: replace(u, latest_verdict_at=None) for code, u in uptimes.items()}


def _latest(uptime) -> datetime:
    return uptime.latest_verdict_at or START


def test_a_month_of_daily_pruning_leaves_bounded_rows(registered, settings):
    """Pruned every day, the database holds the same raw samples and cycles week
    after week (the last 8 days), runs grow by the same few rows each week (the
    data repeats weekly), and every cycle stored is either kept or in a run."""
    month(registered, 20, settings, prune_daily=True)
    weekly = [counts(registered)]
    for day in range(20, 41):
        registered.insert_probe_samples(day_samples(day))
        prune(registered, settings, START + timedelta(days=day + 1))
        if (day + 1 - 20) % 7 == 0:
            weekly.append(counts(registered))
    rolled = registered.db.execute("SELECT SUM(cycles) FROM probe_runs").fetchone()[0]
    stored = sum(
        len({(r["device"], r["cycle"]) for r in day_samples(d)}) for d in range(41)
    )
    cutoff = START + timedelta(days=33)
    raw = sum(
        1 for d in range(32, 41) for r in day_samples(d) if r["placed_at"] >= cutoff
    )

    assert [(w["probe_samples"], w["probe_cycles"]) for w in weekly] == [
        (raw, weekly[-1]["probe_cycles"])
    ] * 4
    growth = [b["probe_runs"] - a["probe_runs"] for a, b in itertools.pairwise(weekly)]
    assert growth == [growth[0]] * 3
    assert growth[0] * 10 < weekly[-1]["probe_cycles"]  # > 10 cycles a run
    assert rolled + weekly[-1]["probe_cycles"] == stored


def test_runs_read_back_as_verdicts_whose_spans_meet():
    """A run's points are spaced one second under its coverage, end on its last
    cycle, and are clipped to the asked period."""
    first = START
    last = START + timedelta(seconds=2000)

    assert run_points(first, last, 450.0, START, None) == [
        START + timedelta(seconds=s) for s in (0, 449, 898, 1347, 1796, 2000)
    ]
    assert run_points(first, last, 450.0, START + timedelta(seconds=900), None) == [
        START + timedelta(seconds=s) for s in (1347, 1796, 2000)
    ]
    assert run_points(first, last, 450.0, START, START + timedelta(seconds=900)) == [
        START + timedelta(seconds=s) for s in (0, 449, 898)
    ]


def test_plan_runs_extends_splits_and_keeps_late_cycles_apart():
    """Same verdict within the coverage extends the stored run; a flip or a gap
    starts a run; a cycle older than the stored run's end is a run of its own."""
    stored = {
        "id": 5,
        "device": "d",
        "school": "C02",
        "first_at": START,
        "last_at": START + timedelta(seconds=600),
        "reached": 1,
        "cycles": 3,
        "coverage_seconds": COVERAGE,
    }

    def row(seconds: int, reached: int):
        return (
            "d",
            f"k{seconds}",
            to_storage(START + timedelta(seconds=seconds)),
            reached,
        )

    rows = [row(100, 0), row(900, 1), row(1200, 0), row(1500, 0), row(2500, 0)]
    runs = plan_runs("C02", rows, {"d": stored}, COVERAGE)

    assert [
        (
            r["id"],
            from_storage(to_storage(r["first_at"])),
            r["last_at"],
            r["reached"],
            r["cycles"],
        )
        for r in runs
    ] == [
        (
            None,
            START + timedelta(seconds=100),
            START + timedelta(seconds=100),
            False,
            1,
        ),
        (5, START, START + timedelta(seconds=900), True, 4),
        (
            None,
            START + timedelta(seconds=1200),
            START + timedelta(seconds=1500),
            False,
            2,
        ),
        (
            None,
            START + timedelta(seconds=2500),
            START + timedelta(seconds=2500),
            False,
            1,
        ),
    ]


def test_retention_shorter_than_the_uptime_window_is_refused():
    """The error names both settings, the bad value and what would do."""
    with pytest.raises(ConfigError) as error:
        config_from_mapping({"retention": {"probe_samples_days": 7}}, source="c.toml")

    assert str(error.value) == (
        "c.toml: retention.probe_samples_days = 7 must be above "
        "policy.uptime_window_days = 7: the live figures read the window's probe "
        "cycles unrolled (give 8 or more)"
    )


def test_prune_command_prints_what_it_deleted(db_path: Path):
    """`schoolmon-server prune --at` deletes the old samples and says so."""
    storage = Storage(db_path)
    storage.import_schools(
        [
            {"code": code, "name": code, "level": "primary", "commune": "y"}
            for code in ("C01", "C02")
        ],
        START,
    )
    month(storage, 10)
    storage.close()

    done = CliRunner().invoke(
        main, ["prune", "--db", str(db_path), "--at", "2026-11-12T00:00:00Z"]
    )

    cutoff = START + timedelta(days=2)  # 8 days before --at
    old = [r for d in range(3) for r in day_samples(d) if r["placed_at"] < cutoff]
    samples, cycles = len(old), sum(1 for r in old if r["seq"] % 2 == 0)
    assert (done.exit_code, done.output.split(" probe samples")[0]) == (
        0,
        f"before 2026-11-04T00:00:00Z: {samples}",
    )
    assert f"{cycles} probe cycles rolled up" in done.output


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_runs_the_job_in_a_thread_while_it_serves(
    registered, clock, enabled
):
    """The app's lifespan starts the retention thread (unless turned off) and stops
    it on shutdown."""
    config = config_from_mapping({"retention": {"enabled": enabled}})

    with TestClient(create_app(config, registered, clock)):
        serving = _retention_threads()
    stopped = _retention_threads()

    assert (serving, stopped) == (int(enabled), 0)


def _retention_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "schoolmon-retention")
