"""The agent's memory and CPU, beside Debian's prometheus-node-exporter.

    python bench/agent_footprint.py [--run-cycles 3] [--quick]

A real collector (``python -m schoolmon.server serve``, core 0) with
``report_interval_seconds = 10`` serves one school. The agent (core 1), enrolled
with ``schoolmon-agent enroll``, probes the collector and a local stand-in for the
Internet targets (the collector's /healthz; there is no Internet here). Measured:

- ``schoolmon-agent once`` twice (the first cycle collects the inventory, the second
  is a normal cycle), and ``once --dry-run``: peak RSS (VmHWM polled from
  /proc/<pid>/status; ru_maxrss is not used, Linux carries it over from the forking
  parent) and CPU seconds (psutil while running; wait4 at exit adds children such
  as dpkg-query);
- ``schoolmon-agent run`` for ``--run-cycles`` cycles: CPU of each cycle (between two
  deliveries, seen in agent.log) and CPU while idle between cycles;
- ``prometheus-node-exporter`` serving one scrape: its RSS after the scrape and the
  CPU the scrape cost.

The agent runs as an installed one does: its modules' bytecode is compiled first
(``compileall``, as pip does at install; the files go to ``agent/__pycache__``,
which git ignores). Otherwise a ``PYTHONDONTWRITEBYTECODE`` in the environment
makes every measured start compile the agent from source (about 1 MiB and 20 ms
more per start).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import schoolmon.agent
from _common import (
    HOST,
    LOAD_CORE,
    SERVER_CORE,
    BenchError,
    collector_argv,
    command_line,
    figure,
    free_port,
    pinned,
    say,
    scratch_dir,
    server_process,
)
from schoolmon.server.auth import hash_secret
from schoolmon.server.clock import utcnow
from schoolmon.server.registry import import_registry
from schoolmon.server.simulate import DEFAULT_REGISTRY
from schoolmon.server.storage import Storage

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
INTERVAL = 10  # the collector's report interval: the smallest it accepts
TARGET_RSS = 40 * 2**20
TARGET_CPU = 0.150
TICK = 1 / os.sysconf("SC_CLK_TCK")
AGENT_CONFIG = """\
interval_seconds = {interval}
jitter_seconds = 0

[[targets]]
name = "collector"
url = "{{server}}/healthz"
scope = "collector"
expect_status = 200
expect_body_contains = "schoolmon"

[[targets]]
name = "internet-stand-in"
url = "{{server}}/healthz"
scope = "internet"
expect_status = 200
"""


@dataclass
class Usage:
    """Resources one process used."""

    peak_rss: int
    cpu: float
    cpu_with_children: float = 0.0
    exit_code: int = 0
    vm_hwm: int = 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.run_cycles = 1
    try:
        with scratch_dir("footprint") as tmp:
            figures = measure(args, tmp)
    except BenchError as error:
        say(f"agent footprint benchmark failed: {error}")
        return 1
    print_figures(args, *figures)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-cycles", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    return parser


def measure(args: argparse.Namespace, tmp: Path) -> tuple:
    """Every measurement; the collector runs for the agent's part only."""
    db, port = tmp / "collector.sqlite3", free_port()
    token = _school_with_token(db)
    config = tmp / "collector.toml"
    config.write_text(
        f"[server]\nreport_interval_seconds = {INTERVAL}\nreport_jitter_seconds = 0\n"
    )
    agent_config = tmp / "agent.toml"
    agent_config.write_text(AGENT_CONFIG.format(interval=INTERVAL))
    state = tmp / "agent-state"
    compile_agent()
    agent = Agent(agent_config, state)

    argv = pinned(collector_argv(db, port, config), SERVER_CORE)
    with server_process("collector", argv, port, tmp) as server:
        agent.check("enroll", "--server", server.url, "--token", token)
        bare = agent.measure("--help")
        first = agent.measure("once")
        second = agent.measure("once")
        dry = agent.measure("once", "--dry-run")
        run = agent.run_cycles(args.run_cycles)
    exporter = node_exporter(tmp)
    return bare, first, second, dry, run, exporter


