"""What the collector does with an enrollment and with a report.

``enroll_device`` and ``store_report`` are where the pure logic meets the database:
identity (``identity.identify``) decides which device speaks, asset history
(``assets``) turns inventories into events, ``clocks.place`` puts samples in
collector time, ``speedtest.plausibility_flags`` marks impossible results and
``scheduling`` hands out speed tests. Everything one report changes happens in one
transaction (``ingest_report``) or in one savepoint of a transaction shared with the
reports of other requests (``ReportWriter``, which the API uses), committed before
the collector answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schoolmon.server import clocks
from schoolmon.server.assets import (
    AssetEvent,
    diff_inventories,
    history_hash,
    merge_sections,
    needs_full_inventory,
    renamed,
)
from schoolmon.server.auth import hash_secret, new_device_id, new_secret
from schoolmon.server.config import Config
from schoolmon.server.identity import Decision, KnownDevice, Signals, identify
from schoolmon.server.scheduling import (
    ReportingDevice,
    SlotState,
    SpeedtestPolicy,
    SpeedtestResult,
    decide_atomically,
    record_result_atomically,
)
from schoolmon.server.schemas import (
    EnrollRequest,
    Inventory,
    ProbeSample,
    Report,
    Speedtest,
)
from schoolmon.server.sessions import day_sessions, school_zone
from schoolmon.server.speedtest import MAX_LATENCY_SECONDS, plausibility_flags
from schoolmon.server.storage import Storage, TransactionLost

logger = logging.getLogger(__name__)

KINDS = ("probes", "speedtests", "inventory")
COUNTER_KIND = {"probes": "probe", "speedtests": "speedtest", "inventory": "inventory"}
IDENTITY_SECTIONS = ("system", "network", "disks")
# Parsed identity signals kept by stored JSON text: about 1.9 KB a device with the
# text and comparable values (190 MB at 100,000 devices), started over beyond that.
SIGNALS_CACHE_MAX = 100_000
_signals_by_text: dict[str | None, Signals] = {}
# Flag on a speed test an old agent sent as a success with zero throughput.
ZERO_FIGURES_FLAG = "zero_figures_from_agent"


@dataclass
class IngestResult:
    """What one report added, what was already stored, and what the agent should do.

    ``device_id`` is the device the report was stored under (a cloned PC gets its own).
    """

    device_id: str | None = None
    school: str | None = None
    skew: float = 0.0
    last_seq: int | None = None
    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    duplicates: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    instructions: list[dict[str, Any]] = field(default_factory=list)

    def count(self, kind: str, stored: int, total: int) -> None:
        self.accepted[kind] += stored
        self.duplicates[kind] += total - stored


@dataclass(frozen=True)
class Enrollment:
    """The enrolled device (new or recognised) and its credential (shown once)."""

    device: dict[str, Any]
    credential: str
    outcome: str


# Enrollment ---------------------------------------------------------------------------


def enroll_device(
    storage: Storage,
    token: dict[str, Any],
    request: EnrollRequest,
    now: datetime,
) -> Enrollment:
    """Enroll a PC for the school and role of an enrollment ``token`` row.

    A PC the collector already knows by its hardware (reinstalled, restored from an
    image, moved from another school) keeps its device id and gets a new credential;
    the old one stops working. Identical hostnames alone never merge two PCs.
    """
    incoming = Signals.from_wire(request.identity.model_dump(mode="json"))
    credential = new_secret()
    values = _enrollment_values(token, request, incoming, credential)
    with storage.transaction():
        decision = identify(
            incoming, school=token["school"], candidates=known_devices(storage)
        )
        if decision.device_id is None:
            device_id = new_device_id()
            storage.add_device(values | {"id": device_id, "enrolled_at": now})
        else:
            device_id = decision.device_id
            storage.update_device(device_id, **values)
            _store_decision_events(storage, decision, None, now)
        device = storage.device(device_id)

    logger.info(
        "device %s enrolled for school %s as %s (%s, %s)",
        device_id, device["school"], device["role"], device["hostname"],
        decision.outcome,
    )  # fmt: skip
    return Enrollment(device, credential, decision.outcome)


def _enrollment_values(
    token: dict[str, Any], request: EnrollRequest, incoming: Signals, credential: str
) -> dict[str, Any]:
    return {
        "school": token["school"],
        "role": token["role"],
        "hostname": request.hostname or incoming.hostname,
        "identity": incoming.to_wire(),
        "credential_hash": hash_secret(credential),
        "credential_revoked_at": None,
        "agent_version": request.agent_version,
    }


def known_devices(storage: Storage) -> list[KnownDevice]:
    """Every stored device as identity sees it."""
    return [
        KnownDevice(device_id, school, _stored_signals(text), bool(conflict))
        for device_id, school, text, conflict in storage.device_identity_texts()
    ]


def _stored_signals(text: str | None) -> Signals:
    """The signals of a stored identity, parsed once per distinct JSON text (an
    enrollment compares the PC with every device; the text decides the result)."""
    signals = _signals_by_text.get(text)
    if signals is None:
        if len(_signals_by_text) >= SIGNALS_CACHE_MAX:
            _signals_by_text.clear()
        signals = Signals.from_wire(json.loads(text) if text else None)
        _signals_by_text[text] = signals
    return signals


def _known(row: dict[str, Any]) -> KnownDevice:
    return KnownDevice(
        row["id"],
        row["school"],
        Signals.from_wire(row["identity"]),
        bool(row.get("conflict_reported")),
    )


# Reports ------------------------------------------------------------------------------


def ingest_report(
    storage: Storage,
    device: dict[str, Any],
    report: Report,
    received_at: datetime,
    config: Config,
) -> IngestResult:
    """Store a report of the credential's ``device`` exactly once, in a transaction
    of its own; return what was new (``ReportWriter`` shares transactions)."""
    with storage.transaction():
        result = store_report(storage, device, report, received_at, config)
        storage.bump_counters(counter_increments([result]))
    log_report(result)
    return result


def store_report(
    storage: Storage,
    device: dict[str, Any],
    report: Report,
    received_at: datetime,
    config: Config,
) -> IngestResult:
    """Store a report inside the caller's transaction; count it in no counter.

    The report is stored under the device its hardware says it comes from, which is
    not the credential's device for a cloned disk image or a restored state directory.
    """
    result = IngestResult()
    with storage.transaction():
        target = _reporting_device(storage, device, report, received_at, result)
        result.device_id, result.school = target["id"], target["school"]
        school = storage.school(target["school"]) or {}
        tests = _store_samples(storage, target, school, report, received_at, result)
        _ingest_inventory(storage, target, report.inventory, received_at, result)
        result.skew = clocks.skew(report.sent_at, received_at)
        result.last_seq = _last_seq(target, report)
        update = _device_update(report, received_at, result.skew)
        storage.update_device(target["id"], **update, last_seq=result.last_seq)
        _schedule_speedtests(
            storage, target, school, tests, received_at, config, result
        )
    return result


def log_report(result: IngestResult) -> None:
    """The one INFO line of a stored (committed) report."""
    logger.info(
        "report from %s (%s): accepted %s, duplicates %s, skew %.1f s",
        result.device_id, result.school, result.accepted, result.duplicates,
        result.skew,
    )  # fmt: skip


def _last_seq(device: dict[str, Any], report: Report) -> int | None:
    """The highest seq stored for the device, this report's samples included."""
    seqs = [item.seq for item in (*report.probes, *report.speedtests)]
    known = [seq for seq in (device.get("last_seq"), *seqs) if seq is not None]
    return max(known, default=None)


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
    return update


