"""Database bytes per device per day after a simulated month of 5-minute reports.

    python bench/storage_growth.py [--devices 2] [--days 30] [--retention-days 8]
                                   [--no-retention] [--quick]

The collector app (``create_app`` with an injected clock, SQLite file) receives,
through its real HTTP handlers in-process, what a school's PCs send on an
accelerated clock: a report every 5 minutes around the clock (the worst case: a PC
never switched off), each with one probe cycle of 5 samples and the agent's health;
once a day an inventory with one changed section and the software list sent as
``unchanged`` (the agent's daily resend); a full inventory when the collector asks
for it; a speed test whenever the collector's answer asks for one. The size of the
database (after a WAL checkpoint) and of each table is taken every week.

The collector's retention job (server/retention.py) runs every simulated hour, as
its thread does: raw probe samples are kept ``--retention-days`` (the collector's
``retention.probe_samples_days``) and older probe cycles are rolled up into runs.
Growth is judged once the raw window is full (before that the database fills it);
``--no-retention`` measures the collector without the job. ``--quick`` runs one
device for 3 days with a 1-day uptime window and 2-day retention, so the job
deletes.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import BenchError, command_line, figure, say
from fastapi.testclient import TestClient
from schoolmon.agent.inventory.normalize import canonical_hash
from schoolmon.server import simulate
from schoolmon.server.api import create_app
from schoolmon.server.auth import hash_secret
from schoolmon.server.config import Config, config_from_mapping
from schoolmon.server.retention import prune
from schoolmon.server.storage import Storage

STEP = timedelta(minutes=5)
TARGET = 20 * 1024
AGENT_VERSION = "0.1.0"
START = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)  # a Monday
COUNTED = ("probe_samples", "probe_cycles", "probe_runs", "inventory_snapshots")


@dataclass
class Snapshot:
    """The database after ``day`` simulated days."""

    day: int
    reports: int
    file_bytes: int
    tables: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


class Clock:
    """The accelerated clock the app reads."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.devices, args.days, args.every = 1, 3, 1
        args.window_days, args.retention_days = 1, 2
    with tempfile.TemporaryDirectory(prefix="schoolmon-growth-") as tmp:
        try:
            snapshots, passes = simulate_month(args, Path(tmp) / "collector.sqlite3")
        except BenchError as error:
            say(f"storage growth benchmark failed: {error}")
            return 1
    print_figures(args, snapshots, passes)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every", type=int, default=7, help="days between sizes")
    parser.add_argument("--retention-days", type=int, default=8)
    parser.add_argument("--window-days", type=int, default=7, help="uptime window")
    parser.add_argument(
        "--no-retention", action="store_true", help="never run the retention job"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    return parser


def simulate_month(
    args: argparse.Namespace, db: Path
) -> tuple[list[Snapshot], list[float]]:
    """Run the accelerated month: a snapshot of the sizes every ``--every`` days, and
    the seconds each pass of the retention job took."""
    storage = Storage(db)
    storage.db.execute("PRAGMA synchronous = OFF")  # sizes, not durability, here
    clock = Clock(START)
    config = _config(args)
    app = create_app(config, storage, clock, random.Random(args.seed))
    school = simulate.load_registry(simulate.DEFAULT_REGISTRY)[1]
    token = _register(storage, school)
    options = simulate.SimOptions(
        seed=args.seed, pcs_per_school=args.devices, skewed_clock_share=0.0
    )
    district = simulate.build_district([school], options, START)
    snapshots, passes = [], []
    # One client for the whole run: its event loop reuses its worker threads (the
    # storage keeps one read connection per thread). The job's own thread is off
    # (its period is wall time): the loop below runs it on the simulated hour.
    try:
        with TestClient(app) as client:
            sender = Sender(client, district, token, args.seed)
            sender.enroll(clock)
            for day in range(1, args.days + 1):
                passes += _simulate_day(args, storage, config, clock, sender, day)
                if day % args.every == 0 or day == args.days:
                    snapshots.append(_snapshot(storage, day, sender.reports))
    finally:
        storage.close()
    return snapshots, passes


def _simulate_day(
    args: argparse.Namespace,
    storage: Storage,
    config: Config,
    clock: Clock,
    sender: Sender,
    day: int,
) -> list[float]:
    """One day of reports, the job once an hour; the seconds of each pass."""
    passes = []
    for at in _day(day):
        clock.now = at + timedelta(seconds=1)
        sender.cycle(at)
        if at.minute == 55 and not args.no_retention:
            started = time.perf_counter()
            prune(storage, config, clock.now)
            passes.append(time.perf_counter() - started)
    return passes


def _config(args: argparse.Namespace) -> Config:
    return config_from_mapping(
        {
            "policy": {"uptime_window_days": args.window_days},
            "retention": {
                "probe_samples_days": args.retention_days,
                "enabled": False,
            },
        },
        source="benchmark options",
    )


def _register(storage: Storage, school: simulate.School) -> str:
    storage.import_schools(
        [
            {
                "code": school.code,
                "name": school.name,
                "level": school.level,
                "commune": "Bench",
            }
        ],
        START,
    )
    token = "bench-growth-token"
    storage.add_enrollment_token(hash_secret(token), school.code, "lab", START)
    return token


def _day(day: int) -> Iterator[datetime]:
    at = START + timedelta(days=day - 1)
    end = at + timedelta(days=1)
    while at < end:
        yield at
        at += STEP


class Sender:
    """The school's PCs, talking to the app as their agents would."""

    def __init__(
        self, client: TestClient, district: simulate.District, token: str, seed: int
    ) -> None:
        self.client, self.token = client, token
        self.sim = district.schools[0]
        self.rng = random.Random(seed)
        self.credentials: dict[str, str] = {}
        self.inventories: dict[str, dict[str, Any]] = {}
        self.wants: dict[str, set[str]] = {}
        self.reports = 0

    def enroll(self, clock: Clock) -> None:
        for pc in self.sim.pcs:
            body = simulate.enroll_body(pc, self.token, AGENT_VERSION)
            answer = self._answer(self.client.post("/api/v1/enroll", json=body))
            self.credentials[pc.key] = answer["credential"]
            self.wants[pc.key] = {"full_inventory"}

    def cycle(self, at: datetime) -> None:
        for pc in self.sim.pcs:
            self._report(pc, at)

    def _report(self, pc: Any, at: datetime) -> None:
        pc.cycle += 1
        moment = simulate.Moment(
            at, pc.boot_time, pc.boot_id, pc.run, pc.cycle, True, False
        )
        wants = self.wants[pc.key]
        tests = []
        if "speedtest" in wants:
            tests.append(
                simulate.speed_test(
                    pc, self.rng, moment, self.sim.link_mbps, AGENT_VERSION
                )
            )
        document = simulate.report_document(
            pc,
            at,
            inventory=self._inventory(pc, at, wants),
            probes=simulate.cycle_probes(pc, self.rng, moment),
            speedtests=tests,
            agent_version=AGENT_VERSION,
        )
        wants.clear()
        headers = {
            "Authorization": f"Bearer {self.credentials[pc.key]}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        body = simulate.encode_body(document)
        answer = self._answer(
            self.client.post("/api/v1/reports", content=body, headers=headers)
        )
        self.reports += 1
        for instruction in answer.get("instructions") or []:
            kind = instruction.get("kind")
            if kind == "run_speedtest":
                wants.add("speedtest")
            elif kind == "send_full_inventory":
                wants.add("full_inventory")
            elif kind == "replace_credential":
                self.credentials[pc.key] = instruction["credential"]

    def _inventory(
        self, pc: Any, at: datetime, wants: set[str]
    ) -> dict[str, Any] | None:
        """Full when asked; else once a day (at the PC's first report after 06:00
        UTC) with the disks section changed and the software list unchanged."""
        if "full_inventory" in wants:
            document = simulate.inventory_document(pc.sections, at)
            self.inventories[pc.key] = document
            return document
        if not (at.hour == 6 and at.minute == 0):
            return None
        stored = self.inventories[pc.key]["sections"]
        volumes = stored["disks"]["data"].get("volumes") or []
        for volume in volumes[:1]:
            if volume.get("free_bytes"):
                used = self.rng.randint(10**7, 10**9)
                full = volume["free_bytes"] <= used  # then someone cleans it up
                volume["free_bytes"] -= volume["free_bytes"] // 2 if full else used
        stored["disks"]["hash"] = canonical_hash(stored["disks"]["data"])
        sent = {name: dict(envelope) for name, envelope in stored.items()}
        if "software" in sent:
            sent["software"] |= {"data": None, "unchanged": True}
        hashes = {name: envelope["hash"] for name, envelope in stored.items()}
        return {"hash": canonical_hash(hashes), "sections": sent}

    @staticmethod
    def _answer(response: Any) -> dict[str, Any]:
        if response.status_code not in (200, 201):
            raise BenchError(
                f"{response.request.url.path} answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        return response.json()


def _snapshot(storage: Storage, day: int, reports: int) -> Snapshot:
    storage.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn = sqlite3.connect(storage.path)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        rows = conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"
        ).fetchall()
        owner = dict(rows)
        tables: dict[str, int] = {}
        for name, used in conn.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
        ):
            table = owner.get(name, name)
            tables[table] = tables.get(table, 0) + used
        counts = {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in COUNTED
        }
    finally:
        conn.close()
    return Snapshot(day, reports, (pages - free) * size, tables, counts)


# Output -------------------------------------------------------------------------------


def print_figures(
    args: argparse.Namespace, snapshots: list[Snapshot], passes: list[float]
) -> None:
    """Size and growth per device per day, snapshot by snapshot; growth by table
    once the raw window is full; the size held."""
    devices, full = args.devices, _window_full(args)
    job = (
        "no retention job"
        if args.no_retention
        else f"retention job hourly, raw probe samples kept {args.retention_days} days"
    )
    say(f"storage growth benchmark: {command_line()}")
    say(
        f"  {devices} devices, a report every 5 minutes for {args.days} days "
        f"({snapshots[-1].reports:,} reports); {job}"
    )
    previous = Snapshot(0, 0, 0)
    for snap in snapshots:
        growth = _growth(previous, snap, devices)
        steady = previous.day >= full
        say(
            figure(
                f"day {snap.day}: {snap.file_bytes / 1e6:.1f} MB, "
                f"{snap.file_bytes / devices / 1024:.0f} KiB/dev; growth since "
                f"day {previous.day}",
                f"{growth / 1024:.1f} KiB/dev/day",
                "< 20 KiB/dev/day" if steady else "- (raw window filling)",
                growth < TARGET if steady else None,
            )
        )
        previous = snap
    _steady_lines(args, snapshots, full)
    if passes:
        longest, mean = max(passes), sum(passes) / len(passes)
        say(
            figure(
                f"retention pass, {len(passes)} passes: longest / mean",
                f"{longest * 1e3:.0f} / {mean * 1e3:.1f} ms",
                "-",
                None,
            )
        )


def _window_full(args: argparse.Namespace) -> int:
    """The first day from which growth is judged: the raw window is full (without
    the job, at once: nothing would ever bound it)."""
    return 0 if args.no_retention else args.retention_days


def _growth(first: Snapshot, last: Snapshot, devices: int) -> float:
    return (last.file_bytes - first.file_bytes) / devices / (last.day - first.day)


def _steady_lines(
    args: argparse.Namespace, snapshots: list[Snapshot], full: int
) -> None:
    steady = [snap for snap in snapshots if snap.day >= full]
    first, last = (
        (steady[0], steady[-1])
        if len(steady) > 1
        else (Snapshot(0, 0, 0), snapshots[-1])
    )
    devices, days = args.devices, last.day - first.day
    say(f"  growth by table, day {first.day} to day {last.day}:")
    per_day = {
        table: (size - first.tables.get(table, 0)) / devices / days
        for table, size in last.tables.items()
    }
    for table, value in sorted(per_day.items(), key=lambda item: -item[1])[:6]:
        say(f"    {table:<28} {value / 1024:8.1f} KiB/dev/day")
    rows = ", ".join(f"{table} {count:,}" for table, count in last.rows.items())
    say(f"  rows on day {last.day}: {rows}")
    if len(steady) > 1:
        growth = _growth(first, last, devices)
        say(
            figure(
                f"steady growth, day {first.day} to day {last.day}",
                f"{growth / 1024:.1f} KiB/dev/day",
                "< 20 KiB/dev/day",
                growth < TARGET,
            )
        )
    say(
        figure(
            f"database held on day {last.day}",
            f"{last.file_bytes / devices / 1024:.0f} KiB/dev",
            "-",
            None,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
