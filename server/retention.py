"""Bounded storage: the retention job that prunes raw probe samples.

``prune`` rolls the probe cycles judged before the retention window up into runs
(storage.py "Retention": the figures of any period read the same from them) and
then deletes the raw samples placed before it. Both go school by school in batches
of ``retention.batch_rows``, each batch one short write transaction, so a report
being stored never waits for more than one batch. The collector runs it every
``retention.every_minutes`` in a daemon thread (``RetentionThread``, started by the
app's lifespan); ``schoolmon-server prune`` runs it once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schoolmon.server.clock import Clock, from_storage
from schoolmon.server.config import Config
from schoolmon.server.storage import Storage
from schoolmon.server.uptime import DEFAULT_COVERAGE_INTERVALS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneResult:
    """What one retention pass did."""

    before: datetime
    cycles_rolled_up: int
    runs_written: int
    samples_deleted: int


def prune(storage: Storage, config: Config, now: datetime) -> PruneResult:
    """Roll up old probe cycles, then delete old raw samples (see the module)."""
    settings = config.retention
    before = now - settings.probe_samples_window(config.policy)
    coverage = config.server.report_interval_seconds * DEFAULT_COVERAGE_INTERVALS
    cycles = runs = samples = 0
    newest = storage.newest_probe_sample()
    for school in storage.retention_schools():
        rolled, written = roll_up_school(
            storage, school, before, coverage, settings.batch_rows
        )
        cycles, runs = cycles + rolled, runs + written
        samples += delete_school_samples(
            storage, school, before, newest, settings.batch_rows
        )

    result = PruneResult(before, cycles, runs, samples)
    logger.info(
        "retention before %s: %d probe samples deleted, %d probe cycles rolled up "
        "(%d runs written)",
        before.isoformat(), samples, cycles, runs,
    )  # fmt: skip
    return result


def delete_school_samples(
    storage: Storage, school: str, before: datetime, newest: int, batch: int
) -> int:
    """Delete a school's samples placed before ``before``, batch by batch."""
    deleted = 0
    while True:
        count = storage.delete_probe_samples(school, before, newest, batch)
        deleted += count
        if count < batch:
            return deleted


def roll_up_school(
    storage: Storage, school: str, before: datetime, coverage: float, batch: int
) -> tuple[int, int]:
    """Roll a school's cycles judged before ``before`` into runs; return how many
    cycles were rolled up and how many runs were added or extended."""
    cycles = runs = 0
    while True:
        with storage.transaction():
            rows = storage.old_probe_cycles(school, before, batch)
            if not rows:
                return cycles, runs
            latest = {d: storage.latest_probe_run(d) for d in {row[0] for row in rows}}
            changed = plan_runs(school, rows, latest, coverage)
            storage.save_probe_runs(changed, [(row[0], row[1]) for row in rows])
        cycles, runs = cycles + len(rows), runs + len(changed)


def plan_runs(
    school: str,
    rows: Iterable[tuple[Any, ...]],
    latest: dict[str, dict[str, Any] | None],
    coverage: float,
) -> list[dict[str, Any]]:
    """The runs to write for cycle rows ``(device, cycle_key, verdict_at,
    reached)`` in time order, given each device's latest stored run.

    A cycle extends its device's latest run when it has the same verdict, the same
    school and coverage, and comes at most ``coverage`` seconds after the run's
    last cycle; else
    it starts a run. A cycle older than the latest run's last one (a sample that
    came late) becomes a run of its own, beside it.
    """
    open_runs = {d: _open(run) for d, run in latest.items() if run is not None}
    changed: dict[int, dict[str, Any]] = {}
    for device, _key, at, reached in rows:
        when, reached = from_storage(at), bool(reached)
        run = open_runs.get(device)
        if run is not None and _extends(run, school, when, reached, coverage):
            run["last_at"], run["cycles"] = when, run["cycles"] + 1
        else:
            fresh = _new_run(device, school, when, reached, coverage)
            if run is None or when >= run["last_at"]:
                open_runs[device] = fresh
            run = fresh
        changed[id(run)] = run
    return list(changed.values())


def _open(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "device": run["device"],
        "school": run["school"],
        "first_at": run["first_at"],
        "last_at": run["last_at"],
        "reached": bool(run["reached"]),
        "cycles": run["cycles"],
        "coverage_seconds": run["coverage_seconds"],
    }


def _extends(
    run: dict[str, Any], school: str, at: datetime, reached: bool, coverage: float
) -> bool:
    """Whether a cycle continues the run (its coverage must not have changed)."""
    return (
        run["school"] == school
        and run["reached"] == reached
        and run["coverage_seconds"] == coverage
        and timedelta(0) <= at - run["last_at"] <= timedelta(seconds=coverage)
    )


def _new_run(
    device: str, school: str, at: datetime, reached: bool, coverage: float
) -> dict[str, Any]:
    return {
        "id": None,
        "device": device,
        "school": school,
        "first_at": at,
        "last_at": at,
        "reached": reached,
        "cycles": 1,
        "coverage_seconds": coverage,
    }


class RetentionThread:
    """Runs ``prune`` every ``retention.every_minutes`` in a daemon thread (the
    first pass one period after start) until ``stop``."""

    def __init__(self, storage: Storage, config: Config, clock: Clock) -> None:
        self.storage, self.config, self.clock = storage, config, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="schoolmon-retention", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        period = self.config.retention.every_minutes * 60
        while not self._stop.wait(period):
            try:
                prune(self.storage, self.config, self.clock())
            except Exception:  # the next pass tries again; the collector goes on
                logger.exception("retention pass failed")
