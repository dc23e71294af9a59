"""The wire models: design.md's documents validate; faults are refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from schoolmon.server.schemas import Report

DESIGN_REPORT: dict[str, Any] = {
    "schema": 1,
    "agent_version": "0.1.0",
    "sent_at": "2026-12-03T01:05:00Z",
    "sent_monotonic": 81234.5,
    "boot_id": "5b1c",
    "identity": {
        "machine_id": "m1",
        "smbios_uuid": "4C4C4544-0042",
        "system_serial": "8XK2Q32",
        "board_serial": None,
        "disk_serial": "Z3T4ABCD",
        "macs": ["B8:CA:3A:11:22:33"],
        "hostname": "PHONGMAY-PC01",
    },
    "inventory": {
        "hash": "sha256-all",
        "sections": {
            "memory": {
                "status": "ok",
                "collected_at": "2026-12-03T01:04:00Z",
                "duration_seconds": 0.02,
                "error": None,
                "warnings": [],
                "hash": "m1",
                "data": {
                    "installed_bytes": 4294967296,
                    "usable_bytes": 4109000000,
                    "modules": [
                        {
                            "slot": "DIMM0",
                            "size_bytes": 4294967296,
                            "manufacturer": None,
                            "part_number": None,
                            "serial": None,
                            "speed_mhz": 2400,
                        }
                    ],
                },
            },
            "software": {"status": "ok", "hash": "s1", "data": None, "unchanged": True},
            "battery": {"status": "unsupported", "data": None},
        },
    },
    "probes": [
        {
            "run": "9f2c61d0",
            "seq": 1042,
            "cycle": 17,
            "wall_time": "2026-12-03T01:04:30Z",
            "monotonic": 81230.1,
            "boot_id": "5b1c",
            "target": "collector",
            "scope": "collector",
            "kind": "https",
            "ok": True,
            "duration_seconds": 0.012,
            "reason": None,
            "detail": {"status_code": 204},
        }
    ],
    "speedtests": [
        {
            "run": "9f2c61d0",
            "seq": 1043,
            "wall_time": "2026-12-03T01:04:40Z",
            "monotonic": 81231.0,
            "boot_id": "5b1c",
            "ok": True,
            "reason": None,
            "backend": "speedtest-net",
            "tool": "speedtest-cli",
            "tool_version": "2.1.3",
            "server": {"id": "1", "name": "Hà Nội", "host": "h", "sponsor": "VNPT"},
            "download_bytes_per_second": 2500000.0,
            "upload_bytes_per_second": 1200000.0,
            "latency_seconds": 0.021,
            "jitter_seconds": 0.003,
            "bytes_used": 52000000,
            "streams": 4,
            "started_at": "2026-12-03T01:04:22Z",
            "duration_seconds": 18.2,
            "flags": [],
        }
    ],
    "health": {
        "started_at": "2026-12-03T00:05:00Z",
        "uptime_seconds": 3600,
        "outbox_items": 12,
        "outbox_bytes": 20480,
        "dropped_total": {"probes": 0},
        "undelivered_lost": 0,
        "state_restored": False,
        "set_aside_total": 0,
        "last_error": None,
    },
}


def errors_of(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(location, message) of every validation error of a report document."""
    with pytest.raises(ValidationError) as error:
        Report.model_validate(document)
    return [
        (".".join(str(p) for p in item["loc"]), item["msg"])
        for item in error.value.errors()
    ]


def test_the_report_of_design_md_validates_and_keeps_its_data():
    """The example report passes; section data is kept as sent."""
    report = Report.model_validate(DESIGN_REPORT)

    assert (
        report.inventory.sections["memory"].data,
        report.probes[0].wall_time.isoformat(),
        report.speedtests[0].server.name,
    ) == (
        DESIGN_REPORT["inventory"]["sections"]["memory"]["data"],
        "2026-12-03T01:04:30+00:00",
        "Hà Nội",
    )


def test_unknown_envelope_field_is_refused():
    """A typo in an envelope is an error, not silently lost data."""
    document = DESIGN_REPORT | {"probs": []}
    document["probes"] = [DESIGN_REPORT["probes"][0] | {"okay": True}]

    assert errors_of(document) == [
        ("probes.0.okay", "Extra inputs are not permitted"),
        ("probs", "Extra inputs are not permitted"),
    ]


def test_extra_keys_inside_section_data_are_kept():
    """A newer agent's extra data keys pass and are stored as sent."""
    document = _with_section("cpu", {"model": "Intel Celeron J1800", "npu": "none"})

    report = Report.model_validate(document)

    assert report.inventory.sections["cpu"].data == {
        "model": "Intel Celeron J1800",
        "npu": "none",
    }


def test_known_section_data_of_the_wrong_shape_is_refused():
    """Section data is checked against the shape its name has in design.md."""
    document = _with_section("memory", {"modules": [{"size_bytes": "2 GB"}]})

    assert errors_of(document) == [
        (
            "inventory.sections.memory.data.modules.0.size_bytes",
            "Input should be a valid integer, unable to parse string as an integer",
        )
    ]


def test_failed_speed_test_needs_a_reason_and_no_figures():
    """A failure is never a zero: ok false with figures, or without reason, fails."""
    test = DESIGN_REPORT["speedtests"][0] | {"ok": False, "reason": None}

    assert errors_of(DESIGN_REPORT | {"speedtests": [test]}) == [
        (
            "speedtests.0",
            "Value error, a failed speed test has a reason and null figures",
        )
    ]


def test_zero_download_is_not_a_valid_measurement():
    """0 bytes/s is refused: a tool that measured nothing failed."""
    test = DESIGN_REPORT["speedtests"][0] | {"download_bytes_per_second": 0.0}

    assert errors_of(DESIGN_REPORT | {"speedtests": [test]}) == [
        ("speedtests.0.download_bytes_per_second", "Input should be greater than 0")
    ]


def test_lists_and_enums_are_bounded():
    """Over 5000 probes, an unknown scope and a naive time are all refused."""
    probe = DESIGN_REPORT["probes"][0]
    document = DESIGN_REPORT | {
        "probes": [probe] * 5001,
        "sent_at": "2026-12-03T01:05:00",
    }
    document_2 = DESIGN_REPORT | {"probes": [probe | {"scope": "lan"}]}

    assert errors_of(document) + errors_of(document_2) == [
        (
            "sent_at",
            "Value error, an instant needs its zone, e.g. 2026-12-03T01:05:00Z",
        ),
        ("probes", "List should have at most 5000 items after validation, not 5001"),
        ("probes.0.scope", "Input should be 'collector' or 'internet'"),
    ]


def _with_section(name: str, data: dict[str, Any]) -> dict[str, Any]:
    section = {"status": "ok", "hash": "x", "data": data}
    inventory = {"hash": "h", "sections": {name: section}}
    return DESIGN_REPORT | {"inventory": inventory}


def test_what_the_real_agent_collects_here_validates():
    """The agent's inventory of this very machine passes the collector's models."""
    from schoolmon.agent.inventory import collect
    from schoolmon.agent.inventory.normalize import identity_signals

    sections = collect()
    document = DESIGN_REPORT | {
        "identity": identity_signals(sections),
        "inventory": {"hash": None, "sections": sections},
    }

    report = Report.model_validate(document)

    assert sorted(report.inventory.sections) == sorted(sections)
