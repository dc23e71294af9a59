"""A school behind an emulated link: the real collector, a stand-in "Internet" and
real agent processes, for the outage and speed-test-slot tests and their benchmark.

Built on ``tests.netlab.netns.EmulatedLink``:

- collector namespace: the real collector (``python -m schoolmon.server serve``) on
  its namespace address with a registry imported, and the "Internet": a small HTTP
  host that answers 204 on ``/generate_204``, like a connectivity-check URL;
- school namespace: N real agent processes (``python -m schoolmon.agent``), each with
  its own state directory and a configuration whose probe targets are only the
  collector (scope ``collector``) and that local Internet host (scope ``internet``).

Each agent is its own PC. The agents share this machine's hardware, so the
collector's identity logic would take N enrollments for one PC enrolled N times.
Every agent command therefore runs, inside its ``ip netns exec`` (which gives it a
private mount namespace), under bind-mounted files of its own for the machine id,
the disk serial and the DMI ids, and with its own host name (UTS namespace). Nothing
outside that process sees them.

The link is cut with ``ip link set DEV down`` in the link namespace (this kernel has
no netem): side ``upstream`` takes down the link namespace's port towards the
collector, so the school's router answers "network unreachable" at once; side
``school`` takes down its port towards the school, so packets vanish and every probe
waits for its timeout.

The test process reaches the collector's HTTP API from a worker thread that entered
the collector's network namespace (``setns``); the agents' state and the collector's
SQLite file are read from the shared file system.

``python -m tests.netlab.school --host H --port P --ready FILE`` serves the Internet
host (inside the collector namespace).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import secrets
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from schoolmon.agent.config import AgentConfig, Timeouts
from schoolmon.agent.outbox import Outbox
from schoolmon.agent.state import Credential, State
from schoolmon.server.clock import parse_wire, to_storage

from tests.netlab.netns import EmulatedLink, LinkSpec
from tests.support.waiting import wait_until

logger = logging.getLogger(__name__)

COLLECTOR_PORT = 8400
INTERNET_PORT = 8080
CHECK_PATH = "/generate_204"
CLONE_NEWNET = 0x40000000
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAY = {day: ["00:00-24:00"] for day in WEEKDAYS}
# /metrics serves figures the collector refreshes in the background: the emulated
# schools refresh them often and read a metric only after two refreshes have passed.
METRICS_REFRESH_SECONDS = 0.5
METRICS_SETTLE_SECONDS = 2 * METRICS_REFRESH_SECONDS + 0.5
SCHOOL_LINK = LinkSpec(100)  # Mbit/s both ways, no added delay
CUT_DEVICE = {"upstream": "c", "school": "b"}
REGISTRY = (
    "code;name;level;commune;has_informatics;lab_pcs_required\n"
    "{code};Trường Tiểu học Cẩm Phúc;primary;Cẩm Phúc;1;\n"
)


# Configuration files ------------------------------------------------------------------


def collector_config(
    interval: int,
    slots_per_day: int = 0,
    timetable: dict[str, list[str]] | None = None,
    timezone: str = "Asia/Ho_Chi_Minh",
) -> str:
    """Collector TOML: report (= probe) interval without jitter, speed-test slots
    per day (0: none) and a session timetable (default: every day, all day)."""
    days = "\n".join(
        f"{day} = {json.dumps(periods)}"
        for day, periods in (timetable or ALL_DAY).items()
    )
    return (
        f"[server]\nreport_interval_seconds = {interval}\n"
        "report_jitter_seconds = 0\n\n"
        f"[speedtest]\nslots_per_day = {slots_per_day}\n\n"
        f'[sessions]\ntimezone = "{timezone}"\n\n'
        f"[metrics]\nrefresh_seconds = {METRICS_REFRESH_SECONDS}\n\n"
        f"[sessions.timetable]\n{days}\n"
    )


def default_timeouts() -> tuple[float, float, float]:
    """The agent's default connect, probe and read timeouts (seconds)."""
    defaults = Timeouts()
    return defaults.connect_seconds, defaults.probe_seconds, defaults.read_seconds


def scaled_timeouts(interval: float) -> tuple[float, float, float]:
    """The default timeouts in the same proportion to ``interval`` as they are to
    the agent's default interval (10, 10, 30 s to 300 s)."""
    scale = interval / AgentConfig().interval_seconds
    return tuple(timeout * scale for timeout in default_timeouts())


