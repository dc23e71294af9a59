"""Each benchmark runs in its ``--quick`` configuration and prints its figures.

No timing is asserted: the figures depend on the machine. What is checked is that
the command finishes by itself, exits 0, names the command that made the figures,
prints every figure against its target, and leaves no process or temp dir behind.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIGURE = re.compile(r"^  \S.*\s+target .+ (met|MISSED|-)$")


def run_quick(script: str, prefix: str, timeout: float) -> list[str]:
    """Run ``bench/<script> --quick``; its output lines (stdout)."""
    before = _scratch_dirs(prefix)
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _scratch_dirs(prefix) <= before, "the benchmark left temp files"
    return done.stdout.splitlines()


def _scratch_dirs(prefix: str) -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"schoolmon-{prefix}-*")}


def _figures(lines: list[str]) -> dict[str, str]:
    """Figure lines by their name (the text before the value)."""
    return {
        re.split(r"\s{2,}", line.strip())[0]: line
        for line in lines
        if FIGURE.match(line)
    }


def test_ingest_quick_prints_rate_latency_durability_and_bare_reference() -> None:
    """bench/ingest.py --quick prints every ingest figure against its target."""
    lines = run_quick("ingest.py", "ingest", timeout=60)

    assert lines[0].startswith("ingest benchmark: ")
    assert lines[0].endswith("ingest.py --quick")
    assert set(_figures(lines)) == {
        "collector reports/s",
        "collector p50 latency",
        "collector p99 latency",
        "collector CPU per report (core busy)",
        "acknowledged samples durable",
        "bare uvicorn+FastAPI reports/s",
        "bare p99 latency",
        "bare app CPU per report (core busy)",
        "collector / bare, by CPU per report",
        "collector / bare",
        "generator CPU (collector | bare run)",
    }
    assert _figures(lines)["acknowledged samples durable"].endswith(" met")


def test_scrape_quick_prints_scrape_time_size_refresh_and_ingest_latencies() -> None:
    """bench/scrape.py --quick prints /metrics time and size, the background
    refresh's time and ingest p99s (alone, paced scrapes, scrapes back to back)."""
    lines = run_quick("scrape.py", "scrape", timeout=60)

    names = set(_figures(lines))
    assert lines[0].startswith("scrape benchmark: ")
    assert len(names) == 8
    assert any(name.startswith("/metrics time, median of 2") for name in names)
    assert {
        "/metrics size",
        "first /metrics after start (waits for the figures)",
        "background refresh of the figures, cold",
        "background refresh, again (max of 2)",
    } <= names
    assert "ingest p99 at 20/s, no scrape" in names
    assert "ingest p99 at 20/s, a scrape every 1 s" in names
    assert any(
        re.match(r"ingest p99 at 20/s, \d+ scrapes meanwhile", name) for name in names
    )


def test_agent_footprint_quick_prints_agent_and_node_exporter_figures() -> None:
    """bench/agent_footprint.py --quick prints RSS and CPU beside node_exporter's."""
    if not Path("/usr/bin/prometheus-node-exporter").exists():
        pytest.skip("Debian's prometheus-node-exporter is not installed")
    lines = run_quick("agent_footprint.py", "footprint", timeout=60)

    names = set(_figures(lines))
    assert lines[0].startswith("agent footprint benchmark: ")
    assert {
        "node_exporter RSS after one scrape",
        "node_exporter CPU for one scrape",
        "once, 2nd (normal cycle): peak RSS",
        "once, 2nd (normal cycle): CPU (children)",
        "once --dry-run: peak RSS",
        "run: peak RSS",
        "run: RSS while idle",
    } <= names
    assert any(name.startswith("run, idle ") for name in names)


def test_storage_growth_quick_prints_growth_per_device_and_day() -> None:
    """bench/storage_growth.py --quick prints growth per device per day, by table,
    the rows held once the retention job ran, and the steady growth."""
    lines = run_quick("storage_growth.py", "growth", timeout=60)

    names = set(_figures(lines))
    assert lines[0].startswith("storage growth benchmark: ")
    assert any(name.startswith("day 1: ") for name in names)
    assert any(name.startswith("day 2: ") for name in names)
    assert any("probe_samples" in line for line in lines)
    assert "steady growth, day 2 to day 3" in names
    assert "database held on day 3" in names
    assert any("probe_runs" in line and "rows on day 3" in line for line in lines)
