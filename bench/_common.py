"""What the benchmarks share: processes on pinned cores, a lean HTTP load generator,
percentiles and the printed figure lines.

The load generator speaks HTTP/1.1 over asyncio streams with requests built in
advance (headers and gzip body as one bytes object) on keep-alive connections, so
its own cost per request is a socket write and a header parse. It can run closed
(every connection sends as fast as it is answered) or open (a fixed rate, latency
measured from the scheduled instant so a slow server cannot hide its queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
SERVER_CORE = 0
LOAD_CORE = 1


class BenchError(RuntimeError):
    """A benchmark could not measure what it was asked to; the message says why."""


# Output -------------------------------------------------------------------------------


def say(line: str = "") -> None:
    """One line of a benchmark's printed result (the benchmarks are commands)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def command_line() -> str:
    """The command that made these figures, as it can be typed again."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def figure(name: str, value: str, target: str, met: bool | None) -> str:
    """A result line: name, value, target and whether the target is met."""
    verdict = {True: "met", False: "MISSED", None: "-"}[met]
    return f"  {name:<52} {value:>18}   target {target:<18} {verdict}"


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile (0-1) of ``values`` by the nearest-rank method."""
    if not values:
        raise BenchError("no values to take a percentile of")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


# Processes ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def pin_self(core: int) -> None:
    """Run this process (the load generator) on ``core`` only, when it exists."""
    if core < os.cpu_count():
        os.sched_setaffinity(0, {core})


def pinned(argv: Sequence[str], core: int) -> list[str]:
    """``argv`` under ``taskset -c core``."""
    return ["taskset", "-c", str(core), *argv]


@dataclass
class Server:
    """A server child process listening on loopback, its log in a file."""

    name: str
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        """User plus system CPU the server has used so far."""
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def log_tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def server_process(
    name: str, argv: Sequence[str], port: int, log_dir: Path, timeout: float = 30.0
) -> Iterator[Server]:
    """Start ``argv`` (which listens on ``port``), wait until it accepts, stop it."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
    server = Server(name, process, port, log_path)
    try:
        _wait_listening(server, timeout)
        yield server
    finally:
        stop_process(process)


def _wait_listening(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"{server.name} exited with {server.process.returncode}:\n"
                f"{server.log_tail()}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection((HOST, server.port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise BenchError(f"{server.name} did not listen on port {server.port} in time")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("process %d ignored SIGTERM; killing it", process.pid)
        process.kill()
        process.wait()


def collector_argv(db: Path, port: int, config: Path | None = None) -> list[str]:
    """The real collector, as an operator starts it."""
    argv = [sys.executable, "-m", "schoolmon.server", "serve", "--db", str(db)]
    argv += ["--host", HOST, "--port", str(port)]
    if config is not None:
        argv += ["--config", str(config)]
    return argv


def bare_argv(port: int) -> list[str]:
    """The reference: a trivial FastAPI app on the same uvicorn, same defaults."""
    return [sys.executable, str(REPO / "bench" / "bare_app.py"), "--port", str(port)]


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed on exit, whatever happens."""
    with tempfile.TemporaryDirectory(prefix=f"schoolmon-{prefix}-") as name:
        yield Path(name)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL cluster from Debian's packages (the tests' own,
    ``tests/support/postgres.py``) with one empty database; yield its URL."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.support.postgres import binaries, running_cluster

    bin_dir = binaries()
    if bin_dir is None:
        raise BenchError("PostgreSQL is not installed (Debian package postgresql)")
    with running_cluster(bin_dir) as cluster:
        yield cluster.create_database()


@contextlib.contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """Sample ``pid`` with py-spy into ``output`` (collapsed stacks) while inside."""
    if output is None:
        yield
        return
    argv = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--gil"]
    argv += ["--format", "raw", "--nonblocking", "--output", str(output)]
    try:
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except FileNotFoundError as error:
        raise BenchError("--profile needs py-spy: pip install py-spy") from error
    try:
        time.sleep(0.5)  # py-spy attaches before the load starts
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


# Load generator -----------------------------------------------------------------------


def post_request(port: int, path: str, body: bytes, credential: str) -> bytes:
    """A whole HTTP/1.1 POST of a gzip JSON body, ready to write to a socket."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Authorization: Bearer {credential}\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


@dataclass
class LoadResult:
    """What one load phase measured."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    answers: list[bytes] = field(default_factory=list)
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    server_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.latencies)

    @property
    def per_second(self) -> float:
        return self.done / self.elapsed if self.elapsed else 0.0

    @property
    def generator_load(self) -> float:
        """Share of one core the generator itself used during the phase."""
        return self.cpu_seconds / self.elapsed if self.elapsed else 0.0

    @property
    def server_ms_per_request(self) -> float:
        """Server CPU milliseconds per answered request."""
        return 1000 * self.server_cpu / self.done if self.done else 0.0

    @property
    def server_load(self) -> float:
        """Share of its core the server used during the phase."""
        return self.server_cpu / self.elapsed if self.elapsed else 0.0

    def accepted(self, kind: str) -> int:
        """Sum of ``accepted[kind]`` over the JSON answers kept."""
        return sum(json.loads(a).get("accepted", {}).get(kind, 0) for a in self.answers)


@dataclass
class Load:
    """A load phase: per-connection queues of ready requests, closed or open loop.

    ``queues`` holds one list per connection; a device's reports belong to one
    queue, so they go in order, one at a time, as a real agent sends them.
    """

    port: int
    queues: list[list[bytes]]
    rate: float | None = None
    time_limit: float = 60.0
    keep_answers: bool = False

    def run(self) -> LoadResult:
        result = LoadResult()
        cpu, started = time.process_time(), time.perf_counter()
        asyncio.run(self._run(result, started))
        result.elapsed = time.perf_counter() - started
        result.cpu_seconds = time.process_time() - cpu
        return result

    async def _run(self, result: LoadResult, started: float) -> None:
        deadline = started + self.time_limit
        ticket = iter(range(sum(len(q) for q in self.queues)))
        tasks = [
            self._connection(queue, result, deadline, ticket, started)
            for queue in self.queues
            if queue
        ]
        await asyncio.gather(*tasks)

    async def _connection(
        self,
        queue: list[bytes],
        result: LoadResult,
        deadline: float,
        ticket: Iterator[int],
        started: float,
    ) -> None:
        reader, writer = await asyncio.open_connection(HOST, self.port, limit=2**22)
        try:
            for request in queue:
                if time.perf_counter() >= deadline:
                    return
                begin = await self._wait_turn(next(ticket), started)
                writer.write(request)
                status, body = await read_response(reader)
                result.latencies.append(time.perf_counter() - begin)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if self.keep_answers:
                    result.answers.append(body)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            # A dropped connection ends this connection's share, counted as an error.
            result.errors.append(f"{type(error).__name__}: {error}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _wait_turn(self, number: int, started: float) -> float:
        if self.rate is None:
            return time.perf_counter()
        scheduled = started + number / self.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return scheduled


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise ValueError(f"response {lines[0]!r} has no Content-Length")
    return status, await reader.readexactly(length)


def split_round_robin(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` dealt into ``parts`` lists, keeping their order within each."""
    return [list(items[i::parts]) for i in range(parts)]
