"""``/metrics`` time and size for 60, 5,000 and 50,000 registered schools, and ingest
latency with and without scrapes running.

    python bench/scrape.py [--sizes 60,5000,50000] [--scrapes 3] [--quick]

Each database is built before the collector starts: the whole registry through
``Storage.import_schools``; the first 60 schools are the simulated district, whose
PCs enroll through the API and later send real reports; every other school gets
synthetic devices (``--devices`` each, ``--devices-large`` from 50,000 schools up),
each with a stored inventory made by the ingest code from a simulated PC (and its
``device_facts`` row, as ``Storage.save_inventory`` writes it) and the last
``--history-cycles`` 5-minute probe cycles (5 samples per cycle), written in bulk SQL.

The collector (``python -m schoolmon.server serve``) runs under ``taskset -c 0``;
scrapes come from this process on core 1. For the sizes in ``--ingest-sizes`` the
district sends reports at a fixed rate (open loop) for ``--ingest-seconds``, alone,
with a scrape every ``--scrape-every`` seconds, and while ``/metrics`` is scraped
back to back. The collector computes
its figures in the background (``metrics.refresh_seconds``) and a scrape serves the
latest: the first scrape after start waits for the first computation, and after the
collector stops this process times that computation (cold, then again over the
state it kept), which is what the refresher costs every ``refresh_seconds``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import _district
import httpx
from _common import (
    LOAD_CORE,
    SERVER_CORE,
    BenchError,
    Load,
    collector_argv,
    command_line,
    figure,
    free_port,
    percentile,
    pin_self,
    pinned,
    say,
    scratch_dir,
    server_process,
)
from schoolmon.server import simulate
from schoolmon.server.assets import merge_sections
from schoolmon.server.auth import hash_secret
from schoolmon.server.clock import to_storage, utcnow
from schoolmon.server.config import Config
from schoolmon.server.ingest import inventory_content_hash
from schoolmon.server.metrics import MetricsExporter
from schoolmon.server.schemas import Section
from schoolmon.server.storage import PROBE_COLUMNS, Storage, facts_json

logger = logging.getLogger(__name__)

TARGETS = {60: 0.050, 5_000: 0.5, 50_000: 3.0}
LARGE = 50_000
PROBE_PLAN = simulate.PROBE_PLAN  # (target, scope, kind) of one agent cycle


@dataclass
class SizeResult:
    """What one registry size measured."""

    schools: int
    devices: int
    probe_rows: int
    db_bytes: int
    build_seconds: float
    scrape_seconds: list[float] = field(default_factory=list)
    scrape_bytes: int = 0
    wire_bytes: int = 0
    series: int = 0
    ingest_alone: list[float] | None = None
    ingest_scraped: list[float] | None = None
    scrapes_during_ingest: int = 0
    ingest_paced: list[float] | None = None
    paced_scrapes: int = 0
    sim_devices: int = 0
    first_scrape: float = 0.0
    refresh_seconds: list[float] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.sizes, args.ingest_sizes, args.scrapes = [60], [60], 2
        args.devices, args.ingest_seconds, args.ingest_rate = 2, 3.0, 20.0
        args.sim_schools = 3
    logging.basicConfig(level=logging.WARNING)
    pin_self(LOAD_CORE)
    say(f"scrape benchmark: {command_line()}")
    try:
        results = [measure_size(args, size) for size in args.sizes]
    except BenchError as error:
        say(f"scrape benchmark failed: {error}")
        return 1
    print_figures(args, results)
    return 0


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=[60, 5_000, 50_000])
    parser.add_argument("--devices", type=int, default=20, help="per school")
    parser.add_argument(
        "--devices-large", type=int, default=4, help="per school from 50,000 schools"
    )
    parser.add_argument("--scrapes", type=int, default=3)
    parser.add_argument(
        "--history-cycles",
        type=int,
        default=3,
        help="5-minute probe cycles stored per synthetic device",
    )
    parser.add_argument("--ingest-sizes", type=_sizes, default=[60, 5_000])
    parser.add_argument("--ingest-rate", type=float, default=100.0, help="reports/s")
    parser.add_argument("--ingest-seconds", type=float, default=20.0)
    parser.add_argument(
        "--scrape-every",
        type=float,
        default=1.0,
        help="seconds between scrapes in the paced ingest phase",
    )
    parser.add_argument(
        "--sim-schools", type=int, default=60, help="schools of the simulated district"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    return parser


def measure_size(args: argparse.Namespace, size: int) -> SizeResult:
    """Build the database of ``size`` schools, then scrape it (and ingest).

    The simulated district enrolls before the synthetic devices exist: enrollment
    compares a new PC with every known device, which takes seconds per PC at
    100,000 devices (see bench/README.md).
    """
    with scratch_dir(f"scrape-{size}") as tmp:
        db, port = tmp / "collector.sqlite3", free_port()
        sim_schools = _district.district_schools(min(size, args.sim_schools))
        codes = [f"S{n:06d}" for n in range(size - len(sim_schools))]
        rows = [_synthetic_row(code, n) for n, code in enumerate(codes)]
        tokens = _district.register(db, sim_schools, utcnow(), rows)
        argv = pinned(collector_argv(db, port), SERVER_CORE)
        with server_process("enroll", argv, port, tmp) as server:
            prepared = _district_online(server.url, port, sim_schools, tokens, args)

        started = time.perf_counter()
        per_school = args.devices if size < LARGE else args.devices_large
        counts = add_synthetic(db, codes, per_school, args.history_cycles, args.seed)
        result = SizeResult(size, *counts, db.stat().st_size, 0.0)
        result.build_seconds = time.perf_counter() - started
        result.sim_devices = prepared.devices

        with server_process("collector", argv, port, tmp, timeout=300) as server:
            _scrape_series(server.url, args.scrapes, result)
            if size in args.ingest_sizes:
                _ingest_with_scrapes(server.url, port, prepared, args, result)
        _time_refresh(db, result)
        return result


def _district_online(
    url: str,
    port: int,
    sim_schools: list[simulate.School],
    tokens: dict[str, str],
    args: argparse.Namespace,
) -> _district.Prepared:
    """Enroll the simulated district and send its first cycle (full inventories)."""
    probe = _district.options_for(len(sim_schools), 1, args.seed)
    pcs = sum(
        1
        for _ in simulate.reporting_pcs(
            simulate.build_district(sim_schools, probe, utcnow())
        )
    )
    per_phase = int(args.ingest_rate * args.ingest_seconds)
    cycles = 1 + -(-3 * per_phase // pcs)
    options = _district.options_for(len(sim_schools), cycles, args.seed)
    district = simulate.build_district(sim_schools, options, utcnow())
    credentials = _district.enroll(url, district, tokens, options)
    prepared = _district.prepare(district, options, credentials, port, 64)
    warmup = Load(port, prepared.warmup, time_limit=300).run()
    if warmup.errors or set(warmup.statuses) - {200}:
        raise BenchError(f"warm-up: statuses {warmup.statuses} {warmup.errors[:2]}")
    return prepared


# Building the database ----------------------------------------------------------------


def add_synthetic(
    db: Path, codes: list[str], per_school: int, cycles: int, seed: int
) -> tuple[int, int]:
    """Synthetic devices of the schools ``codes``: rows written in bulk SQL."""
    now = utcnow()
    templates = _inventory_templates(seed, now)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a scratch build, not measured
        conn.execute("BEGIN")
        devices = _add_devices(conn, codes, per_school, templates, now)
        probes = _add_probes(conn, devices, cycles, now)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return len(devices), probes


def _synthetic_row(code: str, n: int) -> dict[str, Any]:
    level = ("preschool", "primary", "lower_secondary")[n % 3]
    return {
        "code": code,
        "name": f"Trường {level} {code}",
        "level": level,
        "commune": f"Xã {n % 900:03d}",
        "has_informatics": level != "preschool",
        "students": 200 + n % 600,
    }


def _inventory_templates(seed: int, now: datetime) -> list[tuple[str, str, str]]:
    """Stored inventories (hash, sections JSON, device facts JSON) of simulated
    PCs, via ingest and storage code."""
    school = simulate.synthetic_schools(["T0"], seed)
    options = simulate.SimOptions(seed=seed, pcs_per_school=20)
    district = simulate.build_district(school, options, now)
    templates = []
    for pc in district.pcs():
        document = simulate.inventory_document(pc.sections, now)
        received = {
            name: Section.model_validate(envelope).model_dump(
                mode="json", exclude={"unchanged"}
            )
            for name, envelope in document["sections"].items()
        }
        merged = merge_sections(None, received)
        templates.append((inventory_content_hash(merged), merged))
    return [(h, canonical_json(s), facts_json(s)) for h, s in templates]


def canonical_json(value: Any) -> str:
    """JSON as the storage writes it (sorted keys, compact)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _add_devices(
    conn: sqlite3.Connection,
    codes: list[str],
    per_school: int,
    templates: list[tuple[str, str, str]],
    now: datetime,
) -> list[tuple[str, str, str]]:
    rng = random.Random(5)
    enrolled = to_storage(now - timedelta(days=90))
    devices, device_rows, inventory_rows, fact_rows = [], [], [], []
    for code in codes:
        for index in range(per_school):
            device = f"d_{code}_{index:02d}"
            role = "office" if index == 0 else "lab"
            seen = to_storage(now - timedelta(seconds=rng.randint(0, 900)))
            device_rows.append(
                (
                    device,
                    code,
                    role,
                    f"PC{index:02d}-{code}",
                    "{}",
                    hash_secret(device),
                    enrolled,
                    seen,
                    rng.uniform(-3, 3),
                    "0.1.0",
                )
            )
            inventory_hash, sections, facts = templates[index % len(templates)]
            inventory_rows.append((device, inventory_hash, sections, seen))
            fact_rows.append((device, inventory_hash, facts))
            devices.append((device, code, f"{rng.getrandbits(32):08x}"))
    conn.executemany(
        "INSERT INTO devices (id, school, role, hostname, identity, credential_hash, "
        "enrolled_at, last_seen_at, last_skew_seconds, agent_version) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        device_rows,
    )
    conn.executemany(
        "INSERT INTO inventories (device, hash, sections, received_at) "
        "VALUES (?, ?, ?, ?)",
        inventory_rows,
    )
    conn.executemany(
        "INSERT INTO device_facts (device, hash, facts) VALUES (?, ?, ?)", fact_rows
    )
    return devices


