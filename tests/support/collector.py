"""Start a real collector on a free loopback port, in this process or as a child.

``collector_in_thread(app)`` runs a uvicorn server in a thread around an app built by
the test (so the test injects the clock); ``collector_process(db)`` runs
``python -m schoolmon.server serve`` as a subprocess. Both yield the base URL and stop
the server on exit. The ``*_json`` builders make wire documents as design.md shows.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support.waiting import wait_until

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def collector_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yield its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True
    )
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, message="uvicorn did not start")
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def collector_process(
    db: str | Path,
    config: str | Path | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``python -m schoolmon.server serve`` on ``port`` (default: a free one);
    yield (URL, process)."""
    port = port or free_port()
    command = [sys.executable, "-m", "schoolmon.server", "serve", "--db", str(db)]
    command += ["--host", HOST, "--port", str(port)]
    if config is not None:
        command += ["--config", str(config)]
    # The log goes to a file, never a pipe: a pipe nobody reads fills up under
    # steady traffic and stalls the collector in the middle of a test.
    log = Path(tempfile.mkstemp(prefix="schoolmon-collector-", suffix=".log")[1])
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
    url = f"http://{HOST}:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or _healthy(url),
            timeout=20,
            message=f"collector at {url} did not answer /healthz",
        )
        if process.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace"))
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.unlink(missing_ok=True)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wire_time(instant: datetime) -> str:
    """An aware datetime as the agent writes it (ISO 8601 UTC with Z)."""
    from schoolmon.server.clock import to_wire

    return to_wire(instant)


def probe_json(
    seq: int,
    wall_time: datetime,
    run: str = "run-a",
    cycle: int | None = None,
    ok: bool = True,
    scope: str = "internet",
    kind: str = "https",
    **extra: Any,
) -> dict[str, Any]:
    """One probe sample document."""
    sample = {
        "run": run,
        "seq": seq,
        "cycle": seq if cycle is None else cycle,
        "wall_time": wire_time(wall_time),
        "monotonic": None,
        "boot_id": None,
        "target": "https://example.vn/" if scope == "internet" else "collector",
        "scope": scope,
        "kind": kind,
        "ok": ok,
        "duration_seconds": 0.012 if ok else None,
        "reason": None if ok else "timeout",
        "detail": None,
    }
    return sample | extra


def report_json(sent_at: datetime, **parts: Any) -> dict[str, Any]:
    """A report document; ``parts`` fill or override its fields."""
    report = {
        "schema": 1,
        "agent_version": "0.1.0",
        "sent_at": wire_time(sent_at),
        "sent_monotonic": None,
        "boot_id": None,
        "identity": None,
        "inventory": None,
        "probes": [],
        "speedtests": [],
        "health": None,
    }
    return report | parts


def enroll(
    http: httpx.Client, storage: Any, school: str, role: str = "lab", **body: Any
) -> dict[str, Any]:
    """Create a token for ``school`` and enroll one device through the API."""
    from schoolmon.server.auth import hash_secret, new_secret
    from schoolmon.server.clock import utcnow

    token = new_secret()
    storage.add_enrollment_token(hash_secret(token), school, role, utcnow())
    answer = http.post(
        "/api/v1/enroll", json={"token": token, "hostname": "LAB-PC01"} | body
    )
    assert answer.status_code == 201, answer.text
    return answer.json()
