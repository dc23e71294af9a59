"""Exotic request bodies found by a first-time tester: never a 500, always a 4xx
naming the fault with only the bad value, bounded; nothing stored when refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from schoolmon.server.schemas import parse_wire_json

from tests.support.collector import enroll, probe_json, report_json

ROUTES = ("/api/v1/enroll", "/api/v1/reports")
NOT_USABLE = "the body is not usable JSON: "
REPORT_HEAD = '{"schema": 1, "sent_at": "2026-12-01T02:00:00Z", '


@pytest.fixture
def device(http, registered) -> dict[str, Any]:
    """One lab device of C02, enrolled through the API."""
    return enroll(http, registered, "C02")


def post_raw(http, route: str, device: dict[str, Any], body: bytes) -> Any:
    headers = {"Content-Type": "application/json"}
    if route == "/api/v1/reports":
        headers["Authorization"] = f"Bearer {device['credential']}"
    return http.post(route, content=body, headers=headers)


def stored_state(storage, device: dict[str, Any]) -> tuple[Any, ...]:
    probes = storage.db.execute("SELECT COUNT(*) FROM probe_samples").fetchone()[0]
    return probes, len(storage.devices()), storage.device(device["device_id"])


EXOTIC_BODIES = [
    (
        "deep nesting",
        b"[" * 100_000 + b"]" * 100_000,
        400,
        "malformed_json",
        NOT_USABLE + "nesting too deep (arrays or objects inside one another)",
    ),
    (
        "number beyond a float",
        (REPORT_HEAD + '"sent_monotonic": 1e999}').encode(),
        400,
        "malformed_json",
        NOT_USABLE + "the number 1e999 is beyond what a float holds; "
        "send a finite number",
    ),
    (
        "NaN literal deep inside",
        (REPORT_HEAD + '"probes": [{"detail": {"rtt": NaN}}]}').encode(),
        400,
        "malformed_json",
        NOT_USABLE + "NaN is not a JSON number; send null for an unknown value",
    ),
    (
        "-Infinity literal",
        (REPORT_HEAD + '"sent_monotonic": -Infinity}').encode(),
        400,
        "malformed_json",
        NOT_USABLE + "-Infinity is not a JSON number; send null for an unknown value",
    ),
    (
        "integer of 5000 digits",
        (REPORT_HEAD + '"sent_monotonic": ' + "9" * 5000 + "}").encode(),
        400,
        "malformed_json",
        NOT_USABLE + "an integer of 5000 characters is too long; at most 100 digits",
    ),
    (
        "not UTF-8",
        b'{"token": "\xff"}',
        400,
        "malformed_json",
        "the body is not UTF-8 text (byte 0xff at offset 11); send JSON in UTF-8",
    ),
    (
        "null",
        b"null",
        422,
        "validation_failed",
        "the body is null; expected a JSON object",
    ),
    (
        "a string",
        b'"token"',
        422,
        "validation_failed",
        "the body is a JSON string; expected a JSON object",
    ),
    (
        "a number",
        b"42",
        422,
        "validation_failed",
        "the body is a JSON number; expected a JSON object",
    ),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("body", "status", "error", "message"),
    [case[1:] for case in EXOTIC_BODIES],
    ids=[case[0] for case in EXOTIC_BODIES],
)
def test_exotic_bodies_are_refused_naming_the_fault_and_store_nothing(
    http, device, registered, route, body, status, error, message
):
    """Deep nesting, NaN, 1e999, huge integers, bad bytes, non-objects: a 4xx."""
    before = stored_state(registered, device)

    answer = post_raw(http, route, device, body)

    assert (answer.status_code, answer.json(), stored_state(registered, device)) == (
        status,
        {"error": error, "message": message},
        before,
    )


def test_duplicate_keys_keep_the_last_value(http, device, registered, clock):
    """A key given twice is read as JSON parsers do (the last one wins)."""
    body = REPORT_HEAD + '"agent_version": "0.0.9", "agent_version": "0.1.2"}'

    answer = post_raw(http, "/api/v1/reports", device, body.encode())

    assert (answer.status_code, answer.json()["accepted"]) == (
        200,
        {"probes": 0, "speedtests": 0, "inventory": 0},
    )
    assert registered.device(device["device_id"])["agent_version"] == "0.1.2"


def test_lone_surrogate_escape_is_stored_as_a_replacement_character(
    http, device, registered, clock
):
    """A Windows name with half a UTF-16 pair is kept as U+FFFD, not a 500."""
    probe = probe_json(1, clock(), detail={"adapter": "Wi-Fi \ud83d"})
    document = report_json(clock(), agent_version="0.1\udc00", probes=[probe])

    answer = post_raw(
        http, "/api/v1/reports", device, json.dumps(document).encode("ascii")
    )
    stored = registered.db.execute("SELECT detail FROM probe_samples").fetchone()[0]

    assert (
        answer.status_code,
        registered.device(device["device_id"])["agent_version"],
        json.loads(stored),
    ) == (200, "0.1\ufffd", {"adapter": "Wi-Fi \ufffd"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r'"\ud800"', "\ufffd"),
        (r'"a\udc00b"', "a\ufffdb"),
        (r'"\ud83d\ude00"', "\U0001f600"),
        (r'"\udc00\ud800"', "\ufffd\ufffd"),
        (r'"\ud800\ud800\udc00"', "\ufffd\U00010000"),
        (r'"\\ud800"', "\\ud800"),
        (r'"\\\ud800"', "\\\ufffd"),
        (r'"\u00e9"', "\u00e9"),
    ],
)
def test_only_lone_surrogate_escapes_are_replaced(text, expected):
    """Pairs, escaped backslashes and other escapes read as JSON says."""
    assert parse_wire_json(text.encode()) == expected


def test_utf8_bom_before_a_body_is_accepted():
    """Some Windows tools put a BOM before JSON; the object still reads."""
    assert parse_wire_json(b'\xef\xbb\xbf{"token": "abc"}') == {"token": "abc"}


BAD_SECTION_VALUES = [
    (
        "cpu",
        {"model": "Intel Celeron J1800", "logical_cores": "many"},
        "inventory.sections.cpu.data.logical_cores",
        "Input should be a valid integer, unable to parse string as an integer",
        "int_parsing",
        "'many'",
    ),
    (
        "cpu",
        {"model": "Intel Celeron J1800", "logical_cores": -3},
        "inventory.sections.cpu.data.logical_cores",
        "Input should be greater than or equal to 0",
        "greater_than_equal",
        "-3",
    ),
    (
        "memory",
        {"installed_bytes": 4294967296, "usable_bytes": 10**30},
        "inventory.sections.memory.data.usable_bytes",
        "Input should be less than or equal to 9223372036854775807",
        "less_than_equal",
        "1000000000000000000000000000000",
    ),
    (
        "system",
        {"hostname": "LAB-PC01", "boot_time": "2026-12-01T07:55:00"},
        "inventory.sections.system.data.boot_time",
        "an instant needs its zone, e.g. 2026-12-03T01:05:00Z",
        "value_error",
        "'2026-12-01T07:55:00'",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "loc", "problem", "kind", "shown"), BAD_SECTION_VALUES
)
def test_bad_section_value_names_its_path_and_only_its_value(
    http, device, registered, clock, name, data, loc, problem, kind, shown
):
    """The 422 points inside the section and quotes the bad value, not the inventory."""
    section = {"status": "ok", "hash": "h1", "data": data}
    document = report_json(clock(), inventory={"sections": {name: section}})
    before = stored_state(registered, device)

    answer = post_raw(http, "/api/v1/reports", device, json.dumps(document).encode())

    assert (answer.status_code, answer.json(), stored_state(registered, device)) == (
        422,
        {
            "error": "validation_failed",
            "message": f"{loc}: {problem} (got {shown})",
            "details": [{"loc": loc, "message": problem, "type": kind}],
        },
        before,
    )


def test_every_bad_value_of_a_section_is_listed_in_details(http, device, clock):
    """Two bad values in two sections: the first in the message, both in details."""
    sections = {
        "cpu": {"status": "ok", "hash": "h1", "data": {"logical_cores": "many"}},
        "disks": {
            "status": "ok",
            "hash": "h2",
            "data": {"physical": [{"size_bytes": -1}]},
        },
    }
    document = report_json(clock(), inventory={"sections": sections})

    answer = post_raw(http, "/api/v1/reports", device, json.dumps(document).encode())

    assert (answer.status_code, answer.json()) == (
        422,
        {
            "error": "validation_failed",
            "message": "inventory.sections.cpu.data.logical_cores: Input should be a "
            "valid integer, unable to parse string as an integer (got 'many'); and 1 "
            "more problem(s), see details",
            "details": [
                {
                    "loc": "inventory.sections.cpu.data.logical_cores",
                    "message": "Input should be a valid integer, unable to parse "
                    "string as an integer",
                    "type": "int_parsing",
                },
                {
                    "loc": "inventory.sections.disks.data.physical.0.size_bytes",
                    "message": "Input should be greater than or equal to 0",
                    "type": "greater_than_equal",
                },
            ],
        },
    )


def test_long_values_are_quoted_cut_to_80_characters(http, device, clock):
    """A 10,000-character value is quoted as its first 80 characters and '…'."""
    document = report_json(clock(), agent_version="v" * 10_000)

    answer = post_raw(http, "/api/v1/reports", device, json.dumps(document).encode())

    assert (answer.status_code, answer.json()["message"]) == (
        422,
        f"agent_version: String should have at most 64 characters (got '{'v' * 79}…)",
    )


def test_model_level_fault_is_stated_without_quoting_the_whole_object(
    http, device, clock
):
    """A rule over several fields names the object and the rule, not its content."""
    test = {
        "run": "run-a",
        "seq": 1,
        "wall_time": "2026-12-01T02:00:00Z",
        "ok": False,
        "reason": None,
        "backend": "collector",
    }
    document = report_json(clock(), speedtests=[test])

    answer = post_raw(http, "/api/v1/reports", device, json.dumps(document).encode())

    assert (answer.status_code, answer.json()) == (
        422,
        {
            "error": "validation_failed",
            "message": "speedtests.0: a failed speed test has a reason and null "
            "figures",
            "details": [
                {
                    "loc": "speedtests.0",
                    "message": "a failed speed test has a reason and null figures",
                    "type": "value_error",
                }
            ],
        },
    )