def counter_increments(
    results: list[IngestResult],
) -> list[tuple[str, dict[str, str], int]]:
    """The counters' increments for stored reports (one upsert per counter)."""
    increments = [("reports_received", {"result": "accepted"}, len(results))]
    for kind in KINDS:
        labels = {"kind": COUNTER_KIND[kind]}
        stored = sum(result.accepted[kind] for result in results)
        duplicate = sum(result.duplicates[kind] for result in results)
        increments.append(("samples_ingested", labels | {"outcome": "stored"}, stored))
        increments.append(
            ("samples_ingested", labels | {"outcome": "duplicate"}, duplicate)
        )
    return increments


# Identity -----------------------------------------------------------------------------


def _reporting_device(
    storage: Storage,
    device: dict[str, Any],
    report: Report,
    now: datetime,
    result: IngestResult,
) -> dict[str, Any]:
    """The device a report belongs to; creates one for a machine new on a credential."""
    device = storage.device(device["id"]) or device
    if _same_identity_object(report, device):
        return device
    incoming = incoming_signals(report)
    if incoming is None:
        # An agent older than identity signals, or a hand-made report: its samples
        # are kept under the credential's device, without a hardware check.
        logger.info(
            "report for %s carries no identity: stored without a hardware check",
            device["id"],
        )
        return device
    if incoming == Signals.from_wire(device["identity"]):
        return device

    candidates = known_devices(storage)
    own = next((c for c in candidates if c.device_id == device["id"]), _known(device))
    decision = identify(
        incoming, school=device["school"], credential=own, candidates=candidates
    )
    if decision.outcome == "same":
        _follow_signals(storage, device["id"], incoming)
        return storage.device(device["id"])
    if decision.outcome == "other_known":
        return _recognised(storage, decision, incoming, now, result)
    return _new_machine(storage, device, incoming, decision, now, result)


