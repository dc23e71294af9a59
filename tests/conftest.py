"""Fixtures shared by the test suites: a movable clock, a real database (a SQLite
file, or a PostgreSQL database for modules marked ``databases``), an app built around
them, and that app served by uvicorn on a loopback port."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.support.postgres"]

# Tuesday 1 December 2026, 09:00 in Asia/Ho_Chi_Minh: a school day, in session.
SCHOOL_MORNING = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)

SMALL_REGISTRY = [
    {
        "code": "C01",
        "name": "Trường Tiểu học Cẩm Phúc",
        "level": "primary",
        "commune": "Cẩm Phúc",
        "has_informatics": True,
        "students": 420,
    },
    {
        "code": "C02",
        "name": "Trường THCS Cẩm Phúc",
        "level": "lower_secondary",
        "commune": "Cẩm Phúc",
        "has_informatics": True,
        "lab_pcs_required": 20,
    },
    {
        "code": "C03",
        "name": "Trường Mầm non Cẩm Điền",
        "level": "preschool",
        "commune": "Cẩm Điền",
    },
]


@pytest.fixture
def clock() -> Any:
    """A clock standing at a school morning until the test moves it."""
    from schoolmon.server.clock import ManualClock

    return ManualClock(SCHOOL_MORNING)


@pytest.fixture
def config() -> Any:
    """The default collector configuration."""
    from schoolmon.server.config import Config

    return Config()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "schoolmon.sqlite3"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of a module marked ``databases("sqlite", "postgresql")`` that use a
    database run once per backend named."""
    marker = metafunc.definition.get_closest_marker("databases")
    if marker is not None and "db_target" in metafunc.fixturenames:
        postgres = pytest.mark.postgres
        backends = [
            pytest.param(name, marks=postgres) if name == "postgresql" else name
            for name in marker.args
        ]
        metafunc.parametrize("db_target", backends, indirect=True)


@pytest.fixture
def db_target(request: pytest.FixtureRequest, db_path: Path) -> str:
    """What ``Storage`` opens: the SQLite file ``db_path`` or, for the
    ``postgresql`` parameter, a fresh PostgreSQL database's URL."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgresql":
        return request.getfixturevalue("postgres_url")
    if backend != "sqlite":
        raise ValueError(f"unknown database backend {backend!r}")
    return str(db_path)


@pytest.fixture
def storage(db_target: str) -> Iterator[Any]:
    """A real database: a SQLite file in a temporary directory (or PostgreSQL)."""
    from schoolmon.server.storage import Storage

    storage = Storage(db_target)
    yield storage
    storage.close()


@pytest.fixture
def registered(storage: Any, clock: Any) -> Any:
    """The storage with three schools (C01 primary, C02 THCS, C03 preschool)."""
    storage.import_schools([dict(row) for row in SMALL_REGISTRY], clock())
    return storage


@pytest.fixture
def app(config: Any, registered: Any, clock: Any) -> Any:
    """The collector app around the registered storage and the movable clock."""
    from schoolmon.server.api import create_app

    return create_app(config, registered, clock, rng=random.Random(7))


@pytest.fixture
def collector_url(app: Any) -> Iterator[str]:
    """The app served by a real uvicorn on a free loopback port."""
    from tests.support.collector import collector_in_thread

    with collector_in_thread(app) as url:
        yield url


@pytest.fixture
def http(collector_url: str) -> Iterator[Any]:
    """An HTTP client pointed at the served collector."""
    import httpx

    with httpx.Client(base_url=collector_url, timeout=10) as client:
        yield client


# No test may reach beyond this machine: there is no Internet here, and traffic to
# any address but loopback and the test namespaces' own hosts is a defect. This guard
# makes an accidental attempt fail loudly in-process instead of leaking a DNS query
# or a connection (subprocesses are configured with local targets only).
_ALLOWED_NETS = ("127.", "::1", "10.231.", "localhost")


def _allowed(host: object) -> bool:
    if host is None:
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    return text == "" or text.startswith(_ALLOWED_NETS)


@pytest.fixture(autouse=True)
def _no_traffic_beyond_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _allowed(host):
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: {host!r} is off")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not _allowed(address[0]):
            raise ConnectionRefusedError(f"test guard: {address[0]!r} is off")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