def agent_config(
    interval: int, internet_url: str, timeouts: tuple[float, float, float]
) -> str:
    """Agent TOML: probe every ``interval`` s with these (connect, probe, read)
    timeouts, retry soon, and only two targets: the collector and the local
    Internet host."""
    connect, probe, read = timeouts
    return (
        f"interval_seconds = {interval}\njitter_seconds = 0\n\n"
        f"[timeouts]\nconnect_seconds = {connect:.3g}\nprobe_seconds = {probe:.3g}\n"
        f"read_seconds = {read:.3g}\n\n"
        "[backoff]\nbase_seconds = 1\ncap_seconds = 2\n\n"
        '[[targets]]\nname = "collector"\nurl = "{server}/healthz"\n'
        'scope = "collector"\nexpect_status = 200\n'
        'expect_body_contains = "schoolmon"\n\n'
        f'[[targets]]\nname = "internet"\nurl = "{internet_url}"\n'
        'scope = "internet"\nexpect_status = 204\n'
    )


# The Internet host --------------------------------------------------------------------


class _ConnectivityCheck(BaseHTTPRequestHandler):
    """204 on the check path, 404 elsewhere, no body."""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self.send_response(204 if self.path == CHECK_PATH else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("internet host: %s", format % args)


def serve_internet(host: str, port: int, ready: Path) -> None:
    """Answer connectivity checks on ``host:port``; write ``ready`` once bound."""
    server = ThreadingHTTPServer((host, port), _ConnectivityCheck)
    ready.write_text(json.dumps({"port": port}), encoding="utf-8")
    server.serve_forever()


# HTTP from inside a network namespace -------------------------------------------------


def _enter_netns(ns: str) -> None:
    """Move the calling thread (only it) into network namespace ``ns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns into {ns}: {os.strerror(error)}")
    finally:
        os.close(fd)


class NamespaceHttp:
    """GET requests to ``base_url`` made by a worker thread inside namespace ``ns``."""

    def __init__(self, ns: str, base_url: str) -> None:
        self.base_url = base_url
        self._pool = ThreadPoolExecutor(1, initializer=_enter_netns, initargs=(ns,))
        self._client: httpx.Client | None = None

    def get(self, path: str) -> httpx.Response:
        return self._pool.submit(self._get, path).result()

    def _get(self, path: str) -> httpx.Response:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url, timeout=10, trust_env=False
            )
        return self._client.get(path)

    def healthy(self) -> bool:
        try:
            return self.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def json(self, path: str) -> Any:
        answer = self.get(path)
        if answer.status_code != 200:
            raise AssertionError(f"GET {path}: {answer.status_code} {answer.text}")
        return answer.json()

    def metric(self, name: str, **labels: str) -> float:
        """The value of the one sample of ``name`` with exactly ``labels``."""
        text = self.get("/metrics").text
        values = [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and sample.labels == labels
        ]
        if len(values) != 1:
            raise AssertionError(f"{len(values)} samples of {name}{labels}")
        return values[0]

    def close(self) -> None:
        if self._client is not None:
            self._pool.submit(self._client.close).result()
        self._pool.shutdown(wait=True)


# One PC of the school -----------------------------------------------------------------


@dataclass(frozen=True)
class Pc:
    """One agent installation: state directory, configuration and the identity
    files bind-mounted over this machine's for its commands."""

    index: int
    hostname: str
    state_dir: Path
    config: Path
    mounts: tuple[tuple[Path, str], ...]

    def command(self, ns: str, *args: str) -> list[str]:
        """``python -m schoolmon.agent ARGS`` as this PC, in namespace ``ns``."""
        binds = [
            f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}"
            for source, target in self.mounts
        ]
        rename = f"hostname {shlex.quote(self.hostname)}"
        script = " && ".join([*binds, rename, 'exec "$@"'])
        agent = [sys.executable, "-m", "schoolmon.agent", *args]
        options = ["--config", str(self.config), "--state-dir", str(self.state_dir)]
        return ["ip", "netns", "exec", ns, "unshare", "--uts", "--", "sh", "-c",
                script, "agent", *agent, *options]  # fmt: skip

    def credential(self) -> Credential:
        credential = State(self.state_dir).load_credential()
        if credential is None:
            raise RuntimeError(f"{self.hostname} is not enrolled ({self.state_dir})")
        return credential

    def outbox(self) -> tuple[int, list[int | None], dict[str, Any]]:
        """The highest seq issued, the seqs still queued and the queue's counters
        (read once the agent has stopped)."""
        with Outbox(State(self.state_dir).outbox_path) as outbox:
            queued = [item.seq for item in outbox.next_batch(10**9)]
            return outbox.highest_seq(), queued, outbox.stats()


