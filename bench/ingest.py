"""Ingest throughput: one collector process on one core, against a bare FastAPI app.

    python bench/ingest.py [--reports 20000] [--connections 32] [--quick]
                           [--postgres]

A real collector (``python -m schoolmon.server serve``, SQLite; with ``--postgres``
a database of a throwaway PostgreSQL cluster, whose server runs unpinned) runs under
``taskset -c 0``; this process, the load generator, runs on core 1. The simulated
district (sample registry, ~1,100 reporting PCs) enrolls through the API, sends its
first cycle (full inventories, speed tests) as warm-up, then the timed reports: one
probe cycle each plus a mix of inventory deltas, speed tests and a few full
software lists (bench/_district.py ``MIX``). Every connection sends as soon as it is
answered (closed loop), a device's reports in order on one connection. After the
collector stops, every acknowledged sample is looked for in the database.

The same requests then go to bench/bare_app.py under the same taskset and the same
uvicorn settings (printed): its rate is the ceiling of uvicorn and FastAPI on one
core, and the generator's own CPU share shows it was not the limit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _district
import psycopg
import uvicorn
from _common import (
    LOAD_CORE,
    SERVER_CORE,
    BenchError,
    Load,
    LoadResult,
    bare_argv,
    collector_argv,
    command_line,
    figure,
    free_port,
    percentile,
    pin_self,
    pinned,
    postgres_database,
    profiled,
    say,
    scratch_dir,
    server_process,
)
from schoolmon.server import pg, simulate
from schoolmon.server.clock import utcnow

logger = logging.getLogger(__name__)

TARGET_RATE = 1500.0
TARGET_P99 = 0.200
TARGET_SHARE = 0.60


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.reports, args.schools, args.connections = 300, 3, 8
    logging.basicConfig(level=logging.WARNING)
    pin_self(LOAD_CORE)
    try:
        with scratch_dir("ingest") as tmp, _database(args, tmp) as db:
            collector, bare, durable, prepared = measure(args, tmp, db)
    except BenchError as error:
        say(f"ingest benchmark failed: {error}")
        return 1
    return print_figures(args, collector, bare, durable, prepared)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=20_000, help="timed reports")
    parser.add_argument("--schools", type=int, default=60)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=120.0, help="per phase")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="store in a throwaway PostgreSQL cluster instead of a SQLite file",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write py-spy collapsed stacks of the collector's timed phase here",
    )
    return parser


@contextlib.contextmanager
def _database(args: argparse.Namespace, tmp: Path) -> Iterator[Path | str]:
    if not args.postgres:
        yield tmp / "collector.sqlite3"
        return
    with postgres_database() as url:
        yield url


def measure(
    args: argparse.Namespace, tmp: Path, db: Path | str
) -> tuple[LoadResult, LoadResult, dict[str, tuple[int, int]], _district.Prepared]:
    """Run both phases; return the collector's and the bare app's results."""
    port = free_port()
    schools = _district.district_schools(args.schools)
    tokens = _district.register(db, schools, utcnow())
    district, options = _build(schools, args)

    argv = pinned(collector_argv(db, port), SERVER_CORE)
    with server_process("collector", argv, port, tmp) as server:
        credentials = _district.enroll(server.url, district, tokens, options)
        prepared = _district.prepare(
            district, options, credentials, port, args.connections
        )
        warm = Load(
            port, prepared.warmup, time_limit=args.time_limit, keep_answers=True
        )
        warmup = _checked(warm.run(), "warm-up", server.log_tail())
        timed = Load(
            port, prepared.timed, time_limit=args.time_limit, keep_answers=True
        )
        cpu = server.cpu_seconds()
        with profiled(server.process.pid, args.profile):
            collector = _checked(timed.run(), "collector", server.log_tail())
        collector.server_cpu = server.cpu_seconds() - cpu
    durable = _durability(db, [warmup, collector])

    bare_port = free_port()
    requests = [[_retarget(r, port, bare_port) for r in q] for q in prepared.timed]
    bare_cmd = pinned(bare_argv(bare_port), SERVER_CORE)
    with server_process("bare", bare_cmd, bare_port, tmp) as server:
        Load(bare_port, requests, time_limit=5.0).run()  # warm the bare app too
        cpu = server.cpu_seconds()
        bare = Load(bare_port, requests, time_limit=args.time_limit).run()
        bare = _checked(bare, "bare app", server.log_tail())
        bare.server_cpu = server.cpu_seconds() - cpu
    return collector, bare, durable, prepared


def _build(
    schools: list[simulate.School], args: argparse.Namespace
) -> tuple[simulate.District, simulate.SimOptions]:
    probe = _district.options_for(len(schools), 1, args.seed)
    district = simulate.build_district(schools, probe, utcnow())
    pcs = sum(1 for _ in simulate.reporting_pcs(district))
    cycles = 1 + math.ceil(args.reports / pcs)
    options = _district.options_for(len(schools), cycles, args.seed)
    return simulate.build_district(schools, options, utcnow()), options


def _retarget(request: bytes, old: int, new: int) -> bytes:
    return request.replace(
        f"Host: 127.0.0.1:{old}".encode(), f"Host: 127.0.0.1:{new}".encode(), 1
    )


def _checked(result: LoadResult, phase: str, log: str) -> LoadResult:
    """Refuse a phase that did not get every answer it counted as 200."""
    if result.errors or set(result.statuses) - {200}:
        raise BenchError(
            f"{phase}: statuses {result.statuses}, errors {result.errors[:3]}\n{log}"
        )
    return result


def _durability(
    db: Path | str, results: list[LoadResult]
) -> dict[str, tuple[int, int]]:
    """Acknowledged vs stored, per kind, read after the collector stopped.

    Inventories count devices: each device that had one acknowledged must have a
    stored latest inventory (a snapshot is kept only when more than volatile fields
    changed, so snapshots do not count acknowledgements).
    """
    tables = {"probes": "probe_samples", "speedtests": "speedtests"}
    with _connect(db) as conn:
        durable = {
            kind: (
                sum(r.accepted(kind) for r in results),
                conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0],
            )
            for kind, table in tables.items()
        }
        devices = _inventory_devices(results)
        stored = {row[0] for row in conn.execute("SELECT device FROM inventories")}
    durable["inventory"] = (len(devices), len(devices & stored))
    return durable


def _connect(db: Path | str) -> Any:
    """A plain connection to the bench's database, whichever the backend."""
    if pg.is_url(str(db)):
        return psycopg.connect(str(db), autocommit=True)
    return contextlib.closing(sqlite3.connect(db))