def _add_probes(
    conn: sqlite3.Connection,
    devices: list[tuple[str, str, str]],
    cycles: int,
    now: datetime,
) -> int:
    """The last ``cycles`` 5-minute probe cycles of every synthetic device."""
    stamps = [to_storage(now - timedelta(minutes=5 * k)) for k in range(cycles, 0, -1)]
    sql = (
        f"INSERT INTO probe_samples ({', '.join(PROBE_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in PROBE_COLUMNS)})"
    )
    rows: list[list[Any]] = []
    for device, school, run in devices:
        for cycle, stamp in enumerate(stamps, start=1):
            for offset, (target, scope, kind) in enumerate(PROBE_PLAN):
                seq = cycle * len(PROBE_PLAN) + offset
                values = _probe_values(device, school, run, seq, cycle, stamp)
                values |= {"target": target, "scope": scope, "kind": kind}
                rows.append([values[name] for name in PROBE_COLUMNS])
        if len(rows) > 100_000:
            conn.executemany(sql, rows)
            rows.clear()
    conn.executemany(sql, rows)
    return len(devices) * len(stamps) * len(PROBE_PLAN)


def _probe_values(
    device: str, school: str, run: str, seq: int, cycle: int, stamp: str
) -> dict[str, Any]:
    return {
        "device": device,
        "school": school,
        "run": run,
        "seq": seq,
        "cycle": cycle,
        "boot_id": run,
        "wall_time": stamp,
        "monotonic": 1000.0 + seq,
        "placed_at": stamp,
        "received_at": stamp,
        "ok": 1,
        "duration_seconds": 0.02,
        "reason": None,
        "detail": '{"status_code":204}',
    }


