"""Delivering the outbox: batches in order until empty or until the collector fails.

A refused batch is split until the refused item is alone; that item is set aside
(never retried, never blocking the rest). A lone inventory too large for the
collector is sent without its software list, which is set aside.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schoolmon.agent.outbox import Item, Outbox
from schoolmon.agent.transport import (
    DELIVERED,
    REENROLL,
    REVOKED,
    SET_ASIDE,
    TOO_LARGE,
    Answer,
)

logger = logging.getLogger(__name__)

MakeReport = Callable[[list[Item]], dict[str, Any]]
Send = Callable[[dict[str, Any]], Answer]
OnDelivered = Callable[[list[Item], Answer], None]


@dataclass
class DeliveryResult:
    """How a delivery round went."""

    drained: bool = False
    reports: int = 0
    items: int = 0
    failure: Answer | None = None
    answers: list[Answer] = field(default_factory=list)

    @property
    def reenroll(self) -> bool:
        return self.failure is not None and self.failure.outcome == REENROLL

    @property
    def revoked(self) -> bool:
        return self.failure is not None and self.failure.outcome == REVOKED


class Deliverer:
    """Sends the outbox's items through ``send`` until it is empty."""

    def __init__(
        self,
        outbox: Outbox,
        send: Send,
        make_report: MakeReport,
        batch_probes: int = 1000,
        on_delivered: OnDelivered | None = None,
    ) -> None:
        self.outbox = outbox
        self.send = send
        self.make_report = make_report
        self.batch_probes = batch_probes
        self.on_delivered = on_delivered or (lambda items, answer: None)

    def deliver(self, max_reports: int = 1000) -> DeliveryResult:
        """Deliver batches; stop when drained, on a failure, or after max_reports."""
        result = DeliveryResult()
        limit: int | None = None
        first = True
        while result.reports < max_reports:
            items = self.outbox.next_batch(self.batch_probes, limit)
            if not items and not first:
                result.drained = True
                return result
            first = False
            answer = self._send(items, result)
            if answer.outcome == DELIVERED:
                continue
            if answer.outcome not in (TOO_LARGE, SET_ASIDE):
                result.failure = answer
                return result
            if len(items) > 1:
                limit = max(1, len(items) // 2)
                logger.info(
                    "collector refused %d items (%s); splitting",
                    len(items),
                    answer.status,
                )
            elif not self._refused_alone(items, answer, result):
                return result
        return result

    def _send(self, items: list[Item], result: DeliveryResult) -> Answer:
        self.outbox.mark_attempt(item.id for item in items)
        answer = self.send(self.make_report(items))
        result.reports += 1
        result.answers.append(answer)
        if answer.outcome == DELIVERED:
            self.outbox.remove(item.id for item in items)
            result.items += len(items)
            self.on_delivered(items, answer)
        return answer

    def _refused_alone(
        self, items: list[Item], answer: Answer, result: DeliveryResult
    ) -> bool:
        """Deal with a refused single item (or empty report); False to stop."""
        if not items or not self._envelope_accepted(result):
            logger.warning("collector refuses even an empty report: %s", answer.message)
            result.failure = answer
            return False
        item = items[0]
        if answer.outcome == TOO_LARGE and _has_software(item):
            self._drop_software(item, answer)
        else:
            self.outbox.set_aside(item, answer.status, answer.message)
        return True

    def _envelope_accepted(self, result: DeliveryResult) -> bool:
        """Send a report without items: does the collector accept the envelope?"""
        return self._send([], result).outcome == DELIVERED

    def _drop_software(self, item: Item, answer: Answer) -> None:
        payload = dict(item.payload)
        sections = dict(payload.get("sections") or {})
        software = sections.pop("software")
        payload["sections"] = sections
        self.outbox.keep_aside("software", software, answer.status, answer.message)
        self.outbox.replace_payload(item.id, payload)


def _has_software(item: Item) -> bool:
    if item.kind != "inventory":
        return False
    software = (item.payload.get("sections") or {}).get("software")
    return isinstance(software, dict) and software.get("data") is not None
