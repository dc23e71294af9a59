"""One agent cycle, and the loop that repeats it.

A cycle probes every target into the outbox, queues the inventory when it changed
(or once a day), delivers the outbox and applies the collector's instructions.
Clocks and the sleep function are injected; nothing here writes to sys.stdout or
sys.stderr (they are None in a windowless service).
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from schoolmon.agent import __version__
from schoolmon.agent.config import AgentConfig, resolve_targets
from schoolmon.agent.delivery import Deliverer, DeliveryResult
from schoolmon.agent.inventory import inventory_document, iso_utc
from schoolmon.agent.inventory.normalize import identity_signals
from schoolmon.agent.outbox import Item, Outbox
from schoolmon.agent.probes import Prober, probe_cycle
from schoolmon.agent.report import build_report
from schoolmon.agent.state import Credential, State, restored_by_answer
from schoolmon.agent.transport import (
    Answer,
    Backoff,
    EnrollError,
    Transport,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
FIGURES = (
    "download_bytes_per_second",
    "upload_bytes_per_second",
    "latency_seconds",
    "jitter_seconds",
    "bytes_used",
    "streams",
)


@dataclass(frozen=True)
class CycleOutcome:
    """What one cycle did and when the next should start."""

    cycle: int
    samples: int
    inventory_queued: bool
    delivered: bool
    next_in_seconds: float


class Agent:
    """The agent's cycle and loop, with every varying part injected."""

    def __init__(
        self,
        config: AgentConfig,
        state: State,
        outbox: Outbox,
        transport: Transport | None,
        prober: Prober,
        collect_inventory: Callable[[], dict[str, dict]],
        *,
        wall: Clock,
        monotonic: Clock,
        sleep: Callable[[float], Any],
        boot_id: str,
        rng: random.Random | None = None,
        credential: Credential | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.outbox = outbox
        self.transport = transport
        self.prober = prober
        self.collect_inventory = collect_inventory
        self.wall, self.monotonic, self.sleep = wall, monotonic, sleep
        self.boot_id = boot_id
        self.rng = rng or random.Random()
        self.credential = credential
        self.run_id = secrets.token_hex(4)
        self.cycle_number = 0
        self.last_error: str | None = None
        self.backoff = Backoff(
            config.backoff.base_seconds, config.backoff.cap_seconds, self.rng
        )
        self._started_wall, self._started_mono = wall(), monotonic()
        self._next_delivery = self._started_mono
        self._next_report_in: float | None = None
        self._restored_reported = False
        self._pending: list[dict[str, Any]] = []
        self._warned_revoked = False

    @property
    def next_delivery_at(self) -> float:
        """Monotonic time before which no delivery is attempted (backoff)."""
        return self._next_delivery

    # the cycle ----------------------------------------------------------------

    def cycle(self) -> CycleOutcome:
        """Probe, maybe queue the inventory, deliver, apply instructions."""
        self.cycle_number += 1
        samples = self._probe()
        queued = self.queue_inventory()

        delivered = False
        if self.revoked:
            self._still_revoked()
        elif self.transport is not None and self.monotonic() >= self._next_delivery:
            delivered = self.deliver().drained
            if self._apply_instructions() and delivered:
                delivered = self.deliver().drained
        return CycleOutcome(
            self.cycle_number, len(samples), queued, delivered, self._next_in(delivered)
        )

    @property
    def revoked(self) -> bool:
        """Whether the district revoked this PC's credential (no delivery then)."""
        return self.credential is not None and self.credential.revoked_at is not None

    def _probe(self) -> list[dict[str, Any]]:
        server = (
            self.credential.server_url if self.credential else self.config.server_url
        )
        samples = probe_cycle(
            self.prober,
            resolve_targets(self.config, server),
            run=self.run_id,
            cycle=self.cycle_number,
            boot=self.boot_id,
            wall=self.wall,
            monotonic=self.monotonic,
            allocate_seq=self.outbox.allocate_seq,
        )
        self.outbox.put_many("probe", samples)
        return samples

    def _next_in(self, delivered: bool) -> float:
        if delivered and self._next_report_in is not None:
            return max(1.0, float(self._next_report_in))
        return self.config.interval_seconds + self.rng.uniform(
            0, self.config.jitter_seconds
        )

    # inventory ------------------------------------------------------------------

    def queue_inventory(self, force: bool = False) -> bool:
        """Collect when due; queue when changed, forced, or not sent for a day."""
        now = self.wall()
        collected = self.outbox.get_meta("inventory_collected_at")
        due = collected is None or abs(now - collected) >= (
            self.config.inventory_interval_seconds
        )
        if not (force or due):
            return False

        sections = self.collect_inventory()
        self.outbox.set_meta("inventory_collected_at", now)
        self.outbox.set_meta("identity", identity_signals(sections))
        document = inventory_document(sections)
        sent = self.outbox.get_meta("inventory_sent") or {}
        fresh = (
            abs(now - sent.get("at", now - 10**9))
            < self.config.inventory_resend_seconds
        )
        if not force and sent.get("hash") == document["hash"] and fresh:
            return False

        acked = {} if force else self.outbox.get_meta("acked_sections", {})
        payload = {"hash": document["hash"], "sections": _unchanged(sections, acked)}
        self.outbox.put("inventory", payload)
        self.outbox.set_meta("inventory_sent", {"hash": document["hash"], "at": now})
        logger.info("inventory %s queued", document["hash"][:12])
        return True

    def identity(self) -> dict[str, Any]:
        """The identity signals of the last collected inventory."""
        return self.outbox.get_meta("identity") or identity_signals({})

    # delivery -------------------------------------------------------------------

    def deliver(self) -> DeliveryResult:
        """Deliver the outbox; enroll again once and retry if the collector does not
        know the credential; on failure schedule the next try with backoff."""
        result = self._deliver_batches()
        note = None
        if result.reenroll:
            note = self._reenroll()
            if note is None:
                result = self._deliver_batches()
        if result.failure is None:
            self.backoff.success()
            self.outbox.set_meta("last_delivery_at", self.wall())
            self._record_error(None)
            return result
        if result.revoked:
            self._mark_revoked(result.failure.message)
            return result

        self._record_error("; ".join(filter(None, [result.failure.message, note])))
        delay = self.backoff.failure(result.failure.retry_after)
        self._next_delivery = self.monotonic() + delay
        logger.info("delivery failed (%s); next try in %.0f s", self.last_error, delay)
        return result

    def _deliver_batches(self) -> DeliveryResult:
        deliverer = Deliverer(
            self.outbox,
            self.transport.send_report,
            self.make_report,
            self.config.outbox.batch_probes,
            self._on_delivered,
        )
        return deliverer.deliver()

    def _record_error(self, message: str | None) -> None:
        """Keep the last delivery error for the health section and ``status``."""
        self.last_error = message
        stored = None if message is None else {"at": self.wall(), "message": message}
        self.outbox.set_meta("last_error", stored)

    def _mark_revoked(self, answer_message: str) -> None:
        """Remember the revocation in the credential file and stop delivering."""
        logger.debug("collector answered: %s", answer_message)
        if self.credential is not None:
            revoked = replace(self.credential, revoked_at=iso_utc(self.wall()))
            self.state.save_credential(revoked)
            self.credential = revoked
        self._warned_revoked = False
        self._still_revoked()

    def _still_revoked(self) -> None:
        message = revoked_message(
            self.credential.revoked_at if self.credential else None
        )
        if self.last_error != message:
            self._record_error(message)
        if not self._warned_revoked:
            logger.warning("%s", message)
            self._warned_revoked = True

    def make_report(self, items: list[Item]) -> dict[str, Any]:
        """The report that carries ``items`` (health built fresh)."""
        return build_report(
            items,
            identity=self.identity(),
            health=self.health(),
            boot_id=self.boot_id,
            wall=self.wall,
            monotonic=self.monotonic,
        )

    def health(self) -> dict[str, Any]:
        """The health section of design.md."""
        restored = bool(self.outbox.get_meta("state_restored", False))
        self._restored_reported = self._restored_reported or restored
        return {
            "started_at": iso_utc(self._started_wall),
            "uptime_seconds": round(self.monotonic() - self._started_mono, 3),
            **self.outbox.stats(),
            "undelivered_lost": self.outbox.get_meta("undelivered_lost", 0),
            "state_restored": restored,
            "last_error": self.last_error,
        }

    def _on_delivered(self, items: list[Item], answer: Answer) -> None:
        body = answer.body
        self._next_report_in = body.get("next_report_in_seconds")
        self._pending.extend(
            i for i in body.get("instructions") or [] if isinstance(i, dict)
        )
        for item in items:
            if item.kind == "inventory":
                self._ack_inventory(item.payload)
        self._check_restored(items, body)

    def _ack_inventory(self, payload: dict[str, Any]) -> None:
        sections = payload.get("sections") or {}
        acked = {
            name: env.get("hash") for name, env in sections.items() if env.get("hash")
        }
        self.outbox.set_meta("acked_sections", acked)

    def _check_restored(self, items: list[Item], body: dict[str, Any]) -> None:
        if self._restored_reported:
            self.outbox.set_meta("state_restored", False)
            self.outbox.set_meta("undelivered_lost", 0)
            self._restored_reported = False
        resent: dict[str, int] = {}
        for item in items:
            resent[item.kind] = resent.get(item.kind, 0) + (item.attempts > 0)
        if not restored_by_answer(body, resent, self.outbox.highest_seq()):
            return
        logger.warning("state directory was restored: undelivered reports were lost")
        self.outbox.set_meta("state_restored", True)
        self.outbox.set_meta("undelivered_lost", None)
        if isinstance(body.get("last_seq"), int):
            self.outbox.raise_seq(body["last_seq"] + 1)

    def _reenroll(self) -> str | None:
        """Enroll again with the stored token; None when that worked, else why not."""
        credential = self.credential
        if credential is None or not credential.token:
            return "enroll again with schoolmon-agent enroll"
        identity = self.identity()
        try:
            answer = self.transport.enroll(
                credential.token, identity.get("hostname"), identity, __version__
            )
        except EnrollError as exc:
            return f"re-enrollment failed: {exc}"
        logger.info(
            "the collector did not know this PC's credential; re-enrolled as %s",
            answer["device_id"],
        )
        self._store_credential(answer["credential"], answer["device_id"])
        return None

    def _store_credential(self, secret: str, device_id: str) -> None:
        updated = replace(
            self.credential, credential=secret, device_id=device_id, revoked_at=None
        )
        self.state.save_credential(updated)
        self.credential = updated
        self.transport.credential = secret
        self._next_delivery = self.monotonic()

    # instructions ---------------------------------------------------------------

    def _apply_instructions(self) -> bool:
        """Apply queued instructions; True when one queued something to send."""
        queued = False
        pending, self._pending = self._pending, []
        for instruction in pending:
            kind = instruction.get("kind")
            logger.info("instruction from the collector: %s", kind)
            if kind == "run_speedtest":
                self.queue_speedtest(instruction.get("backend") or "speedtest-net")
                queued = True
            elif kind == "send_full_inventory":
                queued = self.queue_inventory(force=True) or queued
            elif kind == "replace_credential" and self.credential is not None:
                self._store_credential(
                    instruction["credential"], instruction["device_id"]
                )
            else:
                logger.warning("ignored unknown instruction %r", instruction)
        return queued

    def queue_speedtest(self, backend: str) -> dict[str, Any]:
        """Run a speed test now and queue its (possibly failed) result."""
        settings = speedtest_settings(self.state, self.credential)
        result = run_speedtest_safely(backend, settings)
        seq = self.outbox.allocate_seq()
        result.update(
            run=self.run_id,
            seq=seq,
            wall_time=iso_utc(self.wall()),
            monotonic=round(self.monotonic(), 6),
            boot_id=self.boot_id,
        )
        self.outbox.put("speedtest", result, seq)
        return result

    # the loop -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Repeat cycles until ``stop`` is set; sleeps through the injected sleep."""
        logger.info("agent run %s started", self.run_id)
        while not stop.is_set():
            started = self.monotonic()
            outcome = self.cycle()
            if stop.is_set():
                break
            spent = self.monotonic() - started
            self.sleep(max(0.0, outcome.next_in_seconds - spent))
        logger.info(
            "agent run %s stopped after %d cycles", self.run_id, self.cycle_number
        )


def _unchanged(sections: dict[str, dict], acked: dict[str, str]) -> dict[str, dict]:
    """Send the software list only when its hash differs from the acknowledged one."""
    software = sections.get("software")
    if not software or software.get("hash") is None:
        return dict(sections)
    if acked.get("software") != software["hash"]:
        return dict(sections)
    return {**sections, "software": {**software, "data": None, "unchanged": True}}


def revoked_message(revoked_at: str | None) -> str:
    """What the agent says once the district has revoked this PC's credential."""
    when = f" on {revoked_at}" if revoked_at else ""
    return (
        f"the district revoked this PC{when}: reports are kept in the outbox and not "
        "sent; ask the district technician, who can enroll it again "
        "(schoolmon-agent enroll --server URL --token TOKEN)"
    )


def speedtest_settings(state: State, credential: Credential | None) -> dict[str, Any]:
    """The settings dict ``run_speedtest(backend, config)`` reads."""
    settings: dict[str, Any] = {"state_dir": str(state.directory)}
    if credential is not None:
        settings["server_url"] = credential.server_url
        settings["credential"] = credential.credential
    return settings


def run_speedtest_safely(backend: str, config: dict[str, Any]) -> dict[str, Any]:
    """Call the speed-test module lazily; any failure becomes a failed result."""
    try:
        from schoolmon.agent.speedtest import run_speedtest
    except ImportError as exc:
        return failed_speedtest(backend, f"speed test unavailable: {exc}")
    try:
        return dict(run_speedtest(backend, config))
    except Exception as exc:  # third-party tool code: its crash is a failed test
        logger.exception("speed test with backend %s crashed", backend)
        return failed_speedtest(backend, f"{type(exc).__name__}: {exc}")


def failed_speedtest(backend: str, message: str) -> dict[str, Any]:
    """A failed speed test with reason ``error`` and null figures."""
    return {
        "ok": False,
        "reason": "error",
        "message": message,
        "backend": backend,
        "tool": None,
        "tool_version": None,
        "server": None,
        **dict.fromkeys(FIGURES),
        "started_at": None,
        "duration_seconds": None,
        "flags": [],
    }
