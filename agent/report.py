"""Assembling one report (design.md, wire format version 1) from queued items."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from schoolmon.agent import __version__
from schoolmon.agent.inventory import iso_utc
from schoolmon.agent.outbox import Item

SCHEMA = 1


def build_report(
    items: Iterable[Item],
    *,
    identity: dict[str, Any],
    health: dict[str, Any],
    boot_id: str,
    wall: Callable[[], float],
    monotonic: Callable[[], float],
) -> dict[str, Any]:
    """A report carrying ``items`` in queue order, stamped at sending time."""
    probes, speedtests, inventory = [], [], None
    for item in items:
        if item.kind == "probe":
            probes.append(item.payload)
        elif item.kind == "speedtest":
            speedtests.append(item.payload)
        elif item.kind == "inventory":
            inventory = item.payload
    return {
        "schema": SCHEMA,
        "agent_version": __version__,
        "sent_at": iso_utc(wall()),
        "sent_monotonic": round(monotonic(), 6),
        "boot_id": boot_id,
        "identity": identity,
        "inventory": inventory,
        "probes": probes,
        "speedtests": speedtests,
        "health": health,
    }
