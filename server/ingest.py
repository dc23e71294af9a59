"""What the collector does with an enrollment and with a report.

``enroll_device`` and ``ingest_report`` are the two seams where identity, asset events
and speed-test scheduling plug in: everything a report changes goes through
``ingest_report`` in one transaction, committed before the collector answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schoolmon.server.auth import hash_secret, new_device_id, new_secret
from schoolmon.server.config import Config
from schoolmon.server.schemas import (
    EnrollRequest,
    Inventory,
    ProbeSample,
    Report,
    Section,
    Speedtest,
)
from schoolmon.server.storage import Storage

logger = logging.getLogger(__name__)

KINDS = ("probes", "speedtests", "inventory")
COUNTER_KIND = {"probes": "probe", "speedtests": "speedtest", "inventory": "inventory"}


@dataclass
class IngestResult:
    """What one report added, what was already stored, and what the agent should do."""

    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    duplicates: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    instructions: list[dict[str, Any]] = field(default_factory=list)

    def count(self, kind: str, stored: int, total: int) -> None:
        self.accepted[kind] += stored
        self.duplicates[kind] += total - stored


@dataclass(frozen=True)
class Enrollment:
    """A new device and the credential it will use (shown once, stored hashed)."""

    device: dict[str, Any]
    credential: str


def enroll_device(
    storage: Storage,
    token: dict[str, Any],
    request: EnrollRequest,
    now: datetime,
) -> Enrollment:
    """Create a device for the school and role of an enrollment ``token`` row."""
    credential = new_secret()
    identity = request.identity.model_dump(mode="json")
    device = {
        "id": new_device_id(),
        "school": token["school"],
        "role": token["role"],
        "hostname": request.hostname or identity.get("hostname"),
        "identity": identity,
        "credential_hash": hash_secret(credential),
        "enrolled_at": now,
        "agent_version": request.agent_version,
    }
    storage.add_device(device)
    logger.info(
        "device %s enrolled for school %s as %s (%s)",
        device["id"],
        device["school"],
        device["role"],
        device["hostname"],
    )
    return Enrollment(storage.device(device["id"]) or device, credential)


def ingest_report(
    storage: Storage,
    device: dict[str, Any],
    report: Report,
    received_at: datetime,
    config: Config,
) -> IngestResult:
    """Store a report of ``device`` exactly once; return what was new."""
    skew = (report.sent_at - received_at).total_seconds()
    probes = [_probe_row(device, report, s, received_at, skew) for s in report.probes]
    tests = [
        _speedtest_row(device, report, t, received_at, skew) for t in report.speedtests
    ]

    result = IngestResult()
    with storage.transaction():
        result.count("probes", storage.insert_probe_samples(probes), len(probes))
        result.count("speedtests", storage.insert_speedtests(tests), len(tests))
        _ingest_inventory(storage, device["id"], report.inventory, received_at, result)
        storage.update_device(device["id"], **_device_update(report, received_at, skew))
        storage.bump_counters(_counter_increments(result))

    logger.info(
        "report from %s (%s): accepted %s, duplicates %s, skew %.1f s",
        device["id"],
        device["school"],
        result.accepted,
        result.duplicates,
        skew,
    )
    return result


def place_sample(
    wall_time: datetime,
    monotonic: float | None,
    boot_id: str | None,
    report: Report,
    received_at: datetime,
    skew_seconds: float,
) -> datetime:
    """When a sample really happened, by the collector's clock (design.md "Clocks")."""
    same_boot = boot_id is not None and boot_id == report.boot_id
    if same_boot and monotonic is not None and report.sent_monotonic is not None:
        placed = received_at - timedelta(seconds=report.sent_monotonic - monotonic)
    else:
        placed = wall_time - timedelta(seconds=skew_seconds)
    return min(placed, received_at)


def _probe_row(
    device: dict[str, Any],
    report: Report,
    sample: ProbeSample,
    received_at: datetime,
    skew: float,
) -> dict[str, Any]:
    row = sample.model_dump(mode="python")
    row |= {"device": device["id"], "school": device["school"]}
    row["placed_at"] = place_sample(
        sample.wall_time, sample.monotonic, sample.boot_id, report, received_at, skew
    )
    row["received_at"] = received_at
    return row


