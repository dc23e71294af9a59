"""The simulated district as a load generator: registry, tokens, enrollment and
report bodies of a realistic mix, built before anything is timed.

The mix (per timed report, drawn from a seeded generator): every report carries
one probe cycle (5 samples) and the agent's health; ``MIX`` adds to a share of them
an inventory delta (one section changed, the software list sent as ``unchanged``),
a speed test, or a full inventory with a changed software list. The first cycle of
every PC (full inventory, one speed test per school) is the untimed warm-up.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from _common import post_request, split_round_robin
from schoolmon.agent.inventory.normalize import canonical_hash
from schoolmon.server import simulate
from schoolmon.server.auth import hash_secret
from schoolmon.server.clock import utcnow
from schoolmon.server.storage import Storage

ROLES = ("lab", "office", "teacher", "other")
MIX = {"inventory_delta": 0.04, "speedtest": 0.01, "software_list": 0.005}
REPORT_INTERVAL = timedelta(minutes=5)


@dataclass
class Prepared:
    """A district ready to send: warm-up and timed requests, per connection."""

    warmup: list[list[bytes]]
    timed: list[list[bytes]]
    devices: int
    mix: dict[str, int] = field(default_factory=dict)
    gzip_bytes: list[int] = field(default_factory=list)
    json_bytes: list[int] = field(default_factory=list)


def register(
    db: Path,
    schools: list[simulate.School],
    now: datetime,
    more: list[dict[str, Any]] = (),
) -> dict[str, str]:
    """Put the schools (and ``more`` registry rows) in the database with one token
    per role of each school; return the tokens."""
    storage = Storage(db)
    try:
        rows = [_registry_row(school) for school in schools]
        storage.import_schools(rows + list(more), now)
        tokens = {}
        for school in schools:
            for role in ROLES:
                token = f"bench-{school.code}-{role}"
                storage.add_enrollment_token(hash_secret(token), school.code, role, now)
                tokens[f"{school.code}:{role}"] = token
        return tokens
    finally:
        storage.close()


def _registry_row(school: simulate.School) -> dict[str, Any]:
    return {
        "code": school.code,
        "name": school.name or f"School {school.code}",
        "level": school.level,
        "commune": "Bench",
        "has_informatics": school.has_informatics,
        "lab_pcs_required": school.lab_pcs_required,
        "students": school.students,
    }


def district_schools(count: int | None) -> list[simulate.School]:
    """The sample registry's schools (the first ``count``), synthetic beyond it."""
    known = simulate.load_registry(simulate.DEFAULT_REGISTRY)
    if count is None or count <= len(known):
        return known[:count]
    extra = [f"B{n:06d}" for n in range(count - len(known))]
    return known + simulate.synthetic_schools(extra, seed=11)


def options_for(schools: int, cycles: int, seed: int) -> simulate.SimOptions:
    """Simulation options for ``cycles`` report cycles of every reporting PC."""
    return simulate.SimOptions(
        seed=seed,
        schools=schools,
        cycles=cycles,
        interval_seconds=REPORT_INTERVAL.total_seconds(),
        workers=16,
    )


def enroll(
    url: str,
    district: simulate.District,
    tokens: dict[str, str],
    options: simulate.SimOptions,
) -> simulate.Credentials:
    """Enroll every reporting PC through the real API; fail if any is refused."""
    credentials = simulate.Credentials()
    collector = simulate.Collector(url, timeout=60.0)
    phase = simulate.enroll_devices(collector, district, tokens, credentials, options)
    if phase.failed:
        raise RuntimeError(f"enrollment failed: {phase.line()}")
    return credentials


def prepare(
    district: simulate.District,
    options: simulate.SimOptions,
    credentials: simulate.Credentials,
    port: int,
    connections: int,
) -> Prepared:
    """Build every request: the first cycle as warm-up, the rest mixed and timed."""
    pcs = sum(1 for _ in simulate.reporting_pcs(district))
    start = utcnow() - REPORT_INTERVAL * options.cycles
    reports = list(simulate.iter_report_bodies(district, options, start))
    warmup, timed = reports[:pcs], reports[pcs:]
    mixer = Mixer(warmup, random.Random(options.seed))
    prepared = Prepared([], [], pcs)

    by_device: dict[str, list[bytes]] = {}
    for report in warmup:
        request = _request(report, report.body, credentials, port)
        by_device.setdefault(report.device_key, []).append(request)
    prepared.warmup = _deal(by_device, connections)

    by_device = {}
    for report in timed:
        body, kind = mixer.mixed(report)
        prepared.mix[kind] = prepared.mix.get(kind, 0) + 1
        prepared.gzip_bytes.append(len(body))
        prepared.json_bytes.append(len(gzip.decompress(body)))
        request = _request(report, body, credentials, port)
        by_device.setdefault(report.device_key, []).append(request)
    prepared.timed = _deal(by_device, connections)
    return prepared


