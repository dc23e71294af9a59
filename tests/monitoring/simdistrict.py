"""A real collector process with a small simulated district behind it.

``collector_with_district()`` imports a registry of seven schools into a fresh SQLite
file, starts ``python -m schoolmon.server serve`` with a configuration in which every
day is in session and a school is offline after ``OFFLINE_AFTER_SECONDS``, and lets
``schoolmon.server.simulate`` enroll the PCs and deliver two days of history and one
live cycle through the collector's HTTP API. One school's link is down for good, so
it never reports (a never-seen school).

``SimulatedDistrict`` is what the live tests change: a school falls silent (its PCs
stop reporting) or reports again (one cycle), or loses a memory module. While the
district runs, ``Reporter`` plays the agents' report interval: every
``REPORT_INTERVAL_SECONDS`` each school that is not silent sends one cycle, so only
the silenced school goes stale.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schoolmon.server.clock import utcnow
from schoolmon.server.simulate import (
    Collector,
    Credentials,
    District,
    SimOptions,
    SimPC,
    build_district,
    enroll_devices,
    load_registry,
    prepare_cycle,
    prepare_history,
    send_reports,
    tokens_from_db,
)

from tests.monitoring.promstack import new_port, running, start_url

logger = logging.getLogger(__name__)

# The collector's offline threshold in the tests (SPEC.md's default is 15 minutes);
# the test copies of the rules use the same figure instead of their 900 s.
OFFLINE_AFTER_SECONDS = 6
# How often a school that is not silent reports (the agents' interval, shortened).
REPORT_INTERVAL_SECONDS = 1.5

# Seven schools; T07 has no coordinates (left off the map, still exported).
REGISTRY_CSV = """\
code,name,level,commune,has_informatics,lab_pcs_required,students,\
contracted_download_mbps,latitude,longitude
T01,Trường Tiểu học Lai Cách,primary,Lai Cách,1,2,420,80,20.91468,106.21224
T02,Trường THCS Lai Cách,lower_secondary,Lai Cách,1,4,730,100,20.91383,106.20642
T03,Trường Mầm non Cẩm Giang,preschool,Cẩm Giang,0,,170,40,20.90579,106.18333
T04,Trường Tiểu học Cẩm Giang,primary,Cẩm Giang,1,2,380,50,20.90412,106.18791
T05,Trường THCS Cẩm Điền,lower_secondary,Cẩm Điền,1,3,510,30,20.92507,106.16218
T06,Trường Tiểu học Cẩm Điền,primary,Cẩm Điền,1,2,300,40,20.92811,106.16702
T07,Trường Mầm non Cẩm Phúc,preschool,Cẩm Phúc,0,,150,30,,
"""
OPTIONS = SimOptions(
    seed=11,
    pcs_per_school=3,
    days_history=2,
    offline_share=1 / 7,
    slow_share=1 / 7,
    workers=4,
    history_step_seconds=1800,
    timeout_seconds=30.0,
)


def collector_config(offline_after_seconds: float) -> str:
    """TOML: every day in session all day, no holidays, a short offline threshold,
    figures refreshed every second."""
    days = "\n".join(
        f'{day} = ["00:00-24:00"]'
        for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    )
    return (
        "[policy]\n"
        f"offline_after_minutes = {offline_after_seconds / 60!r}\n\n"
        "[sessions]\n"
        'timezone = "Asia/Ho_Chi_Minh"\n'
        "holidays = []\n\n"
        f"[sessions.timetable]\n{days}\n\n"
        # Figures as fresh as Prometheus's 1 s scrapes in these tests.
        "[metrics]\n"
        "refresh_seconds = 1\n"
    )


def write_registry(path: Path) -> Path:
    path.write_text(REGISTRY_CSV, encoding="utf-8")
    return path


def placed_schools() -> set[str]:
    """Codes of the registry's schools that have coordinates."""
    rows = csv.DictReader(io.StringIO(REGISTRY_CSV))
    return {row["code"] for row in rows if row["latitude"]}


class SimulationFailed(AssertionError):
    """The collector refused part of the simulated district's traffic."""


