"""The main job end to end: a real agent process on this machine reports its real
inventory and connectivity to a real collector process, which serves it back through
the API and as Prometheus metrics."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.conftest import Agent, Collector, server_cli
from tests.support.waiting import wait_until


def enrolled(agent: Agent, collector: Collector, db: Path, school: str) -> str:
    """Enroll the agent in ``school`` with a token from the command line."""
    token = server_cli(db, "schools", "token", school, "--role", "lab")
    assert token.returncode == 0, token.stderr
    assert token.stdout.count("\n") == 1, "the token is alone on standard output"
    done = agent("enroll", "--server", collector.url, "--token", token.stdout.strip())
    assert done.returncode == 0, done.stderr
    return agent.json("status", "--json")["device_id"]


def metric_value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"expected one sample {prefix!r}, found {lines}"
    return float(lines[0].rsplit(" ", 1)[1])


def stored_probes(db: Path) -> list[tuple[str, int, int, str | None]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT run, seq, ok, reason FROM probe_samples ORDER BY placed_at, seq"
        ).fetchall()


def _seen_in_metrics(collector: Collector, school: str) -> str | None:
    """The /metrics text once it shows a last-seen time for ``school``."""
    metrics = collector.get("/metrics")
    name = "schoolmon_school_last_seen_timestamp_seconds"
    return metrics if metric_value(metrics, name, school=school) else None


def test_real_inventory_appears_under_its_school_and_last_seen_in_metrics(
    agent: Agent, collector: Collector, district_db: Path
) -> None:
    """One real cycle puts this machine's inventory in the API and its school's
    last-seen time in /metrics."""
    device_id = enrolled(agent, collector, district_db, "C02")
    before = time.time()
    done = agent("once")
    after = time.time()
    assert done.returncode == 0, done.stderr

    devices = collector.get("/api/v1/schools/C02/devices")["devices"]
    assert [(d["id"], d["hostname"], d["role"]) for d in devices] == [
        (device_id, socket.gethostname(), "lab")
    ]
    sections = collector.get(f"/api/v1/devices/{device_id}")["inventory"]["sections"]
    assert sections["cpu"]["status"] == "ok"
    assert sections["cpu"]["data"]["logical_cores"] == os.cpu_count()
    assert sections["memory"]["data"]["usable_bytes"] == psutil.virtual_memory().total
    assert sections["system"]["data"]["hostname"] == socket.gethostname()

    # /metrics serves figures refreshed in the background (metrics.refresh_seconds,
    # 10 s by default): the cycle shows there within a refresh.
    metrics = wait_until(
        lambda: _seen_in_metrics(collector, "C02"),
        timeout=40,
        interval=0.5,
        message="C02's last-seen time never reached /metrics",
    )
    seen = metric_value(
        metrics, "schoolmon_school_last_seen_timestamp_seconds", school="C02"
    )
    assert before - 1 <= seen <= after + 1
    assert (
        metric_value(
            metrics, "schoolmon_school_last_seen_timestamp_seconds", school="C01"
        )
        == 0
    )


def test_collector_down_then_back_loses_nothing_and_doubles_nothing(
    agent: Agent, collector: Collector, district_db: Path
) -> None:
    """Cycles run while the collector is down stay in the outbox and arrive once,
    in order, when it is back."""
    enrolled(agent, collector, district_db, "C01")
    assert agent("once").returncode == 0

    collector.stop()
    for _ in range(3):
        offline = agent("once")
        assert offline.returncode != 0
    waiting = agent.json("status", "--json")
    assert waiting["outbox_items"] > 0

    collector.start()
    assert agent("once").returncode == 0, "delivered once the collector is back"
    assert agent.json("status", "--json")["outbox_items"] == 0

    probes = stored_probes(district_db)
    per_cycle = 3  # one target: dns, tcp and https
    assert len(probes) == 5 * per_cycle
    seqs = [seq for _run, seq, _ok, _reason in probes]
    assert seqs == sorted(set(seqs)), "each sample stored once"
    failed = [(ok, reason) for _run, _seq, ok, reason in probes if not ok]
    assert len(failed) == 3 * per_cycle - 3, "the collector's DNS still resolved"
    assert all(reason for _ok, reason in failed), "a failed probe carries its reason"

    metrics = collector.get("/metrics")
    duplicates = metric_value(
        metrics, "schoolmon_samples_ingested_total", kind="probe", outcome="duplicate"
    )
    assert duplicates == 0


def test_dry_run_prints_a_report_the_collector_schema_accepts(agent: Agent) -> None:
    """What the real agent would send validates against the collector's wire models."""
    from schoolmon.server.schemas import Report

    report: dict[str, Any] = agent.json("once", "--dry-run")
    assert Report.model_validate(report).inventory is not None
