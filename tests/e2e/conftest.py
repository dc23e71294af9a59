"""A real collector process and real agent processes on this machine, on loopback.

The agent is configured with the collector as its only probe target: this machine has
no Internet, and the tests must never try to reach it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.collector import collector_process, free_port

REGISTRY = """\ufeffcode;name;level;commune;has_informatics;lab_pcs_required
C01;Trường Tiểu học Cẩm Phúc;primary;Cẩm Phúc;1;
C02;Trường THCS Cẩm Phúc;lower_secondary;Cẩm Phúc;1;2
C03;Trường Mầm non Cẩm Điền;preschool;Cẩm Điền;0;
"""

AGENT_CONFIG = """\
interval_seconds = 60
jitter_seconds = 0

[timeouts]
connect_seconds = 2
read_seconds = 10
probe_seconds = 2

[[targets]]
name = "collector"
url = "{server}/healthz"
scope = "collector"
expect_status = 200
expect_body_contains = "schoolmon"
"""


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command of this project; never hangs past its timeout."""
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def server_cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "schoolmon.server", *args, "--db", str(db)])


@dataclass
class Agent:
    """One real agent installation: its state directory and configuration file."""

    state_dir: Path
    config: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "schoolmon.agent", *args]
        command += ["--config", str(self.config), "--state-dir", str(self.state_dir)]
        return run(command)

    def json(self, *args: str) -> Any:
        done = self(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def district_db(tmp_path: Path) -> Path:
    """A collector database holding the three-school registry."""
    db = tmp_path / "collector.sqlite3"
    registry = tmp_path / "registry.csv"
    registry.write_bytes(REGISTRY.replace("\n", "\r\n").encode("utf-8"))
    done = server_cli(db, "schools", "import", str(registry))
    assert done.returncode == 0, done.stderr
    return db


class Collector:
    """The real collector process on a fixed port, so that it can stop and come back
    where the enrolled agents expect it."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._running: Any = None

    def start(self) -> str:
        self._running = collector_process(self.db, port=self.port)
        self._running.__enter__()
        return self.url

    def stop(self) -> None:
        if self._running is not None:
            self._running.__exit__(None, None, None)
            self._running = None

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", timeout=10)
        assert answer.status_code == 200, answer.text
        return (
            answer.json() if "json" in answer.headers["content-type"] else answer.text
        )


@pytest.fixture
def collector(district_db: Path) -> Iterator[Collector]:
    """The real collector, started; stopped at the end of the test."""
    control = Collector(district_db)
    control.start()
    yield control
    control.stop()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    config = tmp_path / "agent.toml"
    config.write_text(AGENT_CONFIG, encoding="utf-8")
    yield Agent(state_dir=tmp_path / "agent-state", config=config)
