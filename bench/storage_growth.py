"""Database bytes per device per day after a simulated month of 5-minute reports.

    python bench/storage_growth.py [--devices 2] [--days 30] [--quick]

The collector app (``create_app`` with an injected clock, SQLite file) receives,
through its real HTTP handlers in-process, what a school's PCs send on an
accelerated clock: a report every 5 minutes around the clock (the worst case: a PC
never switched off), each with one probe cycle of 5 samples and the agent's health;
once a day an inventory with one changed section and the software list sent as
``unchanged`` (the agent's daily resend); a full inventory when the collector asks
for it; a speed test whenever the collector's answer asks for one. The size of the
database (after a WAL checkpoint) and of each table is taken every week.

The collector has no retention or roll-up today (server/storage.py): the figures
say what the month grows to, and what keeping raw probe samples only for
``--retention-days`` with an hourly roll-up per device would leave.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
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
from schoolmon.server.config import load_config
from schoolmon.server.storage import Storage

STEP = timedelta(minutes=5)
TARGET = 20 * 1024
AGENT_VERSION = "0.1.0"
# One roll-up row per device and hour: device, school, hour, 3 counters, 2 timings,
# with its primary-key index; about 40 bytes of values plus row and index overhead.
ROLLUP_ROW_BYTES = 90
START = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)  # a Monday


@dataclass
class Snapshot:
    """The database after ``day`` simulated days."""

    day: int
    reports: int
    file_bytes: int
    tables: dict[str, int] = field(default_factory=dict)


class Clock:
    """The accelerated clock the app reads."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.devices, args.days, args.every = 1, 2, 1
    with tempfile.TemporaryDirectory(prefix="schoolmon-growth-") as tmp:
        try:
            snapshots = simulate_month(args, Path(tmp) / "collector.sqlite3")
        except BenchError as error:
            say(f"storage growth benchmark failed: {error}")
            return 1
    print_figures(args, snapshots)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every", type=int, default=7, help="days between sizes")
    parser.add_argument("--retention-days", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    return parser


def simulate_month(args: argparse.Namespace, db: Path) -> list[Snapshot]:
    """Run the accelerated month; a snapshot of the sizes every ``--every`` days."""
    storage = Storage(db)
    storage.db.execute("PRAGMA synchronous = OFF")  # sizes, not durability, here
    clock = Clock(START)
    app = create_app(load_config(None), storage, clock, random.Random(args.seed))
    school = simulate.load_registry(simulate.DEFAULT_REGISTRY)[1]
    token = _register(storage, school)
    options = simulate.SimOptions(
        seed=args.seed, pcs_per_school=args.devices, skewed_clock_share=0.0
    )
    district = simulate.build_district([school], options, START)
    sender = Sender(TestClient(app), district, token, args.seed)
    snapshots = []
    try:
        sender.enroll(clock)
        for day in range(1, args.days + 1):
            for at in _day(day):
                clock.now = at + timedelta(seconds=1)
                sender.cycle(at)
            if day % args.every == 0 or day == args.days:
                snapshots.append(_snapshot(storage, day, sender.reports))
    finally:
        storage.close()
    return snapshots


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
                volume["free_bytes"] -= self.rng.randint(10**7, 10**9)
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
    finally:
        conn.close()
    return Snapshot(day, reports, (pages - free) * size, tables)


# Output -------------------------------------------------------------------------------


def print_figures(args: argparse.Namespace, snapshots: list[Snapshot]) -> None:
    """Growth per device per day, week by week, per table, and with retention."""
    devices = args.devices
    say(f"storage growth benchmark: {command_line()}")
    say(
        f"  {devices} devices, a report every 5 minutes for {args.days} days "
        f"({snapshots[-1].reports:,} reports); no retention or roll-up in the collector"
    )
    previous = Snapshot(0, 0, 0)
    for snap in snapshots:
        days = snap.day - previous.day
        growth = (snap.file_bytes - previous.file_bytes) / devices / days
        say(
            figure(
                f"day {snap.day}: {snap.file_bytes / 1e6:.1f} MB; growth since "
                f"day {previous.day}",
                f"{growth / 1024:.1f} KiB/dev/day",
                "< 20 KiB/dev/day",
                growth < TARGET,
            )
        )
        previous = snap
    first, last = (
        (snapshots[0], snapshots[-1])
        if len(snapshots) > 1
        else (
            Snapshot(0, 0, 0),
            snapshots[-1],
        )
    )
    days = last.day - first.day
    say(f"  growth by table, day {first.day} to day {last.day}:")
    per_day = {
        table: (size - first.tables.get(table, 0)) / devices / days
        for table, size in last.tables.items()
    }
    for table, value in sorted(per_day.items(), key=lambda item: -item[1])[:6]:
        say(f"    {table:<28} {value / 1024:8.1f} KiB/dev/day")
    _retention_lines(args, per_day)


def _retention_lines(args: argparse.Namespace, per_day: dict[str, float]) -> None:
    probes = per_day.get("probe_samples", 0.0)
    others = sum(per_day.values()) - probes
    rollup = 24 * ROLLUP_ROW_BYTES
    kept = probes * args.retention_days
    say(
        figure(
            f"with {args.retention_days}-day raw probes + hourly roll-up: growth",
            f"{(others + rollup) / 1024:.1f} KiB/dev/day",
            "< 20 KiB/dev/day",
            others + rollup < TARGET,
        )
    )
    say(
        figure(
            "  raw probe window held (constant)",
            f"{kept / 1024:.0f} KiB/dev",
            "-",
            None,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