def _same_identity_object(report: Report, device: dict[str, Any]) -> bool:
    """The common report: no hardware sections, and the identity object the device
    already has (equal objects give equal signals, so identity has nothing to do)."""
    if report.identity is None or _identity_sections(report) is not None:
        return False
    return report.identity.model_dump(mode="json") == device["identity"]


def _identity_sections(report: Report) -> dict[str, Any] | None:
    """The data of the hardware sections identity reads, when all are present."""
    sections = report.inventory.sections if report.inventory else {}
    if all(sections.get(n) and sections[n].data for n in IDENTITY_SECTIONS):
        return {name: sections[name].data for name in IDENTITY_SECTIONS}
    return None


def incoming_signals(report: Report) -> Signals | None:
    """Identity signals of a report: from its inventory when that has the hardware
    sections, else from its ``identity`` object; None when it carries neither."""
    data = _identity_sections(report)
    if data is not None:
        return Signals.from_sections(data)
    if report.identity is None:
        return None
    return Signals.from_wire(report.identity.model_dump(mode="json"))


def _follow_signals(storage: Storage, device_id: str, new: Signals) -> None:
    """Keep the stored signals current (a replaced part, a renamed PC)."""
    update: dict[str, Any] = {"identity": new.to_wire()}
    if new.hostname:
        update["hostname"] = new.hostname
    storage.update_device(device_id, **update)


def _recognised(
    storage: Storage,
    decision: Decision,
    incoming: Signals,
    now: datetime,
    result: IngestResult,
) -> dict[str, Any]:
    """Another known device speaks with this credential: store under it, give it its
    own credential, and move it when it now reports for another school."""
    device_id = decision.device_id
    if decision.moved_from is not None:
        storage.update_device(device_id, school=decision.school)
    _follow_signals(storage, device_id, incoming)
    _store_decision_events(storage, decision, None, now)
    result.instructions.append(_replace_credential(storage, device_id))
    return storage.device(device_id)


def _new_machine(
    storage: Storage,
    credential_device: dict[str, Any],
    incoming: Signals,
    decision: Decision,
    now: datetime,
    result: IngestResult,
) -> dict[str, Any]:
    """A machine no device matches uses this credential (a cloned disk image)."""
    credential = new_secret()
    device_id = new_device_id()
    storage.add_device(
        {
            "id": device_id,
            "school": credential_device["school"],
            "role": credential_device["role"],
            "hostname": incoming.hostname,
            "identity": incoming.to_wire(),
            "credential_hash": hash_secret(credential),
            "enrolled_at": now,
        }
    )
    _store_decision_events(storage, decision, device_id, now)
    result.instructions.append(_credential_instruction(credential, device_id))
    logger.info(
        "device %s created for a machine on the credential of %s",
        device_id, credential_device["id"],
    )  # fmt: skip
    return storage.device(device_id)


def _replace_credential(storage: Storage, device_id: str) -> dict[str, Any]:
    credential = new_secret()
    storage.update_device(
        device_id, credential_hash=hash_secret(credential), credential_revoked_at=None
    )
    return _credential_instruction(credential, device_id)


def _credential_instruction(credential: str, device_id: str) -> dict[str, Any]:
    return {
        "kind": "replace_credential",
        "credential": credential,
        "device_id": device_id,
    }