# Measuring ----------------------------------------------------------------------------


def _scrape(client: httpx.Client, url: str) -> tuple[float, bytes, int]:
    """One scrape as Prometheus makes it (accepting gzip): seconds until the body
    is read and decoded, the body, and the bytes on the wire."""
    started = time.perf_counter()
    response = client.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(f"/metrics answered {response.status_code}: {response.text}")
    return elapsed, response.content, response.num_bytes_downloaded


def _scrape_series(url: str, count: int, result: SizeResult) -> None:
    with httpx.Client(timeout=600) as client:
        # The first scrape waits for the figures' first computation; not counted.
        result.first_scrape = _scrape(client, url)[0]
        for _ in range(count):
            elapsed, body, wire = _scrape(client, url)
            result.scrape_seconds.append(elapsed)
    result.scrape_bytes, result.wire_bytes = len(body), wire
    result.series = sum(
        1 for line in body.decode().splitlines() if line and not line.startswith("#")
    )


def _time_refresh(db: Path, result: SizeResult, count: int = 3) -> None:
    """Time, in this process, what the collector's metrics refresher computes in
    the background: first from cold, then again over the state it kept."""
    storage = Storage(db)
    try:
        exporter = MetricsExporter(storage, Config(), utcnow)
        for _ in range(count):
            started = time.perf_counter()
            exporter.figures_text(utcnow())
            result.refresh_seconds.append(time.perf_counter() - started)
    finally:
        storage.close()


