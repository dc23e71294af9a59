"""Hardware and software inventory of this machine.

``collect()`` is the one front: it picks the platform's section readers, runs each
with its own timeout and error capture, and wraps its data in the section envelope
of design.md. Callers never branch on the platform.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from schoolmon.agent.inventory.normalize import canonical_hash

logger = logging.getLogger(__name__)

SECTIONS = (
    "system",
    "cpu",
    "memory",
    "disks",
    "network",
    "os",
    "software",
    "battery",
    "monitors",
)
DEFAULT_TIMEOUT = 30.0
SectionFunction = Callable[[list[str]], dict]


def iso_utc(timestamp: float | None) -> str | None:
    """Format a POSIX timestamp as the wire's ISO 8601 UTC with ``Z``."""
    if timestamp is None:
        return None
    instant = datetime.fromtimestamp(timestamp, UTC).replace(microsecond=0)
    return instant.isoformat().replace("+00:00", "Z")


def platform_sections(timeout: float = DEFAULT_TIMEOUT) -> dict[str, SectionFunction]:
    """The section readers of the running platform (empty where none exist)."""
    if sys.platform.startswith("linux"):
        from schoolmon.agent.inventory import _linux

        return _linux.section_functions()
    if sys.platform == "win32":
        from schoolmon.agent.inventory import _windows

        return _windows.section_functions(timeout)
    return {}


def collect(
    sections: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    readers: Mapping[str, SectionFunction] | None = None,
    now: Callable[[], float] = time.time,
) -> dict[str, dict[str, Any]]:
    """Collect inventory sections, each wrapped in its envelope.

    ``readers`` replaces the platform's section readers (a seam for tests).
    """
    wanted = list(SECTIONS if sections is None else sections)
    unknown = [name for name in wanted if name not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown inventory section(s) {unknown}; known: {SECTIONS}")

    readers = platform_sections(timeout) if readers is None else readers
    return {name: run_section(name, readers.get(name), timeout, now) for name in wanted}


def run_section(
    name: str,
    reader: SectionFunction | None,
    timeout: float,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Run one section reader in a thread with a timeout; never raises."""
    collected_at = iso_utc(now())
    if reader is None:
        return envelope("unsupported", collected_at, 0.0, None, [], None)

    outcome: dict[str, Any] = {}
    warnings: list[str] = []
    started = time.perf_counter()
    worker = threading.Thread(
        target=_call, args=(reader, warnings, outcome), name=f"inventory-{name}"
    )
    worker.daemon = True
    worker.start()
    worker.join(timeout)
    duration = round(time.perf_counter() - started, 4)
    return _finish(name, worker.is_alive(), outcome, warnings, collected_at, duration)


def _call(reader: SectionFunction, warnings: list[str], outcome: dict) -> None:
    try:
        outcome["data"] = reader(warnings)
    except Exception as exc:  # a broken reader must not break the inventory
        outcome["error"] = exc


def _finish(
    name: str,
    timed_out: bool,
    outcome: dict[str, Any],
    warnings: list[str],
    collected_at: str | None,
    duration: float,
) -> dict[str, Any]:
    if timed_out:
        logger.warning("inventory section %s timed out after %.1f s", name, duration)
        message = f"section {name} took over {duration:.1f} s"
        return envelope("timeout", collected_at, duration, message, warnings, None)
    if "error" in outcome:
        error = outcome["error"]
        logger.warning("inventory section %s failed", name, exc_info=error)
        message = f"{type(error).__name__}: {error}"
        return envelope("error", collected_at, duration, message, warnings, None)
    return envelope("ok", collected_at, duration, None, warnings, outcome["data"])


def envelope(
    status: str,
    collected_at: str | None,
    duration: float,
    error: str | None,
    warnings: list[str],
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    """One section envelope of design.md; the hash is over the data as sent."""
    return {
        "status": status,
        "collected_at": collected_at,
        "duration_seconds": duration,
        "error": error,
        "warnings": list(warnings),
        "hash": canonical_hash(data) if data is not None else None,
        "data": data,
    }


def inventory_document(sections: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The report's ``inventory`` object: a hash over section hashes, and sections."""
    hashes = {name: env.get("hash") for name, env in sections.items()}
    return {"hash": canonical_hash(hashes), "sections": dict(sections)}
