"""The durable queue of everything the agent still has to deliver.

One SQLite file in the state directory (WAL, ``synchronous=FULL``), so a power cut
loses nothing that was queued. Items are probe samples, speed tests, inventories and
health snapshots, each with its per-device ``seq``; they are delivered in order. The
queue is bounded: the oldest probe samples go first, and every drop is counted.
Items the collector refuses for good are moved to ``set_aside`` and never retried.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

KINDS = ("probe", "speedtest", "inventory", "health")
# Kinds of which only the newest matters: a new one replaces a queued one.
LATEST_ONLY = ("inventory", "health")
# Order in which kinds are dropped when the queue is over its bounds.
DROP_ORDER = ("probe", "health", "speedtest", "inventory")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    seq INTEGER,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS set_aside (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    seq INTEGER,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    set_aside_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Item:
    """One queued item."""

    id: int
    kind: str
    seq: int | None
    payload: dict[str, Any]
    size: int
    attempts: int


class Outbox:
    """A bounded, durable, ordered queue in one SQLite file."""

    def __init__(
        self,
        path: Path | str,
        max_items: int = 200_000,
        max_bytes: int = 64 * 1024 * 1024,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._now = now
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def read_only(cls, path: Path) -> Outbox:
        """Open an existing outbox to look at it, changing nothing (``status``)."""
        outbox = cls.__new__(cls)
        outbox.path = str(path)
        outbox.max_items = outbox.max_bytes = 0
        outbox._now = time.time
        outbox._db = sqlite3.connect(
            f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, isolation_level=None
        )
        return outbox

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # meta -------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (key,)
        ).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, ensure_ascii=False)),
        )

    def allocate_seq(self, count: int = 1) -> int:
        """Reserve ``count`` consecutive per-device seqs; return the first."""
        with self._transaction():
            first = int(self.get_meta("next_seq", 1))
            self.set_meta("next_seq", first + count)
        return first

    def highest_seq(self) -> int:
        """The highest seq this state has issued (0 before the first)."""
        return int(self.get_meta("next_seq", 1)) - 1

    def raise_seq(self, at_least: int) -> None:
        """Make the next seq at least ``at_least`` (after a detected restore)."""
        with self._transaction():
            if int(self.get_meta("next_seq", 1)) < at_least:
                self.set_meta("next_seq", at_least)

    # queue ------------------------------------------------------------------

    def put(self, kind: str, payload: dict[str, Any], seq: int | None = None) -> int:
        """Queue an item; return its id. Bounds are enforced right after."""
        if kind not in KINDS:
            raise ValueError(f"unknown outbox kind {kind!r}; expected one of {KINDS}")
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        with self._transaction():
            if kind in LATEST_ONLY:
                self._db.execute("DELETE FROM items WHERE kind = ?", (kind,))
            cursor = self._db.execute(
                "INSERT INTO items (kind, seq, payload, size, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (kind, seq, text, len(text.encode("utf-8")), self._now()),
            )
            self._enforce_bounds(keep=cursor.lastrowid)
        return int(cursor.lastrowid)

    def put_many(self, kind: str, payloads: Iterable[dict[str, Any]]) -> list[int]:
        """Queue several items of one kind, each with the seq it carries."""
        return [self.put(kind, p, p.get("seq")) for p in payloads]

    def _enforce_bounds(self, keep: int) -> None:
        while True:
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items"
            ).fetchone()
            if count <= self.max_items and size <= self.max_bytes:
                return
            if not self._drop_oldest(keep):
                return

    def _drop_oldest(self, keep: int) -> bool:
        for kind in DROP_ORDER:
            row = self._db.execute(
                "SELECT id FROM items WHERE kind = ? AND id != ? ORDER BY id LIMIT 1",
                (kind, keep),
            ).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM items WHERE id = ?", row)
                self._count_drop(kind)
                return True
        return False

    def _count_drop(self, kind: str) -> None:
        dropped = self.get_meta("dropped_total", {})
        dropped[kind] = dropped.get(kind, 0) + 1
        self.set_meta("dropped_total", dropped)
        if dropped[kind] == 1 or dropped[kind] % 1000 == 0:
            logger.warning(
                "outbox full: dropped oldest %s items (%d in total)",
                kind,
                dropped[kind],
            )

    def next_batch(self, max_probes: int, limit: int | None = None) -> list[Item]:
        """The oldest items in order: at most ``max_probes`` probes, ``limit`` items."""
        items: list[Item] = []
        probes = 0
        for row in self._db.execute(
            "SELECT id, kind, seq, payload, size, attempts FROM items ORDER BY id"
        ):
            item = Item(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])
            probes += item.kind == "probe"
            if probes > max_probes or (limit is not None and len(items) >= limit):
                break
            items.append(item)
        return items

    def mark_attempt(self, ids: Iterable[int]) -> None:
        """Count one more delivery attempt for these items."""
        with self._transaction():
            self._db.executemany(
                "UPDATE items SET attempts = attempts + 1 WHERE id = ?",
                [(i,) for i in ids],
            )

    def remove(self, ids: Iterable[int]) -> None:
        """Remove delivered items."""
        with self._transaction():
            self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in ids])

    def replace_payload(self, item_id: int, payload: dict[str, Any]) -> None:
        """Change a queued item's payload (an inventory without its software list)."""
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        self._db.execute(
            "UPDATE items SET payload = ?, size = ? WHERE id = ?",
            (text, len(text.encode("utf-8")), item_id),
        )

    def set_aside(self, item: Item, status: int | None, reason: str) -> None:
        """Move an item the collector refuses for good out of the queue."""
        with self._transaction():
            self._keep_aside(item.kind, item.seq, item.payload, status, reason)
            self._db.execute("DELETE FROM items WHERE id = ?", (item.id,))
        logger.warning(
            "set aside %s item seq=%s (%s bytes): %s",
            item.kind,
            item.seq,
            item.size,
            reason,
        )

    def keep_aside(
        self, kind: str, payload: dict[str, Any], status: int | None, reason: str
    ) -> None:
        """Keep a part of an item (a software list) aside, counted like an item."""
        with self._transaction():
            self._keep_aside(kind, None, payload, status, reason)
        logger.warning("set aside the %s part of a report: %s", kind, reason)

    def _keep_aside(
        self,
        kind: str,
        seq: int | None,
        payload: dict[str, Any],
        status: int | None,
        reason: str,
    ) -> None:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        self._db.execute(
            "INSERT INTO set_aside (kind, seq, payload, size, status, reason, "
            "set_aside_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, seq, text, len(text.encode("utf-8")), status, reason, self._now()),
        )
        self.set_meta("set_aside_total", int(self.get_meta("set_aside_total", 0)) + 1)

    def set_aside_rows(self) -> list[dict[str, Any]]:
        """Everything set aside, oldest first (for inspection and tests)."""
        rows = self._db.execute(
            "SELECT kind, seq, status, reason FROM set_aside ORDER BY id"
        ).fetchall()
        return [
            dict(zip(("kind", "seq", "status", "reason"), r, strict=True)) for r in rows
        ]

    def stats(self) -> dict[str, Any]:
        """Size of the queue and the counters health reports."""
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM items"
        ).fetchone()
        return {
            "outbox_items": int(count),
            "outbox_bytes": int(size),
            "dropped_total": {
                "probes": 0,
                **_plural(self.get_meta("dropped_total", {})),
            },
            "set_aside_total": int(self.get_meta("set_aside_total", 0)),
        }

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


_PLURAL = {"probe": "probes", "speedtest": "speedtests"}


def _plural(counts: dict[str, int]) -> dict[str, int]:
    return {_PLURAL.get(kind, kind): n for kind, n in counts.items()}


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error; re-entrant by depth."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._outer = False

    def __enter__(self) -> None:
        self._outer = not self._db.in_transaction
        if self._outer:
            self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self._outer:
            return
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