def identity_targets() -> list[str]:
    """Files the agent reads its hardware identity from that exist on this machine:
    the machine id, each physical disk's serial and the DMI ids."""
    targets = ["/etc/machine-id"]
    for disk in sorted(Path("/sys/block").iterdir()):
        if "/devices/virtual/" in str(disk.resolve()):
            continue
        names = ("device/serial", "serial", "device/vpd_pg80")
        targets += [str(disk / name) for name in names if (disk / name).exists()]
    dmi = Path("/sys/class/dmi/id")
    names = ("product_uuid", "product_serial", "board_serial")
    targets += [str(dmi / name) for name in names if (dmi / name).exists()]
    return [target for target in targets if Path(target).exists()]


def make_pc(workdir: Path, index: int, config: Path, targets: Sequence[str]) -> Pc:
    """Write PC ``index``'s identity files (own machine id, serials, UUID)."""
    folder = workdir / f"pc{index:02d}"
    ids = folder / "identity"
    ids.mkdir(parents=True)
    mounts = []
    for number, target in enumerate(targets):
        source = ids / f"{number}-{Path(target).name}"
        source.write_text(_fake_value(target, index), encoding="ascii")
        mounts.append((source, target))
    hostname = f"LAB-PC{index:02d}"
    return Pc(index, hostname, folder / "state", config, tuple(mounts))


def _fake_value(target: str, index: int) -> str:
    if target.endswith("vpd_pg80"):
        return ""  # an empty page: no serial shared with the other PCs
    if target.endswith("product_uuid"):
        return f"5c0e1a2b-0000-4000-8000-{index:012d}\n"
    if target == "/etc/machine-id":
        return f"{secrets.token_hex(12)}{index:08d}\n"
    return f"NETLAB-{Path(target).name.upper()}-{index:04d}\n"


# The school ---------------------------------------------------------------------------