def _store_decision_events(
    storage: Storage, decision: Decision, new_device_id: str | None, at: datetime
) -> None:
    """device_moved and identity_conflict name the device in the event's key."""
    for event in decision.events(new_device_id):
        device = storage.device(event.key)
        _store_events(storage, device, [event], at)


def _store_events(
    storage: Storage, device: dict[str, Any], events: list[AssetEvent], at: datetime
) -> None:
    for event in events:
        storage.add_asset_event(
            device["id"], device["school"], event.kind, event.to_dict(), at
        )
        logger.info("asset event %s: %s", device["id"], event.summary_en)


# Probe samples and speed tests --------------------------------------------------------


def _store_samples(
    storage: Storage,
    device: dict[str, Any],
    school: dict[str, Any],
    report: Report,
    received_at: datetime,
    result: IngestResult,
) -> list[Speedtest]:
    """Store new samples placed in collector time; return the speed tests stored."""
    skew = device["last_skew_seconds"]
    probes = [
        _probe_row(device, report, sample, received_at, skew)
        for sample in report.probes
    ]
    result.count("probes", storage.insert_probe_samples(probes), len(probes))

    contracted = school.get("contracted_download_mbps")
    stored = []
    for test in report.speedtests:
        row = _speedtest_row(device, report, test, received_at, skew, contracted)
        added = storage.insert_speedtests([row])
        result.count("speedtests", added, 1)
        stored += [test] if added else []
    return stored


def _probe_row(
    device: dict[str, Any],
    report: Report,
    sample: ProbeSample,
    received_at: datetime,
    skew: float | None,
) -> dict[str, Any]:
    # The fields as validated (a flat model without extras): what model_dump gives,
    # without its cost on the five samples of every report.
    row = dict(sample.__dict__)
    row |= {"device": device["id"], "school": device["school"]}
    row |= _placement(sample, report, received_at, skew)
    return row


def _speedtest_row(
    device: dict[str, Any],
    report: Report,
    test: Speedtest,
    received_at: datetime,
    skew: float | None,
    contracted_download_mbps: float | None,
) -> dict[str, Any]:
    row = test.model_dump(mode="python")
    row |= {"device": device["id"], "school": device["school"]}
    if test.server is not None:
        row["server"] = test.server.model_dump(mode="json")
    flags = plausibility_flags(test.model_dump(mode="json"), contracted_download_mbps)
    row["flags"] = sorted(set(test.flags) | set(flags))
    row |= _placement(test, report, received_at, skew)
    return row


def _placement(
    sample: ProbeSample | Speedtest,
    report: Report,
    received_at: datetime,
    skew: float | None,
) -> dict[str, Any]:
    """``placed_at`` and placement ``method`` of a sample (design.md "Clocks")."""
    placed_at, method = clocks.place(
        sample.monotonic,
        sample.boot_id,
        sample.wall_time,
        report.sent_monotonic,
        report.boot_id,
        report.sent_at,
        received_at,
        skew,
    )
    return {"placed_at": placed_at, "method": method, "received_at": received_at}


def mend_legacy_report(document: Any) -> Any:
    """Turn zero-throughput "successes" of old agents into failed speed tests.

    speedtest-cli answers a server it cannot reach with a latency of 1,800,000 ms and
    0 bit/s; agents before wire format 1's rule sent that as ``ok: true``. Such a
    test becomes ``ok: false`` with reason ``server unreachable`` (``error`` when the
    latency was not the sentinel) and null figures, flagged, instead of refusing the
    whole report. Anything else is returned untouched for validation to judge.
    """
    if not isinstance(document, dict) or not isinstance(
        document.get("speedtests"), list
    ):
        return document
    tests = [_mend_speedtest(test) for test in document["speedtests"]]
    return document | {"speedtests": tests}


def _mend_speedtest(test: Any) -> Any:
    if not isinstance(test, dict) or test.get("ok") is not True:
        return test
    figures = [
        test.get(k) for k in ("download_bytes_per_second", "upload_bytes_per_second")
    ]
    if not any(_is_zero(f) for f in figures):
        return test

    latency = test.get("latency_seconds")
    sentinel = isinstance(latency, int | float) and latency >= MAX_LATENCY_SECONDS
    reason = "server unreachable" if sentinel or latency is None else "error"
    flags = test.get("flags") if isinstance(test.get("flags"), list) else []
    logger.info("speed test %s with zero throughput stored as failed", test.get("seq"))
    return test | {
        "ok": False,
        "reason": reason,
        "download_bytes_per_second": None,
        "upload_bytes_per_second": None,
        "latency_seconds": None,
        "jitter_seconds": None,
        "flags": [*flags, ZERO_FIGURES_FLAG],
    }


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value <= 0


