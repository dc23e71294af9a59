"""The school registry: a CSV list of schools as districts keep it, read all or nothing.

Accepts UTF-8 with or without BOM, comma or semicolon separators, CRLF line ends and
trailing empty lines (what Excel on a Vietnamese Windows saves). Columns schoolmon
does not use (notes, phone numbers) are ignored with a warning naming them. Every bad
line is reported with its number, the column and what would be accepted; nothing is
imported unless the whole file is good.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from schoolmon.server.auth import hash_secret, new_secret
from schoolmon.server.config import LEVELS
from schoolmon.server.storage import ImportSummary, Storage

logger = logging.getLogger(__name__)

REQUIRED = ("code", "name", "level", "commune")
OPTIONAL = (
    "has_informatics",
    "lab_pcs_required",
    "students",
    "contracted_download_mbps",
    "latitude",
    "longitude",
)
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
LEVEL_ALIASES = {
    "mầm non": "preschool",
    "mẫu giáo": "preschool",
    "tiểu học": "primary",
    "thcs": "lower_secondary",
    "trung học cơ sở": "lower_secondary",
    "thpt": "upper_secondary",
    "trung học phổ thông": "upper_secondary",
    "khác": "other",
}
TRUE_WORDS = {"1", "true", "yes", "y", "x", "có", "co"}
FALSE_WORDS = {"0", "false", "no", "n", "không", "khong"}


class RegistryError(ValueError):
    """The registry file cannot be imported; ``problems`` lists every fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Cell:
    """One value being read, with where it came from for error messages."""

    line: int
    column: str
    text: str


@dataclass(frozen=True)
class RegistryFile:
    """A parsed registry: its school rows and warnings about what was left aside."""

    rows: list[dict[str, Any]]
    warnings: tuple[str, ...] = ()


def read_registry(path: str | Path) -> list[dict[str, Any]]:
    """Parse a registry file into school rows; raise RegistryError listing faults."""
    return load_registry(path).rows


