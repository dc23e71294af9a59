"""A throwaway PostgreSQL cluster for the tests, from Debian's ``postgresql`` package.

One cluster per test session (``initdb`` into a temporary directory, trust
authentication, loopback on a free port, ``fsync=on`` as in production), and a fresh
empty database per test. Without the binaries the tests that need them are skipped,
except under CI (``CI`` set), where a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BINARIES = "/usr/lib/postgresql/*/bin"
_numbers = itertools.count(1)


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory holding initdb and pg_ctl."""
    found = [
        Path(folder)
        for folder in glob.glob(BINARIES)
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file()
    ]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A running cluster in ``root``; ``url(name)`` addresses one of its databases."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir, self.root = bin_dir, root
        self.data, self.port = root / "data", _free_port()
        self._as_postgres = (
            ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run(
            "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=on"
        )
        log = self.root / "server.log"
        self._run("pg_ctl", "-w", "-D", self.data, "-l", log, "-o", options, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-w", "-D", self.data, "-m", "fast", "stop")

    def create_database(self) -> str:
        """A new empty database's URL."""
        import psycopg

        name = f"test_{next(_numbers)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _run(self, tool: str, *args: object) -> None:
        command = [*self._as_postgres, str(self.bin_dir / tool), *map(str, args)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode:
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr.strip()}"
            )


@contextlib.contextmanager
def running_cluster(bin_dir: Path) -> Iterator[Cluster]:
    """A cluster of the binaries in ``bin_dir`` started in a new temporary
    directory (owned by the ``postgres`` user when run as root), stopped and
    removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="schoolmon-pg-"))
    if os.getuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = Cluster(bin_dir, root)
    try:
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster for the whole session, removed at its end."""
    bin_dir = binaries()
    if bin_dir is None:
        reason = f"PostgreSQL is not installed (no initdb and pg_ctl under {BINARIES})"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    with running_cluster(bin_dir) as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> Iterator[str]:
    """A fresh empty database of the session's cluster, as a postgresql:// URL."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url)