@dataclass
class School:
    """A running school behind a link: collector, Internet host and enrolled PCs."""

    link: EmulatedLink
    workdir: Path
    code: str
    interval: int
    db: Path
    http: NamespaceHttp
    pcs: list[Pc]
    running: dict[int, subprocess.Popen] = field(default_factory=dict)

    @property
    def server_url(self) -> str:
        return self.http.base_url

    # agents ---------------------------------------------------------------------

    def start_agents(self) -> None:
        """Start every PC's service loop (``schoolmon-agent run``)."""
        for pc in self.pcs:
            log = open(pc.state_dir.parent / "run.log", "ab")  # noqa: SIM115
            process = subprocess.Popen(
                pc.command(self.link.school_ns, "run"), stdout=log, stderr=log
            )
            log.close()
            self.link.processes.append(process)
            self.running[pc.index] = process
        logger.info("%d agents running in %s", len(self.pcs), self.link.school_ns)

    def stop_agents(self) -> None:
        """SIGTERM the service loops and wait for them to finish their cycle."""
        for process in self.running.values():
            process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.running.clear()

    def once(self, pcs: Sequence[Pc] | None = None) -> dict[int, AgentRun]:
        """One ``schoolmon-agent -v once`` per PC, all at the same time."""
        started = {
            pc.index: subprocess.Popen(
                pc.command(self.link.school_ns, "-v", "once"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for pc in (self.pcs if pcs is None else pcs)
        }
        self.link.processes.extend(started.values())
        return {index: _finished(process) for index, process in started.items()}

    # the link -------------------------------------------------------------------

    def cut(self, side: str = "upstream") -> float:
        """Take the link down; return a wall time by which it surely was down (just
        after the command)."""
        self._set_link(side, "down")
        return self._noted(side, "down", time.time())

    def restore(self, side: str = "upstream") -> float:
        """Bring the link back; return a wall time until which it surely was still
        down (just before the command): a probe started in between may already pass."""
        before = time.time()
        self._set_link(side, "up")
        return self._noted(side, "up", before)

    def _set_link(self, side: str, state: str) -> None:
        device = self.link.dev(CUT_DEVICE[side])
        _run("ip", "-n", self.link.link_ns, "link", "set", device, state)

    def _noted(self, side: str, state: str, at: float) -> float:
        logger.info("link %s (%s side) %s at %.3f", self.link.name, side, state, at)
        return at

    # the collector's database ---------------------------------------------------

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        """Rows of a read-only query on the collector's SQLite file."""
        with contextlib.closing(
            sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        ) as db:
            return db.execute(sql, params).fetchall()

    def device_ids(self) -> dict[int, str]:
        return {pc.index: pc.credential().device_id for pc in self.pcs}

    def up_cycles_since(self, since: float) -> dict[str, int]:
        """Per device, stored cycles whose Internet check succeeded after ``since``."""
        rows = self.rows(
            "SELECT device, COUNT(DISTINCT run || '/' || cycle) FROM probe_samples "
            "WHERE school = ? AND scope = 'internet' AND kind = 'https' AND ok = 1 "
            "AND placed_at >= ? GROUP BY device",
            self.code,
            storage_time(since),
        )
        return dict(rows)

    def logs(self) -> str:
        """The tail of every log of this school (collector, hosts, agents)."""
        files = sorted(self.workdir.glob("*.log")) + sorted(
            self.workdir.glob("pc*/**/*.log")
        )
        tails = [f"--- {f}\n{f.read_text(errors='replace')[-3000:]}" for f in files]
        return self.link.logs() + "\n" + "\n".join(tails)


@dataclass(frozen=True)
class AgentRun:
    """The outcome of one agent command."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def instructions(self) -> list[str]:
        """Instruction kinds the agent logged as received."""
        marker = "instruction from the collector: "
        return [
            line.split(marker, 1)[1].strip()
            for line in self.stderr.splitlines()
            if marker in line
        ]


def _finished(process: subprocess.Popen) -> AgentRun:
    stdout, stderr = process.communicate(timeout=180)
    return AgentRun(process.returncode, stdout, stderr)


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def storage_time(at: float) -> str:
    """A wall time as the collector's database writes instants."""
    return to_storage(datetime.fromtimestamp(at, UTC))


def wall_time(text: str) -> float:
    """A wire or database instant as a wall time (seconds since the epoch)."""
    return parse_wire(text).timestamp()


def wait_for_time(at: float) -> None:
    """Return once the wall clock has reached ``at``."""
    wait_until(
        lambda: time.time() >= at,
        timeout=max(0.0, at - time.time()) + 5,
        interval=0.05,
        message=f"the wall clock did not reach {at}",
    )


# Building the school ------------------------------------------------------------------


@dataclass(frozen=True)
class SchoolSetup:
    """What to build: PCs, probe interval, collector configuration, the agents'
    (connect, probe, read) timeouts (default: scaled with the interval), the link
    and the school."""

    agents: int
    interval: int
    collector_toml: str
    timeouts: tuple[float, float, float] | None = None
    spec: LinkSpec = SCHOOL_LINK
    code: str = "C01"


@contextlib.contextmanager
def school_behind_link(workdir: Path, setup: SchoolSetup) -> Iterator[School]:
    """A school of enrolled lab PCs behind a fresh link; everything is stopped and
    every namespace deleted on exit, also on failure."""
    with EmulatedLink(setup.spec) as link:
        http = NamespaceHttp(
            link.collector_ns, f"http://{link.collector_ip}:{COLLECTOR_PORT}"
        )
        try:
            yield _build(link, http, workdir, setup)
        finally:
            http.close()


def _build(
    link: EmulatedLink, http: NamespaceHttp, workdir: Path, setup: SchoolSetup
) -> School:
    db = workdir / "collector.sqlite3"
    _import_registry(db, workdir, setup.code)
    _start_internet(link)
    _start_collector(link, http, db, workdir, setup.collector_toml)

    config = workdir / "agent.toml"
    internet = f"http://{link.collector_ip}:{INTERNET_PORT}{CHECK_PATH}"
    timeouts = setup.timeouts or scaled_timeouts(setup.interval)
    toml = agent_config(setup.interval, internet, timeouts)
    config.write_text(toml, encoding="utf-8")
    targets = identity_targets()
    pcs = [make_pc(workdir, n + 1, config, targets) for n in range(setup.agents)]
    school = School(link, workdir, setup.code, setup.interval, db, http, pcs)
    _enroll(school, _server_cli(db, "schools", "token", setup.code, "--role", "lab"))
    return school


def _server_cli(db: Path, *args: str) -> str:
    return _run(sys.executable, "-m", "schoolmon.server", *args, "--db", str(db))


def _import_registry(db: Path, workdir: Path, code: str) -> None:
    registry = workdir / "registry.csv"
    registry.write_text(REGISTRY.format(code=code), encoding="utf-8")
    _server_cli(db, "schools", "import", str(registry))


def _start_internet(link: EmulatedLink) -> None:
    ready = link.workdir / "internet.ready"
    link.spawn(
        link.collector_ns,
        "tests.netlab.school",
        *("--host", link.collector_ip, "--port", str(INTERNET_PORT)),
        *("--ready", str(ready)),
    )
    link.wait_ready(ready, "Internet host")


def _start_collector(
    link: EmulatedLink, http: NamespaceHttp, db: Path, workdir: Path, toml: str
) -> None:
    config = workdir / "collector.toml"
    config.write_text(toml, encoding="utf-8")
    serve = [sys.executable, "-m", "schoolmon.server", "serve", "--db", str(db)]
    serve += ["--host", link.collector_ip, "--port", str(COLLECTOR_PORT)]
    serve += ["--config", str(config)]
    log = open(workdir / "collector.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        ["ip", "netns", "exec", link.collector_ns, *serve], stdout=log, stderr=log
    )
    log.close()
    link.processes.append(process)
    wait_until(
        lambda: process.poll() is not None or http.healthy(),
        timeout=30,
        message=f"collector in {link.collector_ns} did not answer /healthz",
    )
    if process.poll() is not None:
        log_text = (workdir / "collector.log").read_text(errors="replace")
        raise RuntimeError(f"collector exited: {log_text[-3000:]}")


def _enroll(school: School, token: str) -> None:
    """Enroll every PC at once with the school's lab token."""
    enroll = ["enroll", "--server", school.server_url, "--token", token.strip()]
    started = [
        subprocess.Popen(
            pc.command(school.link.school_ns, *enroll),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pc in school.pcs
    ]
    school.link.processes.extend(started)
    failed = [run.stderr for run in map(_finished, started) if run.returncode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} enrollments failed: {failed[0]}")
    ids = set(school.device_ids().values())
    if len(ids) != len(school.pcs):
        raise RuntimeError(f"{len(school.pcs)} PCs enrolled as {len(ids)} devices")
    logger.info("%d PCs enrolled in school %s", len(ids), school.code)


# The outage scenario (case net-outage-backfill, compressed in time) -------------------


@dataclass(frozen=True)
class Delivery:
    """What one agent issued during a scenario and what the collector stored of it.

    ``lost`` are seqs issued but neither stored nor still queued; ``doubled`` rows
    beyond one per seq; ``in_order`` whether the stored samples' placed times follow
    their seqs; ``outage_cycles`` the probe cycles run wholly inside the cut, of
    which ``outage_cycles_up`` reached the Internet.
    """

    issued: int
    stored: int
    lost: tuple[int, ...]
    queued: int
    dropped: int
    doubled: int
    in_order: bool
    outage_cycles: int
    outage_cycles_up: int


@dataclass(frozen=True)
class OutageRun:
    """What the collector showed about one cut of the link, and the true times."""

    cut_at: float
    restored_at: float
    outages: list[dict[str, Any]]
    uptime: dict[str, Any]
    uptime_ratio_metric: float
    last_seen_during_cut: tuple[float, float]
    last_seen_after: float
    probe_duplicates_metric: float
    deliveries: dict[str, Delivery]

    @property
    def start_error(self) -> float | None:
        """Seconds from the real cut to the reported outage start."""
        if len(self.outages) != 1:
            return None
        return wall_time(self.outages[0]["start"]) - self.cut_at

    @property
    def end_error(self) -> float | None:
        """Seconds from the real restore to the reported outage end."""
        if len(self.outages) != 1 or self.outages[0]["end"] is None:
            return None
        return wall_time(self.outages[0]["end"]) - self.restored_at


def run_outage(school: School, cut_seconds: float, side: str = "upstream") -> OutageRun:
    """Agents' service loops probe through the link; cut it for ``cut_seconds``,
    restore it, wait until every agent delivered a cycle after the restore, and
    read what the collector shows."""
    school.start_agents()
    started = time.time()
    _wait_up_cycles(school, started - 1, cycles=2)

    cut_at = school.cut(side)
    last_seen = _last_seen_at(school, cut_at + school.interval)
    still = _last_seen_at(school, cut_at + cut_seconds)
    restored_at = school.restore(side)
    _wait_up_cycles(school, restored_at, cycles=1)

    figures = _outage_figures(school)
    school.stop_agents()
    deliveries = {
        pc.credential().device_id: delivery(school, pc, cut_at, restored_at)
        for pc in school.pcs
    }
    return OutageRun(
        cut_at,
        restored_at,
        last_seen_during_cut=(last_seen, still),
        deliveries=deliveries,
        **figures,
    )


def _wait_up_cycles(school: School, since: float, cycles: int) -> None:
    """Wait until every PC has ``cycles`` stored cycles that reached the Internet
    after ``since``."""
    wanted = len(school.pcs)
    try:
        wait_until(
            lambda: (
                sum(n >= cycles for n in school.up_cycles_since(since).values())
                == wanted
            ),
            timeout=school.interval * (cycles + 3),
            interval=0.2,
        )
    except TimeoutError:
        message = f"not all {wanted} agents delivered {cycles} good cycles"
        raise TimeoutError(f"{message}\n{school.logs()}") from None


def _last_seen_at(school: School, at: float) -> float:
    wait_for_time(at + METRICS_SETTLE_SECONDS)
    metric = "schoolmon_school_last_seen_timestamp_seconds"
    return school.http.metric(metric, school=school.code)


def _outage_figures(school: School) -> dict[str, Any]:
    wait_for_time(time.time() + METRICS_SETTLE_SECONDS)
    code = school.code
    outages = school.http.json(f"/api/v1/schools/{code}/outages")["outages"]
    uptime = school.http.json(f"/api/v1/schools/{code}")["figures"]["uptime"]
    metric = school.http.metric
    duplicates = "schoolmon_samples_ingested_total"
    return {
        "outages": outages,
        "uptime": uptime,
        "uptime_ratio_metric": metric(
            "schoolmon_school_internet_uptime_ratio", school=code
        ),
        "last_seen_after": metric(
            "schoolmon_school_last_seen_timestamp_seconds", school=code
        ),
        "probe_duplicates_metric": metric(
            duplicates, kind="probe", outcome="duplicate"
        ),
    }


def delivery(school: School, pc: Pc, cut_at: float, restored_at: float) -> Delivery:
    """Compare what ``pc`` issued with what the collector stored (agent stopped)."""
    device = pc.credential().device_id
    rows = school.rows(
        "SELECT seq, placed_at FROM probe_samples WHERE device = ? "
        "UNION ALL SELECT seq, placed_at FROM speedtests WHERE device = ? "
        "ORDER BY seq",
        device,
        device,
    )
    issued, queued, stats = pc.outbox()
    seqs = [seq for seq, _placed in rows]
    lost = set(range(1, issued + 1)) - set(seqs) - set(queued)
    placed = [placed for _seq, placed in rows]
    cycles = _outage_cycles(school, device, cut_at, restored_at)
    return Delivery(
        issued=issued,
        stored=len(rows),
        lost=tuple(sorted(lost)),
        queued=stats["outbox_items"],
        dropped=sum(stats["dropped_total"].values()),
        doubled=len(seqs) - len(set(seqs)),
        in_order=placed == sorted(placed),
        outage_cycles=len(cycles),
        outage_cycles_up=sum(cycles),
    )


EDGE_SECONDS = 1.0


def _outage_cycles(
    school: School, device: str, cut_at: float, restored_at: float
) -> list[bool]:
    """For each cycle of ``device`` placed wholly inside the cut: did it reach the
    Internet?

    A sample is placed from the collector's receive time, so its place can be off by
    the transit of the report that carried it; one second at each edge of the cut
    keeps a cycle that ran as the link came back from counting as inside it."""
    rows = school.rows(
        "SELECT MIN(placed_at), MAX(placed_at), "
        "MAX(scope = 'internet' AND kind = 'https' AND ok = 1) FROM probe_samples "
        "WHERE device = ? GROUP BY run, cycle",
        device,
    )
    inside = (
        storage_time(cut_at + EDGE_SECONDS),
        storage_time(restored_at - EDGE_SECONDS),
    )
    return [
        bool(up) for first, last, up in rows if inside[0] <= first and last < inside[1]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    serve_internet(args.host, args.port, args.ready)


if __name__ == "__main__":
    main()