# Speed-test scheduling ----------------------------------------------------------------


def speedtest_policy(config: Config) -> SpeedtestPolicy | None:
    """The scheduling policy of the configuration; None when slots_per_day is 0."""
    settings = config.speedtest
    if settings.slots_per_day == 0:
        return None
    return SpeedtestPolicy(
        slots_per_day=settings.slots_per_day,
        monthly_budget_bytes=settings.monthly_budget_bytes,
    )


def _schedule_speedtests(
    storage: Storage,
    device: dict[str, Any],
    school: dict[str, Any],
    delivered: list[Speedtest],
    now: datetime,
    config: Config,
    result: IngestResult,
) -> None:
    """Record delivered results, then ask whether this device runs the next test."""
    policy = speedtest_policy(config)
    if policy is None or not school:
        return
    slots = SlotStore(storage, school["code"])

    for test in delivered:
        outcome = SpeedtestResult.from_wire(test.model_dump(mode="json"))
        record_result_atomically(
            device["id"], outcome, now, policy, slots.load, slots.compare_and_set
        )
    reporting = ReportingDevice(device["id"], device["role"])
    today = session_today(config, school, now)
    instruction = decide_atomically(
        now, slots.school, reporting, today, policy, slots.load, slots.compare_and_set
    )
    if instruction is not None:
        result.instructions.append(instruction)


@dataclass(frozen=True)
class SlotStore:
    """A school's speed-test slot state in the database, with compare-and-set."""

    storage: Storage
    school: str

    def load(self) -> SlotState:
        row = self.storage.speedtest_state(self.school)
        return SlotState.from_json(row["state"]) if row else SlotState(self.school)

    def compare_and_set(self, expected: SlotState, new: SlotState) -> bool:
        return self.storage.compare_and_set_speedtest_state(
            self.school, expected.version, new.version, new.to_json()
        )


def session_today(
    config: Config, school: dict[str, Any], now: datetime
) -> list[tuple[datetime, datetime]]:
    """The school's session intervals of its local day of ``now``, in UTC."""
    timezone = school.get("timezone")
    day = now.astimezone(school_zone(config.sessions, timezone)).date()
    return day_sessions(config.sessions, day, timezone)


# Inventory ----------------------------------------------------------------------------


def _ingest_inventory(
    storage: Storage,
    device: dict[str, Any],
    inventory: Inventory | None,
    received_at: datetime,
    result: IngestResult,
) -> None:
    """Merge the received sections into the stored inventory; record what changed."""
    if inventory is None:
        return
    stored = storage.inventory(device["id"])
    previous: dict[str, Any] = stored["sections"] if stored else {}
    received = {
        name: section.model_dump(mode="json", exclude={"unchanged"})
        for name, section in inventory.sections.items()
    }
    unresolved = unresolved_sections(previous, received)
    received = {n: s for n, s in received.items() if n not in unresolved}

    merged = merge_sections(previous, received)
    content_hash = inventory_content_hash(merged)
    changed = stored is None or stored["hash"] != content_hash
    # History keeps a snapshot only when more than volatile fields changed.
    keep = stored is None or changed and history_hash(previous) != history_hash(merged)
    storage.save_inventory(device["id"], content_hash, merged, received_at, keep)
    result.count("inventory", int(changed), 1)
    if stored is not None:
        _record_changes(storage, device, previous, merged, received_at)
    if unresolved:
        logger.info(
            "device %s sent unchanged sections %s that the collector does not hold",
            device["id"], ", ".join(unresolved),
        )  # fmt: skip
        result.instructions.append({"kind": "send_full_inventory"})


def unresolved_sections(
    previous: dict[str, Any], received: dict[str, Any]
) -> list[str]:
    """Sections sent as unchanged whose hash the stored inventory does not have."""
    same_hash = {
        name: section
        for name, section in previous.items()
        if name not in received or section.get("hash") == received[name].get("hash")
    }
    return needs_full_inventory(same_hash, received)


