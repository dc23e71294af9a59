"""The HTTP API over a real uvicorn on loopback: enrollment, reports, reads, errors."""

from __future__ import annotations

import gzip
import json
import random
from datetime import timedelta
from typing import Any

import httpx
import pytest
from schoolmon.server.api import create_app
from schoolmon.server.auth import hash_secret
from schoolmon.server.config import config_from_mapping

from tests.support.collector import (
    collector_in_thread,
    enroll,
    probe_json,
    report_json,
)

pytestmark = pytest.mark.databases("sqlite", "postgresql")

UNICODE_PROGRAMS = [
    "Bộ gõ tiếng Việt Unikey 4.3",
    "Phần mềm quản lý thư viện",
    "КриптоПро CSP",
    "Microsoft Office Proofing Tools 2013 – български",
]


@pytest.fixture
def device(http, registered) -> dict[str, Any]:
    """One lab device of C02, enrolled through the API."""
    return enroll(http, registered, "C02")


def bearer(device: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {device['credential']}"}


def stored_probe_count(storage) -> int:
    return storage.db.execute("SELECT COUNT(*) FROM probe_samples").fetchone()[0]


def test_healthz_names_the_service(http):
    """Agents probe /healthz and check this exact body."""
    answer = http.get("/healthz")

    assert (answer.status_code, answer.json()) == (
        200,
        {"status": "ok", "service": "schoolmon"},
    )


def test_enrollment_gives_a_credential_stored_only_as_a_hash(http, registered, clock):
    """The answer carries the credential; the database keeps its SHA-256."""
    answer = enroll(
        http,
        registered,
        "C02",
        role="office",
        agent_version="0.1.0",
        identity={"hostname": "PHONG-MAY-01", "macs": ["B8:AC:6F:11:22:01"]},
    )
    stored = registered.device(answer["device_id"])

    assert (sorted(answer), answer["school"], answer["role"], stored) == (
        ["credential", "device_id", "report_interval_seconds", "role", "school"],
        "C02",
        "office",
        {
            "id": answer["device_id"],
            "school": "C02",
            "role": "office",
            "hostname": "LAB-PC01",
            "identity": {
                "machine_id": None,
                "smbios_uuid": None,
                "system_serial": None,
                "board_serial": None,
                "disk_serial": None,
                "macs": ["B8:AC:6F:11:22:01"],
                "hostname": "PHONG-MAY-01",
            },
            "credential_hash": hash_secret(answer["credential"]),
            "credential_revoked_at": None,
            "enrolled_at": clock(),
            "last_seen_at": None,
            "last_skew_seconds": None,
            "last_seq": None,
            "agent_version": "0.1.0",
            "boot_id": None,
            "health": None,
        },
    )


def test_batch_resend_is_stored_once_and_counted_as_duplicates(
    http, device, registered, clock
):
    """net-batch-resend: 500 resent plus 20 new: 520 stored, 500 duplicates."""
    now = clock()
    first = [probe_json(seq, now - timedelta(minutes=600 - seq)) for seq in range(500)]
    http.post(
        "/api/v1/reports", json=report_json(now, probes=first), headers=bearer(device)
    )
    both = first + [probe_json(seq, now) for seq in range(500, 520)]

    answer = http.post(
        "/api/v1/reports", json=report_json(now, probes=both), headers=bearer(device)
    )

    assert (answer.status_code, answer.json(), stored_probe_count(registered)) == (
        200,
        {
            "device_id": device["device_id"],
            "accepted": {"probes": 20, "speedtests": 0, "inventory": 0},
            "duplicates": {"probes": 500, "speedtests": 0, "inventory": 0},
            "next_report_in_seconds": answer.json()["next_report_in_seconds"],
            "instructions": [],
            "last_seq": 519,
        },
        520,
    )
    assert 270 <= answer.json()["next_report_in_seconds"] <= 330


def test_gzip_report_is_accepted(http, device, registered, clock):
    """Content-Encoding: gzip bodies are decompressed and stored."""
    body = gzip.compress(
        json.dumps(report_json(clock(), probes=[probe_json(1, clock())])).encode()
    )

    answer = http.post(
        "/api/v1/reports",
        content=body,
        headers=bearer(device) | {"Content-Encoding": "gzip"},
    )

    assert (answer.status_code, answer.json()["accepted"]) == (
        200,
        {"probes": 1, "speedtests": 0, "inventory": 0},
    )


def test_samples_are_placed_by_monotonic_time_or_corrected_wall_time(
    http, device, registered, clock
):
    """Same boot: received - (sent_monotonic - monotonic); else wall minus skew."""
    now = clock()
    agent_clock = now + timedelta(days=400)  # a dead CMOS battery, wrong year
    same_boot = probe_json(1, agent_clock, monotonic=1000.0, boot_id="b2")
    old_boot = probe_json(2, agent_clock - timedelta(minutes=30), boot_id="b1")
    report = report_json(
        agent_clock, sent_monotonic=1090.0, boot_id="b2", probes=[same_boot, old_boot]
    )

    http.post("/api/v1/reports", json=report, headers=bearer(device))

    rows = registered.probe_samples("C02", now - timedelta(days=1), now + timedelta(1))
    assert [(r["seq"], r["placed_at"]) for r in rows] + [
        ("skew", registered.device(device["device_id"])["last_skew_seconds"])
    ] == [
        (2, now - timedelta(minutes=30)),
        (1, now - timedelta(seconds=90)),
        ("skew", 400 * 86400.0),
    ]


def test_unicode_strings_are_byte_exact_from_report_to_api(
    http, device, registered, clock
):
    """inv-unicode: software names come back with the very same UTF-8 bytes."""
    programs = [
        {"name": name, "version": None, "publisher": None, "install_date": None}
        for name in UNICODE_PROGRAMS
    ]
    sections = {
        "software": {
            "status": "ok",
            "hash": "s1",
            "data": {"source": "windows-uninstall", "programs": programs},
        }
    }
    report = report_json(clock(), inventory={"hash": "i1", "sections": sections})
    body = json.dumps(report, ensure_ascii=False).encode("utf-8")

    http.post("/api/v1/reports", content=body, headers=bearer(device))
    raw = http.get(f"/api/v1/devices/{device['device_id']}").content
    school = http.get("/api/v1/schools/C02").content

    stored = registered.inventory(device["device_id"])["sections"]["software"]["data"]
    assert (
        [p["name"] for p in stored["programs"]],
        [name.encode() in raw for name in UNICODE_PROGRAMS],
        "Trường THCS Cẩm Phúc".encode() in school,
    ) == (UNICODE_PROGRAMS, [True] * 4, True)


@pytest.fixture
def config() -> Any:
    """The default configuration without speed-test slots: these tests are about
    the API's mechanics, and a slot's run_speedtest would join every answer."""
    from schoolmon.server.config import Config

    return Config.model_validate({"speedtest": {"slots_per_day": 0}})


def section(hash_: str, data: Any = None, status: str = "ok", **extra: Any) -> dict:
    return {"status": status, "hash": hash_, "data": data} | extra


def post_inventory(http, device, clock, sections) -> dict[str, Any]:
    report = report_json(clock(), inventory={"hash": "i", "sections": sections})
    answer = http.post("/api/v1/reports", json=report, headers=bearer(device))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_unchanged_sections_keep_data_and_failed_sections_keep_the_last_good(
    http, device, registered, clock
):
    """Known hash: data kept; failed section: last good data kept, failure noted."""
    cpu = {"model": "Intel Core i3-2120", "logical_cores": 4}
    first = post_inventory(
        http,
        device,
        clock,
        {"cpu": section("c1", cpu), "software": section("s1", {"programs": []})},
    )
    second = post_inventory(
        http,
        device,
        clock,
        {
            "cpu": section("c1", None, "timeout", error="WMI timed out"),
            "software": section("s1", unchanged=True),
        },
    )

    stored = registered.inventory(device["device_id"])["sections"]
    assert (
        first["accepted"]["inventory"],
        second["duplicates"]["inventory"],
        second["instructions"],
        stored["cpu"] | {"collected_at": None},
        stored["software"]["data"],
        len(registered.inventory_snapshots(device["device_id"])),
    ) == (
        1,
        1,
        [],
        {
            "status": "ok",
            "collected_at": None,
            "duration_seconds": None,
            "error": None,
            "warnings": [],
            "hash": "c1",
            "data": cpu,
            "last_failure": {
                "status": "timeout",
                "error": "WMI timed out",
                "collected_at": None,
            },
        },
        {"programs": []},
        1,
    )


def test_unchanged_section_with_an_unknown_hash_asks_for_the_full_inventory(
    http, device, clock
):
    """The collector that lacks a section's data says send_full_inventory."""
    answer = post_inventory(
        http, device, clock, {"software": section("never-seen", unchanged=True)}
    )

    assert answer["instructions"] == [{"kind": "send_full_inventory"}]


def test_a_changed_inventory_is_snapshotted(http, device, registered, clock):
    """Each distinct inventory is kept in history; a repeat is not."""
    for modules in (2, 2, 4):
        memory = {"installed_bytes": modules * 2**30, "modules": []}
        post_inventory(http, device, clock, {"memory": section("m", memory)})

    snapshots = registered.inventory_snapshots(device["device_id"])
    assert [s["sections"]["memory"]["data"]["installed_bytes"] for s in snapshots] == [
        2 * 2**30,
        4 * 2**30,
    ]


# Errors -------------------------------------------------------------------------------


def error_of(answer: httpx.Response) -> tuple[int, dict[str, Any]]:
    return answer.status_code, answer.json()


def test_report_errors_are_json_4xx_and_store_nothing(http, device, registered, clock):
    """400, 401, 403, 415 and 422: a JSON error naming the fault; nothing stored."""
    good = report_json(clock(), probes=[probe_json(1, clock())])
    post = http.post
    answers = [
        post("/api/v1/reports", json=good),
        post("/api/v1/reports", json=good, headers={"Authorization": "Bearer nope"}),
        post("/api/v1/reports", content=b'{"schema": 1,', headers=bearer(device)),
        post("/api/v1/reports", json=[1], headers=bearer(device)),
        post("/api/v1/reports", json=good | {"school": "C01"}, headers=bearer(device)),
        post("/api/v1/reports", json=good | {"schema": 2}, headers=bearer(device)),
        post(
            "/api/v1/reports",
            content=b"x",
            headers=bearer(device) | {"Content-Encoding": "br"},
        ),
        post(
            "/api/v1/reports",
            content=b"\x1f\x8b\x08garbage",
            headers=bearer(device) | {"Content-Encoding": "gzip"},
        ),
    ]

    assert [error_of(a) for a in answers] + [
        stored_probe_count(registered),
        registered.device(device["device_id"])["last_seen_at"],
    ] == [
        (
            401,
            {
                "error": "missing_credential",
                "message": "no device credential; "
                "send 'Authorization: Bearer <credential>'",
            },
        ),
        (
            401,
            {
                "error": "unknown_credential",
                "message": "the credential starting 'nope' is unknown; enroll "
                "this PC again with a token from the district technician",
            },
        ),
        (
            400,
            {
                "error": "malformed_json",
                "message": "the body is not valid JSON: "
                "Expecting property name enclosed in double quotes: line 1 column 14 "
                "(char 13)",
            },
        ),
        (
            422,
            {
                "error": "validation_failed",
                "message": "the body is a JSON array; expected a JSON object",
            },
        ),
        (
            403,
            {
                "error": "wrong_school",
                "message": f"device {device['device_id']} "
                "belongs to school 'C02', not 'C01'",
            },
        ),
        (
            422,
            {
                "error": "validation_failed",
                "message": "schema: Input should be 1 (got 2)",
                "details": [
                    {
                        "loc": "schema",
                        "message": "Input should be 1",
                        "type": "literal_error",
                    }
                ],
            },
        ),
        (
            415,
            {
                "error": "unsupported_encoding",
                "message": "Content-Encoding 'br' is "
                "not supported; accepted: gzip, identity",
            },
        ),
        (
            400,
            {
                "error": "malformed_gzip",
                "message": "the gzip body is damaged: "
                "Error -3 while decompressing data: unknown header flags set",
            },
        ),
        0,
        None,
    ]


def test_revoked_credential_is_refused(http, device, registered, clock):
    """A revoked device credential gets 401 naming the revocation."""
    registered.revoke_device_credential(device["device_id"], clock())

    answer = http.post(
        "/api/v1/reports", json=report_json(clock()), headers=bearer(device)
    )

    assert error_of(answer) == (
        401,
        {
            "error": "revoked_credential",
            "message": f"the credential starting {device['credential'][:4]!r} was "
            "revoked; enroll this PC again with a token from the district "
            "technician",
        },
    )


@pytest.fixture
def small_collector(registered, clock):
    """A collector whose max_body_bytes is 4096."""
    config = config_from_mapping({"server": {"max_body_bytes": 4096}})
    app = create_app(config, registered, clock, rng=random.Random(1))
    with collector_in_thread(app) as url, httpx.Client(base_url=url) as client:
        yield client


def test_bodies_over_the_limit_get_413_also_when_compressed(
    small_collector, registered, clock
):
    """413 for a large body and for a small gzip that inflates past the limit."""
    device = enroll(small_collector, registered, "C01")
    big = report_json(clock(), probes=[probe_json(n, clock()) for n in range(40)])
    raw = json.dumps(big).encode()
    headers = bearer(device)

    plain = small_collector.post("/api/v1/reports", content=raw, headers=headers)
    bomb = small_collector.post(
        "/api/v1/reports",
        content=gzip.compress(raw),
        headers=headers | {"Content-Encoding": "gzip"},
    )

    assert (error_of(plain), error_of(bomb), len(gzip.compress(raw)) < 4096) == (
        (
            413,
            {
                "error": "body_too_large",
                "message": f"the body has {len(raw)} bytes "
                "or more; max_body_bytes is 4096",
            },
        ),
        (
            413,
            {
                "error": "body_too_large",
                "message": "the body decompresses to over 4096 bytes (max_body_bytes)",
            },
        ),
        True,
    )


def test_enrollment_errors(http, registered, clock):
    """Unknown or revoked token 401, inactive school 403, bad body 400/422."""
    registered.add_enrollment_token(hash_secret("revoked-token"), "C01", "lab", clock())
    registered.revoke_enrollment_token(hash_secret("revoked-token"), clock())
    registered.add_enrollment_token(hash_secret("closed-school"), "C03", "lab", clock())
    registered.import_schools(
        [
            {"code": c} | {k: "x" for k in ("name", "level", "commune")}
            for c in ("C01", "C02")
        ],
        clock(),
    )

    answers = [
        http.post("/api/v1/enroll", json={"token": "wrong-token"}),
        http.post("/api/v1/enroll", json={"token": "revoked-token"}),
        http.post("/api/v1/enroll", json={"token": "closed-school"}),
        http.post("/api/v1/enroll", content=b"token=abc"),
        http.post("/api/v1/enroll", json={"hostname": "LAB-PC01"}),
    ]

    assert [error_of(a) for a in answers] + [registered.devices()] == [
        (
            401,
            {
                "error": "unknown_token",
                "message": "the enrollment token starting "
                "'wron' is unknown; ask the district technician for a new token "
                "(schoolmon-server schools token CODE)",
            },
        ),
        (
            401,
            {
                "error": "revoked_token",
                "message": "the enrollment token starting "
                "'revo' was revoked; ask the district technician for a new token "
                "(schoolmon-server schools token CODE)",
            },
        ),
        (
            403,
            {
                "error": "school_inactive",
                "message": "school 'C03' is not active in the registry",
            },
        ),
        (
            400,
            {
                "error": "malformed_json",
                "message": "the body is not valid JSON: "
                "Expecting value: line 1 column 1 (char 0)",
            },
        ),
        (
            422,
            {
                "error": "validation_failed",
                "message": "token: Field required",
                "details": [
                    {"loc": "token", "message": "Field required", "type": "missing"}
                ],
            },
        ),
        [],
    ]


def test_unknown_school_device_and_route_are_404_json(http):
    """Unknown school, device or path: 404 with a JSON message naming it."""
    answers = [
        http.get("/api/v1/schools/C99"),
        http.get("/api/v1/schools/C99/devices"),
        http.get("/api/v1/devices/d_0000/events"),
        http.get("/api/v2/schools"),
    ]

    assert [error_of(a) for a in answers] == [
        (
            404,
            {
                "error": "unknown_school",
                "message": "school 'C99' is not in the registry",
            },
        ),
        (
            404,
            {
                "error": "unknown_school",
                "message": "school 'C99' is not in the registry",
            },
        ),
        (
            404,
            {"error": "unknown_device", "message": "device 'd_0000' is not enrolled"},
        ),
        (404, {"error": "not_found", "message": "GET /api/v2/schools: Not Found"}),
    ]


# Reads --------------------------------------------------------------------------------