def load_registry(path: str | Path) -> RegistryFile:
    """Parse a registry file into rows and warnings; raise RegistryError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise RegistryError([f"{path}: cannot read: {error.strerror}"]) from error
    text = _decode(raw, path)
    return parse_registry(text, source=str(path))


def parse_registry(text: str, source: str = "registry") -> RegistryFile:
    """Parse registry text (already decoded) into school rows and warnings."""
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise RegistryError([f"{source}: the file is empty; expected a header line"])
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)

    header, warnings = _read_header(next(reader), source)
    rows, problems, first_line = [], [], {}
    for record in reader:
        line = reader.line_num
        if not any(value.strip() for value in record):
            continue
        row, row_problems = _read_row(header, record, line, source)
        problems += row_problems
        if row is not None and row["code"] in first_line:
            earlier = first_line[row["code"]]
            problems.append(
                f"{source} line {line}, column code: {row['code']!r} is already on "
                f"line {earlier}; each school code once"
            )
        elif row is not None:
            first_line[row["code"]] = line
            rows.append(row)
    if problems:
        raise RegistryError(problems)
    return RegistryFile(rows, tuple(warnings))


def import_registry(
    storage: Storage,
    path: str | Path,
    now: datetime,
    on_warning: Callable[[str], None] = logger.warning,
) -> ImportSummary:
    """Read ``path`` and upsert it into ``storage`` as the whole registry.

    Each warning (an ignored column) is handed to ``on_warning`` (default: the log).
    """
    registry = load_registry(path)
    for warning in registry.warnings:
        on_warning(warning)
    summary = storage.import_schools(registry.rows, now)
    logger.info(
        "registry %s imported: %d added, %d updated, %d unchanged, %d deactivated",
        path,
        len(summary.added),
        len(summary.updated),
        len(summary.unchanged),
        len(summary.deactivated),
    )
    return summary


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise RegistryError(
            [
                f"{path} line {line}: byte 0x{raw[error.start]:02X} is not UTF-8 text; "
                "save it as UTF-8 (in Excel: Save As, 'CSV UTF-8') and import again"
            ]
        ) from None


def _read_header(record: list[str], source: str) -> tuple[list[str], list[str]]:
    """The column names, and warnings naming the columns that will be ignored."""
    header = [_clean(name).lower() for name in record]
    unknown = [name for name in header if name not in READERS]
    ignored = list(dict.fromkeys(_ignored_column(name, source) for name in unknown))
    problems = [
        f"{source} line 1: required column {name!r} is missing; "
        f"the header needs {', '.join(REQUIRED)}"
        for name in REQUIRED
        if name not in header
    ]
    duplicated = sorted({n for n in header if n in READERS and header.count(n) > 1})
    problems += [
        f"{source} line 1: column {name!r} appears twice" for name in duplicated
    ]
    if problems:
        raise RegistryError(problems + ignored)
    return header, ignored


def _ignored_column(name: str, source: str) -> str:
    if not name:
        return f"{source} line 1: a column without a name is ignored"
    warning = f"{source} line 1: column {name!r} is not used by schoolmon; ignored"
    close = difflib.get_close_matches(name, REQUIRED + OPTIONAL, n=1, cutoff=0.8)
    return warning + (f" (did you mean {close[0]!r}?)" if close else "")


def _read_row(
    header: list[str], record: list[str], line: int, source: str
) -> tuple[dict[str, Any] | None, list[str]]:
    if len(record) > len(header) and any(v.strip() for v in record[len(header) :]):
        return None, [
            f"{source} line {line}: {len(record)} values for {len(header)} columns; "
            "check the separators and quotes"
        ]
    values = dict(zip(header, record, strict=False))
    row, problems = {}, []
    for column in (name for name in header if name in READERS):
        cell = Cell(line, column, _clean(values.get(column, "")))
        try:
            row[column] = READERS[column](cell)
        except ValueError as error:
            problems.append(f"{source} line {line}, column {column}: {error}")
    return (None if problems else row), problems


def _clean(text: str) -> str:
    return unicodedata.normalize("NFC", text.replace("\ufeff", "")).strip()


def _code(cell: Cell) -> str:
    if not CODE_PATTERN.fullmatch(cell.text):
        raise ValueError(
            f"{cell.text!r} is not a school code; accepted: 1-32 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return cell.text


def _required_text(cell: Cell) -> str:
    if not cell.text:
        raise ValueError(f"the {cell.column} is empty; a {cell.column} is required")
    if len(cell.text) > 200:
        raise ValueError(f"the {cell.column} is longer than 200 characters")
    return cell.text


def _level(cell: Cell) -> str:
    return school_level(cell.text)


def school_level(text: str) -> str:
    """The level code of a level word as districts write it (``THCS``, ``mầm non``,
    ``primary``); raise ValueError naming it and the accepted words."""
    word = unicodedata.normalize("NFC", text).strip().lower()
    level = word if word in LEVELS else LEVEL_ALIASES.get(word)
    if level is None:
        raise ValueError(
            f"{text!r} is not a school level; accepted: {', '.join(LEVELS)} "
            "(or mầm non, tiểu học, THCS, THPT)"
        )
    return level


def _flag(cell: Cell) -> bool | None:
    word = cell.text.lower()
    if not word:
        return None
    if word in TRUE_WORDS | FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError(
        f"{cell.text!r} is not yes or no; accepted: 1/0, true/false, yes/no, có/không "
        "or empty (unknown)"
    )


def _count(cell: Cell) -> int | None:
    if not cell.text:
        return None
    if not cell.text.isdigit() or not cell.text.isascii():
        raise ValueError(f"{cell.text!r} is not a whole number; accepted: e.g. 350")
    return int(cell.text)


def _number(cell: Cell, low: float, high: float, example: str) -> float | None:
    if not cell.text:
        return None
    text = cell.text.replace(",", ".") if "." not in cell.text else cell.text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ValueError(
            f"{cell.text!r} is not a number from {low:g} to {high:g}; "
            f"accepted: e.g. {example} or {example.replace('.', ',')}"
        )
    return value


def _bounded(low: float, high: float, example: str) -> Callable[[Cell], float | None]:
    return lambda cell: _number(cell, low, high, example)


READERS: dict[str, Callable[[Cell], Any]] = {
    "code": _code,
    "name": _required_text,
    "level": _level,
    "commune": _required_text,
    "has_informatics": _flag,
    "lab_pcs_required": _count,
    "students": _count,
    "contracted_download_mbps": _bounded(0.01, 100_000, "40.5"),
    "latitude": _bounded(-90, 90, "20.95"),
    "longitude": _bounded(-180, 180, "106.21"),
}


def issue_enrollment_tokens(
    storage: Storage, wanted: Iterable[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], str]:
    """New enrollment tokens for ``(school code, role)`` pairs, in one transaction.

    Each token is shown only here; the database keeps its hash. A school that is not
    an active school of the registry gets none: RegistryError names it.
    """
    tokens = {}
    with storage.transaction():
        active = {row["code"] for row in storage.schools(active_only=True)}
        for code, role in wanted:
            if code not in active:
                state = (
                    "is inactive" if storage.school(code) else "is not in the registry"
                )
                raise RegistryError([f"school {code!r} {state}; see 'schools list'"])
            token = new_secret()
            storage.add_enrollment_token(hash_secret(token), code, role, now)
            tokens[(code, role)] = token
    logger.info("%d enrollment tokens created", len(tokens))
    return tokens