def _school_with_token(db: Path) -> str:
    storage = Storage(db)
    try:
        import_registry(storage, DEFAULT_REGISTRY, utcnow())
        code = storage.schools()[1]["code"]
        token = "bench-footprint-token"
        storage.add_enrollment_token(hash_secret(token), code, "lab", utcnow())
        return token
    finally:
        storage.close()


# The agent ----------------------------------------------------------------------------


def compile_agent() -> None:
    """Write the agent's bytecode beside its sources, as pip does at install."""
    folder = Path(schoolmon.agent.__file__).parent
    argv = [sys.executable, "-m", "compileall", "-q", str(folder)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise BenchError(f"compileall {folder} failed: {done.stdout.strip()}")


class Agent:
    """``schoolmon-agent`` with one configuration and state directory, on core 1."""

    def __init__(self, config: Path, state: Path) -> None:
        script = shutil.which("schoolmon-agent")
        command = [script] if script else [sys.executable, "-m", "schoolmon.agent"]
        self.command = pinned(command, LOAD_CORE)
        self.config, self.state = config, state

    def argv(self, *args: str) -> list[str]:
        if args[0].startswith("-"):
            return [*self.command, *args]
        return [
            *self.command,
            args[0],
            "--config",
            str(self.config),
            "--state-dir",
            str(self.state),
            *args[1:],
        ]

    def check(self, *args: str) -> None:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True)
        if done.returncode:
            raise BenchError(f"schoolmon-agent {args[0]} failed: {done.stderr.strip()}")

    def measure(self, *args: str) -> Usage:
        """Run a command to its end; its peak RSS and CPU."""
        process = subprocess.Popen(
            self.argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        usage = _watch(process)
        if usage.exit_code:
            error = process.stderr.read().decode(errors="replace").strip()
            raise BenchError(f"schoolmon-agent {' '.join(args)}: {error}")
        return usage

    def run_cycles(self, cycles: int) -> RunUsage:
        """``schoolmon-agent run`` for ``cycles`` deliveries and the idle after each."""
        process = subprocess.Popen(
            self.argv("run"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            return _follow_run(process, self.state / "agent.log", cycles)
        finally:
            process.terminate()
            process.wait(15)


@dataclass
class RunUsage:
    """``schoolmon-agent run``: CPU per cycle, CPU while idle, memory."""

    cycle_cpu: list[float]
    idle_cpu: list[float]
    idle_seconds: list[float]
    peak_rss: int
    idle_rss: int


def _follow_run(process: subprocess.Popen, log: Path, cycles: int) -> RunUsage:
    proc = psutil.Process(process.pid)
    usage = RunUsage([], [], [], 0, 0)
    started_cpu = 0.0
    for number in range(1, cycles + 1):
        cpu = _wait_delivery(process, proc, log, number)
        usage.cycle_cpu.append(cpu - started_cpu)
        time.sleep(1.0)  # the cycle ends (answer applied) well within a second
        idle_from, idle_at = _cpu(proc), time.monotonic()
        time.sleep(INTERVAL - 2.5)
        usage.idle_cpu.append(_cpu(proc) - idle_from)
        usage.idle_seconds.append(time.monotonic() - idle_at)
        started_cpu = _cpu(proc)
    usage.peak_rss = _status(process.pid)["VmHWM"]
    usage.idle_rss = _status(process.pid)["VmRSS"]
    return usage


def _wait_delivery(
    process: subprocess.Popen, proc: psutil.Process, log: Path, number: int
) -> float:
    deadline = time.monotonic() + INTERVAL + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"schoolmon-agent run exited with {process.returncode}")
        if _deliveries(log) >= number:
            return _cpu(proc)
        time.sleep(0.02)
    raise BenchError(f"schoolmon-agent run delivered no report {number} in time")


def _deliveries(log: Path) -> int:
    if not log.exists():
        return 0
    return log.read_text(encoding="utf-8", errors="replace").count("report of ")


# Measuring processes ------------------------------------------------------------------


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _status(pid: int) -> dict[str, int]:
    """The memory lines of /proc/<pid>/status, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                values[name] = int(value.split()[0]) * 1024
    return values


def _watch(process: subprocess.Popen) -> Usage:
    """Poll VmHWM and CPU until the process exits; reap it with wait4."""
    proc = psutil.Process(process.pid)
    peak, cpu = 0, 0.0
    while True:
        try:
            peak = max(peak, _status(process.pid)["VmHWM"])
            cpu = _cpu(proc)
        except (OSError, KeyError, psutil.Error):
            pass  # exiting between two reads: wait4 below has the final figures
        if psutil.pid_exists(process.pid) and proc.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.005)
    _, status, rusage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Usage(
        peak_rss=peak,
        cpu=cpu,
        cpu_with_children=rusage.ru_utime + rusage.ru_stime,
        exit_code=process.returncode,
    )


def node_exporter(tmp: Path) -> Usage:
    """node_exporter's RSS after one scrape, and the CPU that scrape cost."""
    if not Path(NODE_EXPORTER).exists():
        raise BenchError(f"{NODE_EXPORTER} is not installed")
    port = free_port()
    argv = [NODE_EXPORTER, f"--web.listen-address={HOST}:{port}"]
    with server_process("node_exporter", pinned(argv, LOAD_CORE), port, tmp) as server:
        proc = psutil.Process(server.process.pid)
        time.sleep(1.0)  # start-up work done before the scrape
        before = _cpu(proc)
        response = httpx.get(f"{server.url}/metrics", timeout=30)
        if response.status_code != 200:
            raise BenchError(f"node_exporter answered {response.status_code}")
        time.sleep(0.2)
        memory = _status(server.process.pid)
        return Usage(memory["VmRSS"], _cpu(proc) - before, vm_hwm=memory["VmHWM"])


# Output -------------------------------------------------------------------------------


def _mb(value: int) -> str:
    return f"{value / 2**20:.1f} MiB"


def print_figures(
    args: argparse.Namespace,
    bare: Usage,
    first: Usage,
    second: Usage,
    dry: Usage,
    run: RunUsage,
    exporter: Usage,
) -> None:
    """Each figure beside its target."""
    limit = min(TARGET_RSS, 1.5 * exporter.peak_rss)
    target = f"<= {_mb(limit)}"
    say(f"agent footprint benchmark: {command_line()}")
    say(
        figure(
            "node_exporter RSS after one scrape",
            _mb(exporter.peak_rss),
            "reference",
            None,
        )
    )
    say(figure("node_exporter VmHWM", _mb(exporter.vm_hwm), "-", None))
    say(
        figure(
            "node_exporter CPU for one scrape",
            f"{exporter.cpu * 1000:.0f} ms",
            "-",
            None,
        )
    )
    say(figure("start-up only (--help): peak RSS", _mb(bare.peak_rss), "-", None))
    say(
        figure(
            "start-up only (--help): CPU",
            f"{bare.cpu_with_children * 1000:.0f} ms",
            "-",
            None,
        )
    )
    for name, usage in (
        ("once, 1st (inventory)", first),
        ("once, 2nd (normal cycle)", second),
        ("once --dry-run", dry),
    ):
        say(
            figure(
                f"{name}: peak RSS",
                _mb(usage.peak_rss),
                target,
                usage.peak_rss <= limit,
            )
        )
        say(
            figure(
                f"{name}: CPU (children)",
                f"{usage.cpu_with_children * 1000:.0f} "
                f"({(usage.cpu_with_children - usage.cpu) * 1000:.0f}) ms",
                "< 150 ms",
                usage.cpu_with_children < TARGET_CPU,
            )
        )
    for number, cpu in enumerate(run.cycle_cpu, start=1):
        what = "start-up + 1st cycle" if number == 1 else f"cycle {number}"
        met = None if number == 1 else cpu < TARGET_CPU
        say(figure(f"run, {what}: CPU", f"{cpu * 1000:.0f} ms", "< 150 ms", met))
    for idle, seconds in zip(run.idle_cpu, run.idle_seconds, strict=True):
        say(
            figure(
                f"run, idle {seconds:.1f} s between cycles: CPU",
                f"{idle * 1000:.0f} ms",
                f"< 1 tick ({TICK * 1000:.0f} ms)",
                idle < TICK,
            )
        )
    say(figure("run: peak RSS", _mb(run.peak_rss), target, run.peak_rss <= limit))
    say(figure("run: RSS while idle", _mb(run.idle_rss), target, run.idle_rss <= limit))


if __name__ == "__main__":
    sys.exit(main())
