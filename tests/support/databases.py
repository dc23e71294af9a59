"""Backend-neutral looks into a ``Storage``'s database, for tests."""

from __future__ import annotations

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