@dataclass
class SimulatedDistrict:
    """The simulated district behind a real collector, as the live tests change it."""

    collector: Collector
    district: District
    credentials: Credentials
    showcase_school: str = ""
    silent: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cycles: int = 0

    @property
    def reporting_schools(self) -> list[str]:
        """Schools whose link works (the one offline school never reports)."""
        return [s.code for s in self.district.schools if not s.offline]

    def silence(self, school: str) -> None:
        """The school's PCs stop reporting (it stays in session)."""
        with self.lock:
            self.silent.add(school)
        logger.info("school %s falls silent", school)

    def report(self, school: str) -> None:
        """The school reports again: one cycle of all its PCs, now."""
        with self.lock:
            self.silent.discard(school)
        self.cycle([school])

    def tick(self) -> None:
        """One cycle of every school that is not silent."""
        with self.lock:
            schools = [s for s in self.reporting_schools if s not in self.silent]
        self.cycle(schools)

    def asset_event(self, school: str, kind: str) -> None:
        """A PC of the school loses a memory module and sends its full inventory."""
        if kind != "component_removed":
            raise ValueError(
                f"asset event kind {kind!r} is not simulated; only component_removed"
            )
        with self.lock:
            pc = module_donor(self.district, school)
            memory = pc.sections["memory"]
            memory["modules"] = memory["modules"][:-1]
            installed = sum(m["size_bytes"] for m in memory["modules"])
            memory["installed_bytes"] = installed
            memory["usable_bytes"] = min(memory["usable_bytes"], installed)
            pc.wants_full_inventory = True
        self.cycle([school])

    def cycle(self, schools: list[str]) -> None:
        """Every PC of ``schools`` reports once, now, through the HTTP API."""
        with self.lock:
            self.cycles += 1
            part = District(
                self.district.seed,
                utcnow(),
                [self.district.school(code) for code in schools],
            )
            reports = prepare_cycle(part, self.cycles, part.now, OPTIONS)
            phase = send_reports(
                self.collector,
                reports,
                self.credentials,
                f"cycle of {','.join(schools)}",
                OPTIONS.workers,
                self.district,
            )
        if phase.failed:
            raise SimulationFailed(phase.line())


def module_donor(district: District, school: str) -> SimPC:
    """A PC of ``school`` with at least two memory modules."""
    for pc in district.school(school).pcs:
        if len(pc.sections["memory"]["modules"]) >= 2:
            return pc
    raise LookupError(f"no PC of school {school} has two memory modules")


def _showcase(district: District) -> str:
    """A reporting school with coordinates, a lab and a PC with two modules."""
    placed = placed_schools()
    for sim in district.schools:
        has_lab = any(pc.role == "lab" for pc in sim.pcs)
        if not sim.offline and sim.code in placed and has_lab:
            with contextlib.suppress(LookupError):
                return module_donor(district, sim.code).school
    raise LookupError("the simulated district has no school to show")


def start_district(url: str, db: Path, registry: Path) -> SimulatedDistrict:
    """Enroll the district's PCs, deliver two days of history and one live cycle."""
    schools = load_registry(registry)
    tokens = tokens_from_db(db, schools)
    collector = Collector(url, OPTIONS.timeout_seconds)
    district = build_district(schools, OPTIONS, utcnow())
    credentials = Credentials()
    phases = [enroll_devices(collector, district, tokens, credentials, OPTIONS)]
    history = prepare_history(district, OPTIONS, utcnow())
    phases.append(
        send_reports(
            collector, history, credentials, "history", OPTIONS.workers, district
        )
    )
    live = prepare_cycle(district, 0, utcnow(), OPTIONS)
    phases.append(
        send_reports(collector, live, credentials, "cycle", OPTIONS.workers, district)
    )
    failed = [phase.line() for phase in phases if phase.failed or not phase.requests]
    if failed:
        raise SimulationFailed("; ".join(failed))
    sim = SimulatedDistrict(collector, district, credentials)
    sim.showcase_school = _showcase(district)
    return sim


class Reporter:
    """Plays the agents' report interval in a thread: a cycle every interval.

    A cycle the collector did not take is logged and the next one comes as an
    agent's would; what the tests see of it (a school gone stale) is asserted there.
    """

    def __init__(self, district: SimulatedDistrict, interval: float) -> None:
        self.district = district
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        # Event.wait is the agents' own pacing, not a test waiting for a result.
        while not self.stopped.wait(self.interval):
            try:
                self.district.tick()
            except SimulationFailed as error:  # an agent retries at its next cycle
                logger.warning("a background cycle failed: %s", error)

    def __enter__(self) -> Reporter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


@contextlib.contextmanager
def collector_with_district(directory: Path) -> Iterator[tuple[str, SimulatedDistrict]]:
    """A collector process serving the simulated district; yields (URL, district).

    The collector logs every request; its output goes to ``collector.log`` in
    ``directory`` (a pipe nobody reads would fill and stall it).
    """
    db = directory / "schoolmon.sqlite3"
    config = directory / "collector.toml"
    config.write_text(collector_config(OFFLINE_AFTER_SECONDS), encoding="utf-8")
    registry = write_registry(directory / "registry.csv")
    _server_command("schools", "import", str(registry), "--db", str(db))

    port = new_port()
    url = start_url(port)
    serve = _serve_args(db, config, port)
    with running(serve, f"{url}/healthz", directory / "collector.log"):
        district = start_district(url, db, registry)
        with Reporter(district, REPORT_INTERVAL_SECONDS):
            yield url, district


def _server_command(*args: str) -> None:
    command = [sys.executable, "-m", "schoolmon.server", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def _serve_args(db: Path, config: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "schoolmon.server",
        "serve",
        f"--db={db}",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--config={config}",
    ]
