"""PostgreSQL connections for the collector's storage, through psycopg 3.

``storage.py`` writes its SQL once, in the dialect SQLite and PostgreSQL share
(``?`` parameters, ``ON CONFLICT``); ``translate`` turns it into psycopg's (``%s``
parameters, a literal ``%`` doubled, SQLite's ``INDEXED BY`` hints dropped). Values
go in as SQLite stores them: a bool as the integer 0 or 1. PostgreSQL's text cannot
hold the character NUL, which SQLite's can and an agent may send: it is stored as
U+FFFD (the replacement character), in text columns as inside JSON (``json_of``).
"""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.adapt import Dumper
from psycopg.types.string import StrDumperUnknown

SCHEMES = ("postgresql://", "postgres://")
WRITE_LOCK = 0x5C4001
"""The ``pg_advisory_xact_lock`` key every write transaction (and each migration)
holds: one writer at a time across all collector processes, as SQLite's lock."""

CONNECT_TIMEOUT = 10
"""Seconds to wait for the database server when the URL does not say."""

_INDEXED_BY = re.compile(r"\s+INDEXED BY \w+")
_PASSWORD_PARAMETER = re.compile(r"(?<=[?&]password=)[^&#]*")
_INT8 = psycopg.adapters.types["int8"].oid


def is_url(target: str) -> bool:
    """True when ``target`` names a PostgreSQL database rather than a SQLite file."""
    return target.startswith(SCHEMES)


def redact(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter)
    replaced by ``***``, for messages."""
    url = _PASSWORD_PARAMETER.sub("***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class _BoolAsInteger(Dumper):
    """Flags are INTEGER columns on both backends: True goes in as 1."""

    oid = _INT8

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _TextWithoutNul(StrDumperUnknown):
    """Text as psycopg sends it, NUL replaced (PostgreSQL refuses it in text)."""

    def dump(self, obj: str) -> bytes:
        return super().dump(obj.replace("\x00", "\ufffd"))


def connect(url: str, read_only: bool = False) -> psycopg.Connection:
    """A connection in autocommit mode (transactions are begun explicitly). An
    unreachable server fails after ``CONNECT_TIMEOUT`` seconds unless the URL sets
    its own ``connect_timeout``."""
    options = {} if "connect_timeout=" in url else {"connect_timeout": CONNECT_TIMEOUT}
    conn = psycopg.connect(url, autocommit=True, **options)
    conn.adapters.register_dumper(bool, _BoolAsInteger)
    conn.adapters.register_dumper(str, _TextWithoutNul)
    if read_only:
        conn.execute("SET default_transaction_read_only = on")
    return conn


def json_of(column: str) -> str:
    """SQL reading the JSON text ``column`` as ``jsonb``: parsed once, then each path
    is a cheap lookup (``json`` would parse the whole text again for every path). Its
    values decode as stored, but for a float written with an exponent (``1e+16``),
    which comes back as the integer it equals. PostgreSQL cannot decode the escape
    ``\\u0000``, which SQLite can and an inventory may hold: it reads as U+FFFD."""
    return rf"replace({column}, '\u0000', '\ufffd')::jsonb"


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite-flavoured SQL of ``storage.py`` as psycopg takes it."""
    return _INDEXED_BY.sub("", sql).replace("%", "%%").replace("?", "%s")