def _request(
    report: simulate.PreparedReport,
    body: bytes,
    credentials: simulate.Credentials,
    port: int,
) -> bytes:
    credential = credentials.get(report.credential_keys)
    if credential is None:
        raise RuntimeError(f"PC {report.device_key} has no credential")
    return post_request(port, "/api/v1/reports", body, credential)


def _deal(by_device: dict[str, list[bytes]], connections: int) -> list[list[bytes]]:
    """Devices dealt to connections; each queue interleaves its devices by cycle."""
    queues = []
    for devices in split_round_robin(list(by_device.values()), connections):
        longest = max((len(d) for d in devices), default=0)
        queues.append([d[i] for i in range(longest) for d in devices if i < len(d)])
    return queues


class Mixer:
    """Turns plain probe reports into the benchmark's mix of report kinds."""

    def __init__(self, warmup: list[simulate.PreparedReport], rng: random.Random):
        self.rng = rng
        self.inventories: dict[str, dict[str, Any]] = {}
        self.speedtest: dict[str, Any] | None = None
        self.seq = 10**9
        for report in warmup:
            document = _decode(report.body)
            if document.get("inventory"):
                self.inventories[report.device_key] = document["inventory"]
            if document.get("speedtests") and self.speedtest is None:
                self.speedtest = document["speedtests"][0]

    def mixed(self, report: simulate.PreparedReport) -> tuple[bytes, str]:
        """The body to send for ``report`` and the kind of report it became."""
        draw = self.rng.random()
        for kind, share in MIX.items():
            if draw < share and self._applicable(kind, report.device_key):
                document = _decode(report.body)
                getattr(self, f"_add_{kind}")(document, report.device_key)
                return simulate.encode_body(document), kind
            draw -= share
        return report.body, "probes_only"

    def _applicable(self, kind: str, device: str) -> bool:
        if kind == "speedtest":
            return self.speedtest is not None
        return device in self.inventories

    def _add_inventory_delta(self, document: dict[str, Any], device: str) -> None:
        sections = self.inventories[device]["sections"]
        disks = sections["disks"]
        volumes = (disks.get("data") or {}).get("volumes") or []
        for volume in volumes[:1]:
            if volume.get("free_bytes"):
                volume["free_bytes"] -= self.rng.randint(10**6, 10**8)
        disks["hash"] = canonical_hash(disks["data"])
        sent = copy.deepcopy(sections)
        if "software" in sent and sent["software"].get("data") is not None:
            sent["software"] |= {"data": None, "unchanged": True}
        document["inventory"] = _inventory(sections, sent)

    def _add_software_list(self, document: dict[str, Any], device: str) -> None:
        sections = self.inventories[device]["sections"]
        software = sections.get("software")
        if software is None or software.get("data") is None:
            return
        self.seq += 1
        software["data"]["programs"].append(
            {
                "name": f"Bench Tool {self.seq}",
                "version": "1.0",
                "publisher": "schoolmon bench",
                "install_date": None,
            }
        )
        software["hash"] = canonical_hash(software["data"])
        document["inventory"] = _inventory(sections, copy.deepcopy(sections))

    def _add_speedtest(self, document: dict[str, Any], device: str) -> None:
        self.seq += 1
        test = dict(self.speedtest)
        test |= {
            "run": document["probes"][0]["run"],
            "seq": self.seq,
            "wall_time": document["sent_at"],
            "started_at": document["sent_at"],
            "monotonic": document["sent_monotonic"] - 1.0,
            "boot_id": document["boot_id"],
        }
        document["speedtests"] = [test]


def _inventory(
    sections: dict[str, Any], sent: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    hashes = {name: envelope["hash"] for name, envelope in sections.items()}
    return {"hash": canonical_hash(hashes), "sections": sent}


def _decode(body: bytes) -> dict[str, Any]:
    return json.loads(gzip.decompress(body))
