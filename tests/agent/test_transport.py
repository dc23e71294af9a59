"""Transport against a loopback collector: gzip, Bearer, classified answers, backoff."""

from __future__ import annotations

import gzip
import json
import random
import socket

import pytest
import requests
from schoolmon.agent.transport import Answer, Backoff, EnrollError, Transport

UNICODE_PROGRAMS = [
    "Bộ gõ tiếng Việt Unikey 4.3",
    "Phần mềm quản lý thư viện",
    "КриптоПро CSP",
    "Microsoft Office Proofing Tools 2013 – български",
]


def report(**extra) -> dict:
    return {"schema": 1, "probes": [], "speedtests": [], "inventory": None, **extra}


@pytest.fixture
def transport(collector):
    session = requests.Session()
    session.trust_env = False
    yield Transport(session, collector.url + "/", "cred-1")
    session.close()


def test_report_is_gzip_json_with_bearer_and_unicode_byte_exact(collector, transport):
    """The body is gzip UTF-8 JSON; non-ASCII names arrive byte for byte."""
    sent = report(inventory={"hash": "h", "programs": UNICODE_PROGRAMS})

    answer = transport.send_report(sent)

    headers = collector.headers[0]
    raw = gzip.decompress(collector.raw_bodies[0])
    assert (headers["Authorization"], headers["Content-Encoding"]) == (
        "Bearer cred-1",
        "gzip",
    )
    assert json.loads(raw) == sent
    for name in UNICODE_PROGRAMS:
        assert name.encode("utf-8") in raw
    assert answer == Answer(
        "delivered",
        200,
        "200 delivered",
        {
            "device_id": "d_0001",
            "accepted": {"probes": 0, "speedtests": 0, "inventory": 1},
            "duplicates": {"probes": 0, "speedtests": 0, "inventory": 0},
            "next_report_in_seconds": 287,
            "instructions": [],
        },
    )


ERROR = b'{"error": "e", "message": "probe 3: field ok missing"}'
UNKNOWN_CREDENTIAL = b'{"error": "unknown_credential", "message": "credential unknown"}'
REVOKED_CREDENTIAL = b'{"error": "revoked_credential", "message": "credential revoked"}'


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((503, {}, b"{}"), Answer("retry", 503, "503 Service Unavailable", {}, None)),
        (
            (429, {"Retry-After": "120"}, b"{}"),
            Answer("retry", 429, "429 Too Many Requests", {}, 120.0),
        ),
        ((408, {}, b"{}"), Answer("retry", 408, "408 Request Timeout", {}, None)),
        (
            (401, {}, UNKNOWN_CREDENTIAL),
            Answer(
                "reenroll",
                401,
                "401 credential unknown",
                json.loads(UNKNOWN_CREDENTIAL),
            ),
        ),
        (
            (401, {}, REVOKED_CREDENTIAL),
            Answer(
                "revoked", 401, "401 credential revoked", json.loads(REVOKED_CREDENTIAL)
            ),
        ),
        (
            (413, {}, b'{"error": "too_large", "message": "over 1000000 bytes"}'),
            Answer(
                "too_large",
                413,
                "413 over 1000000 bytes",
                {"error": "too_large", "message": "over 1000000 bytes"},
            ),
        ),
        (
            (422, {}, ERROR),
            Answer(
                "set_aside", 422, "422 probe 3: field ok missing", json.loads(ERROR)
            ),
        ),
        (
            (403, {}, b'{"error": "forbidden", "message": "other school"}'),
            Answer(
                "set_aside",
                403,
                "403 other school",
                {"error": "forbidden", "message": "other school"},
            ),
        ),
        (
            (302, {"Location": "http://portal/"}, b""),
            Answer("retry", 302, "302 Found", {}, None),
        ),
        (
            (200, {"Content-Type": "text/html"}, b"<html>login</html>"),
            Answer("retry", 200, "200 but the answer is not the collector's JSON"),
        ),
    ],
)
def test_answers_are_classified(collector, transport, reply, expected):
    """Each kind of answer maps to one outcome: retry, re-enroll, stop (revoked),
    split, set aside."""
    collector.script.append(reply)

    assert transport.send_report(report()) == expected


def test_collector_down_is_retry_with_the_reason():
    """A refused connection is 'retry later' with the error named."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = Transport(requests.Session(), f"http://127.0.0.1:{port}", "c")

    answer = transport.send_report(report())

    assert answer == Answer("retry", None, "collector unreachable (connection refused)")


def test_enroll_posts_token_and_identity_and_returns_the_credential(collector):
    """Enrollment sends token, hostname, identity and version; gets the secret."""
    transport = Transport(requests.Session(), collector.url)
    identity = {"macs": ["B8:CA:3A:11:22:33"], "hostname": "PHONG-MAY-01"}

    answer = transport.enroll("school-token", "PHONG-MAY-01", identity, "0.1.0")

    assert collector.enrollments == [
        {
            "token": "school-token",
            "hostname": "PHONG-MAY-01",
            "identity": identity,
            "agent_version": "0.1.0",
        }
    ]
    assert answer == {
        "device_id": "d_0001",
        "credential": "secret-1",
        "school": "C01",
        "role": "lab",
        "report_interval_seconds": 300,
    }


def test_enroll_refused_names_status_and_message(collector):
    """A refused token gives an error with the collector's message."""
    collector.enroll_reply = (
        401,
        {},
        b'{"error": "unauthorized", "message": "token revoked"}',
    )
    transport = Transport(requests.Session(), collector.url)

    with pytest.raises(
        EnrollError, match=r"^enrollment refused \(401\): token revoked$"
    ):
        transport.enroll("old", "PC", {}, "0.1.0")


def test_backoff_grows_with_full_jitter_up_to_the_cap():
    """Delays stay within base*2^n (capped) and Retry-After is a floor."""
    backoff = Backoff(base=30, cap=600, rng=random.Random(7))

    delays = [backoff.failure() for _ in range(8)]
    floored = backoff.failure(retry_after=500)
    backoff.success()
    after_success = backoff.failure()

    ceilings = [30, 60, 120, 240, 480, 600, 600, 600]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert 500 <= floored <= 600
    assert after_success <= 30
    assert len(set(delays)) == 8