def _speedtest_row(
    device: dict[str, Any],
    report: Report,
    test: Speedtest,
    received_at: datetime,
    skew: float,
) -> dict[str, Any]:
    row = test.model_dump(mode="python")
    row |= {"device": device["id"], "school": device["school"]}
    if test.server is not None:
        row["server"] = test.server.model_dump(mode="json")
    row["placed_at"] = place_sample(
        test.wall_time, test.monotonic, test.boot_id, report, received_at, skew
    )
    row["received_at"] = received_at
    return row


def _device_update(
    report: Report, received_at: datetime, skew: float
) -> dict[str, Any]:
    update: dict[str, Any] = {"last_seen_at": received_at, "last_skew_seconds": skew}
    if report.agent_version is not None:
        update["agent_version"] = report.agent_version
    if report.boot_id is not None:
        update["boot_id"] = report.boot_id
    if report.health is not None:
        update["health"] = report.health.model_dump(mode="json")
    if report.identity is not None:
        update["identity"] = report.identity.model_dump(mode="json")
        if report.identity.hostname:
            update["hostname"] = report.identity.hostname
    return update


def _counter_increments(result: IngestResult) -> list[tuple[str, dict[str, str], int]]:
    increments = [("reports_received", {"result": "accepted"}, 1)]
    for kind in KINDS:
        labels = {"kind": COUNTER_KIND[kind]}
        increments.append(
            ("samples_ingested", labels | {"outcome": "stored"}, result.accepted[kind])
        )
        increments.append(
            (
                "samples_ingested",
                labels | {"outcome": "duplicate"},
                result.duplicates[kind],
            )
        )
    return increments


# Inventory ----------------------------------------------------------------------------


def _ingest_inventory(
    storage: Storage,
    device_id: str,
    inventory: Inventory | None,
    received_at: datetime,
    result: IngestResult,
) -> None:
    if inventory is None:
        return
    stored = storage.inventory(device_id)
    old_sections: dict[str, Any] = stored["sections"] if stored else {}

    merged = dict(old_sections)
    unresolved = []
    for name, section in inventory.sections.items():
        merged[name], resolved = merge_section(section, old_sections.get(name))
        if not resolved:
            unresolved.append(name)

    content_hash = inventory_content_hash(merged)
    changed = stored is None or stored["hash"] != content_hash
    storage.save_inventory(device_id, content_hash, merged, received_at, changed)
    result.count("inventory", int(changed), 1)
    if unresolved:
        logger.info(
            "device %s sent unchanged sections %s with an unknown hash",
            device_id,
            ", ".join(unresolved),
        )
        result.instructions.append({"kind": "send_full_inventory"})


def merge_section(
    section: Section, old: dict[str, Any] | None
) -> tuple[dict[str, Any], bool]:
    """The stored form of a section; False when an ``unchanged`` hash is unknown.

    A section that failed (status not ok) or whose hash is unknown keeps the last
    good data and is marked stale; it never replaces known data with nothing.
    """
    meta = section.model_dump(
        mode="json", include={"status", "collected_at", "duration_seconds", "error"}
    )
    meta["warnings"] = list(section.warnings)
    old_data = old.get("data") if old else None
    old_hash = old.get("hash") if old else None

    if section.unchanged:
        resolved = old is not None and old_hash == section.hash
        data, section_hash, stale = old_data, old_hash, not resolved
        return meta | {"hash": section_hash, "data": data, "stale": stale}, resolved
    if section.status != "ok":
        stale = old_data is not None
        return meta | {"hash": old_hash, "data": old_data, "stale": stale}, True
    return meta | {"hash": section.hash, "data": section.data, "stale": False}, True


def inventory_content_hash(sections: dict[str, Any]) -> str:
    """SHA-256 over the data of every section (not timings or statuses)."""
    content = {name: section.get("data") for name, section in sections.items()}
    text = json.dumps(
        content, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