def _record_changes(
    storage: Storage,
    device: dict[str, Any],
    previous: dict[str, Any],
    merged: dict[str, Any],
    at: datetime,
) -> None:
    _store_events(storage, device, diff_inventories(previous, merged), at)
    rename = renamed(previous, merged)
    if rename is not None:
        storage.update_device(device["id"], hostname=rename[1])
        logger.info("device %s renamed %s -> %s", device["id"], *rename)


def inventory_content_hash(sections: dict[str, Any]) -> str:
    """SHA-256 over the data of every section (not timings or statuses)."""
    content = {name: section.get("data") for name, section in sections.items()}
    text = json.dumps(
        content, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Group commit -------------------------------------------------------------------------


@dataclass
class _Pending:
    """A report waiting for the writer, and the request's future for its result."""

    device: dict[str, Any]
    report: Report
    received_at: datetime
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[IngestResult]


Outcome = IngestResult | BaseException


def _settle_all(batch: list[_Pending], outcomes: list[Outcome]) -> None:
    """Hand each request its outcome: one wake-up per event loop, not per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, Outcome]]] = {}
    for item, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(item.loop, []).append((item, outcome))
    for loop, settled in by_loop.items():
        loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[_Pending, Outcome]]) -> None:
    for item, outcome in settled:
        if item.future.done():  # the request was cancelled (its client went away)
            continue
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)


class ReportWriter:
    """Stores the reports of concurrent requests in shared transactions.

    One thread takes every report waiting (up to ``max_batch``), stores each in a
    savepoint of one transaction and commits them together: one disk sync for
    the lot. A request gets its answer only after that commit, so an acknowledged
    report is as durable as with a transaction of its own. A report whose storing
    fails is undone alone and fails alone; a failed commit fails them all (nothing
    of them is stored). Reports of one device arrive in order, one at a time, and
    are stored in the order they were handed over. The thread starts with the
    first report and ends after ``idle_seconds`` without any.
    """

    def __init__(
        self,
        storage: Storage,
        config: Config,
        max_batch: int = 128,
        idle_seconds: float = 5.0,
    ) -> None:
        self.storage, self.config = storage, config
        self.max_batch, self.idle_seconds = max_batch, idle_seconds
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def store(
        self, device: dict[str, Any], report: Report, received_at: datetime
    ) -> IngestResult:
        """Store a report (as ``ingest_report``); return once it is committed."""
        loop = asyncio.get_running_loop()
        pending = _Pending(device, report, received_at, loop, loop.create_future())
        with self._lock:
            self._queue.put(pending)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="report-writer", daemon=True
                )
                self._thread.start()
        return await pending.future

    def close(self) -> None:
        """Store what is waiting, then end the thread."""
        with self._lock:
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._write(batch)

    def _next_batch(self) -> list[_Pending] | None:
        """The reports waiting (at least one); None when the thread should end."""
        try:
            first = self._queue.get(timeout=self.idle_seconds)
        except queue.Empty:
            with self._lock:
                if self._queue.empty():
                    self._thread = None
                    return None
            return []
        batch = [first]
        while len(batch) < self.max_batch and not self._queue.empty():
            batch.append(self._queue.get())
        if any(item is None for item in batch):  # close(): store the rest, then end
            with self._lock:
                self._thread = None
            rest = [item for item in batch if item is not None]
            if rest:
                self._write(rest)
            return None
        return batch

    def _write(self, batch: list[_Pending]) -> None:
        outcomes: list[Outcome] = []
        try:
            with self.storage.transaction():
                outcomes = [self._store(item) for item in batch]
                stored = [o for o in outcomes if isinstance(o, IngestResult)]
                if stored:
                    self.storage.bump_counters(counter_increments(stored))
        except BaseException as error:
            _settle_all(batch, [error] * len(batch))
            if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit
                raise
            return
        _settle_all(batch, outcomes)
        logger.debug("%d report(s) stored in one transaction", len(batch))
        for outcome in outcomes:
            if isinstance(outcome, IngestResult):
                log_report(outcome)

    def _store(self, item: _Pending) -> IngestResult | Exception:
        try:
            with self.storage.savepoint():
                return store_report(
                    self.storage, item.device, item.report, item.received_at,
                    self.config,
                )  # fmt: skip
        except TransactionLost:
            raise
        except Exception as error:  # a fault of the collector: that request's 500
            return error