def _inventory_devices(results: list[LoadResult]) -> set[str]:
    """Devices whose answer acknowledged an inventory."""
    answers = (json.loads(a) for r in results for a in r.answers)
    return {
        a["device_id"] for a in answers if a.get("accepted", {}).get("inventory", 0)
    }


def print_figures(
    args: argparse.Namespace,
    collector: LoadResult,
    bare: LoadResult,
    durable: dict[str, tuple[int, int]],
    prepared: _district.Prepared,
) -> int:
    """Print the figures against their targets; 0 when every figure was measured."""
    share = collector.per_second / bare.per_second
    p50, p99 = (percentile(collector.latencies, q) for q in (0.5, 0.99))
    all_durable = all(acked == stored for acked, stored in durable.values())
    say(f"ingest benchmark: {command_line()}")
    say(
        f"  {prepared.devices} reporting PCs, {collector.done} timed reports over "
        f"{args.connections} keep-alive connections (closed loop); "
        f"collector and bare app on core {SERVER_CORE}, generator on core {LOAD_CORE}"
    )
    say(f"  server stack (both): {_server_stack()}")
    database = "PostgreSQL" if args.postgres else "SQLite (WAL, synchronous=FULL)"
    say(f"  collector's database: {database}")
    say(f"  mix: {_mix(prepared)}")
    say(
        f"  body: median {percentile(prepared.gzip_bytes, 0.5)} B gzip "
        f"({percentile(prepared.json_bytes, 0.5)} B JSON), "
        f"max {max(prepared.gzip_bytes)} B gzip ({max(prepared.json_bytes)} B JSON)"
    )
    rate = collector.per_second
    say(figure("collector reports/s", f"{rate:,.0f}", ">= 1,500", rate >= TARGET_RATE))
    say(figure("collector p50 latency", f"{p50 * 1000:.1f} ms", "-", None))
    say(
        figure(
            "collector p99 latency",
            f"{p99 * 1000:.1f} ms",
            "< 200 ms",
            p99 < TARGET_P99,
        )
    )
    say(_cpu_line("collector", collector))
    say(
        figure(
            "acknowledged samples durable", _durable_text(durable), "all", all_durable
        )
    )
    say(
        figure(
            "bare uvicorn+FastAPI reports/s",
            f"{bare.per_second:,.0f}",
            "reference",
            None,
        )
    )
    bare_p99 = percentile(bare.latencies, 0.99)
    say(figure("bare p99 latency", f"{bare_p99 * 1000:.1f} ms", "-", None))
    say(_cpu_line("bare app", bare))
    cpu_share = bare.server_ms_per_request / collector.server_ms_per_request
    say(
        figure(
            "collector / bare, by CPU per report",
            f"{cpu_share:.0%}",
            ">= 60 %",
            cpu_share >= TARGET_SHARE,
        )
    )
    say(figure("collector / bare", f"{share:.0%}", ">= 60 %", share >= TARGET_SHARE))
    say(
        figure(
            "generator CPU (collector | bare run)",
            f"{collector.generator_load:.0%} | {bare.generator_load:.0%}",
            "< 100 % of core",
            max(collector.generator_load, bare.generator_load) < 0.9,
        )
    )
    return 0


def _cpu_line(name: str, result: LoadResult) -> str:
    ceiling = 1000 / result.server_ms_per_request
    return figure(
        f"{name} CPU per report (core busy)",
        f"{result.server_ms_per_request:.2f} ms ({result.server_load:.0%})",
        f"-> {ceiling:,.0f}/s/core",
        None,
    )


def _server_stack() -> str:
    """What uvicorn picks by itself here ("auto"), for the collector and the bare app
    alike: httptools and uvloop when installed, else h11 and asyncio."""
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {uvicorn.__version__}, {http}, {loop}, no access log"


def _mix(prepared: _district.Prepared) -> str:
    total = sum(prepared.mix.values())
    return ", ".join(
        f"{kind} {count} ({count / total:.1%})"
        for kind, count in sorted(prepared.mix.items())
    )


def _durable_text(durable: dict[str, tuple[int, int]]) -> str:
    return " ".join(f"{stored}/{acked}" for acked, stored in durable.values())


if __name__ == "__main__":
    sys.exit(main())
