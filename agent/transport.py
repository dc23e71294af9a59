"""HTTP to the collector: enrollment and reports, and what each answer means.

Reports are gzip-compressed JSON with the device credential as a Bearer token. Each
answer is classified once, here, into what the agent should do next.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from schoolmon.agent._requests import requests
from schoolmon.agent.config import Timeouts
from schoolmon.agent.probes import request_reason

logger = logging.getLogger(__name__)

DELIVERED = "delivered"
RETRY = "retry"
SET_ASIDE = "set_aside"
TOO_LARGE = "too_large"
REENROLL = "reenroll"
REVOKED = "revoked"
_RETRYABLE_4XX = (408, 429)


class EnrollError(RuntimeError):
    """Enrollment failed; the message says why."""


@dataclass(frozen=True)
class Answer:
    """What one report POST came to."""

    outcome: str
    status: int | None
    message: str
    body: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None


class Transport:
    """Talks to one collector with an injected ``requests.Session``."""

    def __init__(
        self,
        session: requests.Session,
        server_url: str,
        credential: str | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.session = session
        self.server_url = server_url.rstrip("/")
        self.credential = credential
        timeouts = timeouts or Timeouts()
        self._timeout = (timeouts.connect_seconds, timeouts.read_seconds)

    def send_report(self, report: dict[str, Any]) -> Answer:
        """POST one report (gzip) and classify the answer."""
        body = gzip.compress(encode_json(report), compresslevel=6)
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Authorization": f"Bearer {self.credential}",
        }
        try:
            response = self.session.post(
                f"{self.server_url}/api/v1/reports",
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            reason = request_reason(exc)
            logger.debug("report not sent: %s", _short(exc))
            return Answer(RETRY, None, f"collector unreachable ({reason})")
        answer = classify(response)
        logger.info("report of %d bytes (gzip): %s", len(body), answer.message)
        return answer

    def enroll(
        self, token: str, hostname: str | None, identity: dict, agent_version: str
    ) -> dict[str, Any]:
        """POST /api/v1/enroll; return the collector's answer or raise EnrollError."""
        payload = {
            "token": token,
            "hostname": hostname,
            "identity": identity,
            "agent_version": agent_version,
        }
        try:
            response = self.session.post(
                f"{self.server_url}/api/v1/enroll",
                data=encode_json(payload),
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            logger.debug("enrollment not sent: %s", _short(exc))
            raise EnrollError(
                f"cannot reach {self.server_url} ({request_reason(exc)})"
            ) from exc
        return _enrollment(response)


def encode_json(data: Any) -> bytes:
    """UTF-8 JSON with non-ASCII text kept as is."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _enrollment(response: requests.Response) -> dict[str, Any]:
    body = _json_body(response)
    if response.status_code != 201 or not {"device_id", "credential"} <= set(body):
        detail = body.get("message") or response.text[:200].strip() or "no message"
        raise EnrollError(f"enrollment refused ({response.status_code}): {detail}")
    logger.info(
        "enrolled as device %s of school %s", body["device_id"], body.get("school")
    )
    return body


def classify(response: requests.Response) -> Answer:
    """Turn a collector's HTTP answer into an outcome for the outbox."""
    status = response.status_code
    body = _json_body(response)
    message = f"{status} {body.get('message') or response.reason or ''}".strip()
    if status == 200 and "accepted" in body:
        return Answer(DELIVERED, status, f"{status} delivered", body)
    if status == 200:
        return Answer(RETRY, status, "200 but the answer is not the collector's JSON")
    if status == 401:
        return Answer(_refused_credential(body), status, message, body)
    if status == 413:
        return Answer(TOO_LARGE, status, message, body)
    if 400 <= status < 500 and status not in _RETRYABLE_4XX:
        return Answer(SET_ASIDE, status, message, body)
    return Answer(RETRY, status, message, body, _retry_after(response))


def _refused_credential(body: dict[str, Any]) -> str:
    """A revoked credential stops delivery; any other 401 (unknown credential, as
    after a collector restored from backup) is mended by enrolling again."""
    return REVOKED if body.get("error") == "revoked_credential" else REENROLL


def _json_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class Backoff:
    """Exponential backoff with full jitter, capped; Retry-After is a floor."""

    def __init__(
        self, base: float, cap: float, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def failure(self, retry_after: float | None = None) -> float:
        """Record a failed delivery; return the seconds to wait before the next."""
        ceiling = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        delay = self._rng.uniform(0, ceiling)
        return max(delay, min(retry_after or 0.0, self.cap))

    def success(self) -> None:
        """Forget past failures."""
        self.failures = 0