def _ingest_with_scrapes(
    url: str,
    port: int,
    prepared: _district.Prepared,
    args: argparse.Namespace,
    result: SizeResult,
) -> None:
    """Open-loop ingest at ``--ingest-rate``: alone, with a scrape every
    ``--scrape-every`` seconds, and under scrapes back to back."""
    thirds = [
        [q[k * len(q) // 3 : (k + 1) * len(q) // 3] for q in prepared.timed]
        for k in range(3)
    ]
    limit = args.ingest_seconds
    alone = Load(port, thirds[0], rate=args.ingest_rate, time_limit=limit).run()
    paced, paced_scrapes = _under_scrapes(url, port, thirds[1], args, args.scrape_every)
    flood, flood_scrapes = _under_scrapes(url, port, thirds[2], args, 0.0)
    for phase in (alone, paced, flood):
        if phase.errors or set(phase.statuses) - {200}:
            raise BenchError(f"ingest: statuses {phase.statuses} {phase.errors[:2]}")
    result.ingest_alone, result.ingest_scraped = alone.latencies, flood.latencies
    result.ingest_paced, result.paced_scrapes = paced.latencies, len(paced_scrapes)
    result.scrapes_during_ingest = len(flood_scrapes)


def _under_scrapes(
    url: str,
    port: int,
    queues: list[Any],
    args: argparse.Namespace,
    every: float,
) -> tuple[Any, list[float]]:
    """One ingest phase while another thread scrapes every ``every`` seconds (0:
    back to back); the phase's result and the scrapes' times."""
    stop, scrapes = threading.Event(), []
    scraper = threading.Thread(target=_scrape_until, args=(url, stop, scrapes, every))
    scraper.start()
    try:
        load = Load(port, queues, rate=args.ingest_rate, time_limit=args.ingest_seconds)
        return load.run(), scrapes
    finally:
        stop.set()
        scraper.join()


def _scrape_until(
    url: str, stop: threading.Event, done: list[float], every: float
) -> None:
    with httpx.Client(timeout=600) as client:
        while not stop.is_set():
            done.append(_scrape(client, url)[0])
            stop.wait(every)


# Output -------------------------------------------------------------------------------


def print_figures(args: argparse.Namespace, results: list[SizeResult]) -> None:
    """Every size's build, scrape time and size, and ingest latencies."""
    for result in results:
        per_school = args.devices if result.schools < LARGE else args.devices_large
        say(
            f"  {result.schools:,} schools: {result.devices:,} synthetic devices "
            f"({per_school} per school) + {result.sim_devices:,} simulated PCs, "
            f"{result.probe_rows:,} probe rows, "
            f"database {result.db_bytes / 1e6:,.0f} MB, "
            f"synthetic rows written in {result.build_seconds:.0f} s"
        )
        times = sorted(result.scrape_seconds)
        target = TARGETS.get(result.schools)
        median = percentile(times, 0.5)
        spread = f"{times[0]:.3f}-{times[-1]:.3f} s"
        say(
            figure(
                f"/metrics time, median of {len(times)} ({spread})",
                f"{median:.3f} s",
                f"< {target} s" if target else "-",
                median < target if target else None,
            )
        )
        say(
            figure(
                "first /metrics after start (waits for the figures)",
                f"{result.first_scrape:.3f} s",
                "-",
                None,
            )
        )
        cold, *warm = result.refresh_seconds
        say(
            figure(
                "background refresh of the figures, cold", f"{cold:.3f} s", "-", None
            )
        )
        say(
            figure(
                f"background refresh, again (max of {len(warm)})",
                f"{max(warm):.3f} s",
                "-",
                None,
            )
        )
        size = f"{result.scrape_bytes / 1e6:.2f} MB ({result.wire_bytes / 1e6:.2f} gz)"
        say(
            figure(
                "/metrics size",
                size,
                f"{result.series:,} series",
                None,
            )
        )
        if result.ingest_alone is not None:
            _ingest_lines(args, result)


def _ingest_lines(args: argparse.Namespace, result: SizeResult) -> None:
    alone = percentile(result.ingest_alone, 0.99)
    scraped = percentile(result.ingest_scraped, 0.99)
    rate = f"{args.ingest_rate:g}/s"
    say(
        figure(
            f"ingest p99 at {rate}, no scrape",
            f"{alone * 1000:.1f} ms",
            "< 200 ms",
            alone < 0.2,
        )
    )
    paced = percentile(result.ingest_paced, 0.99)
    say(
        figure(
            f"ingest p99 at {rate}, a scrape every {args.scrape_every:g} s",
            f"{paced * 1000:.1f} ms",
            "< 200 ms",
            paced < 0.2,
        )
    )
    say(
        figure(
            f"ingest p99 at {rate}, {result.scrapes_during_ingest} scrapes meanwhile",
            f"{scraped * 1000:.1f} ms",
            "< 200 ms",
            scraped < 0.2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
