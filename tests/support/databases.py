"""Backend-neutral looks into a ``Storage``'s database, for tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SQLITE_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
)
POSTGRES_TABLES = (
    "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = current_schema()"
)


def table_names(storage: Any) -> list[str]:
    """The tables of the database, by name."""
    sql = POSTGRES_TABLES if storage.postgres else SQLITE_TABLES
    return sorted(row[0] for row in storage.db.execute(sql).fetchall())


def query(storage: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (written with ``?`` marks, as storage.py writes it) run on the
    storage's own connection, whichever the backend."""
    if storage.postgres:
        from schoolmon.server import pg

        sql = pg.translate(sql)
    return [tuple(row) for row in storage.db.execute(sql, list(params)).fetchall()]
