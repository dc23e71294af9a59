"""Asset history through the real API: inventories merged, diffed into events and
kept byte-exact (cases inv-ram-upgrade, inv-ram-removed, inv-vm-memory,
inv-vpn-adds-adapter, inv-huge-software-list, inv-unicode)."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from typing import Any

import pytest
from schoolmon.agent.inventory import inventory_document
from schoolmon.server.simulate import huge_software

from tests.server.test_ingest_identity import (
    FIXTURES,
    SimAgent,
    events_by_kind,
    lab_pc,
    no_speedtests,
    school_token,
)

ASSET_CASES = FIXTURES / "assets"


@pytest.fixture
def config() -> Any:
    """No speed-test slots: these tests look at inventory answers only."""
    return no_speedtests()


def case(name: str) -> dict[str, Any]:
    return json.loads((ASSET_CASES / f"{name}.json").read_text())


def enrolled(http, storage, clock, sections: dict[str, Any]) -> SimAgent:
    agent = SimAgent(http, sections)
    agent.enroll(school_token(storage, "C02", "lab", clock()))
    return agent


def two_inventories(http, storage, clock, before, after) -> tuple[SimAgent, list]:
    """Send the inventory ``before``, then ``after`` an hour later; return answers."""
    agent = enrolled(http, storage, clock, lab_pc(**before))
    answers = [agent.send(agent.report(clock())).json()]
    agent.sections = lab_pc(**after)
    answers.append(agent.send(agent.report(clock() + timedelta(hours=1))).json())
    return agent, answers


def event_details(storage, device_id: str) -> list[dict[str, Any]]:
    return [e["detail"] for e in storage.asset_events(device_id)]


def test_ram_upgrade_is_one_memory_changed_event(http, registered, clock):
    """inv-ram-upgrade: 2x2 GiB -> 2x4 GiB is one component_changed; the new address
    and link speed make none."""
    data = case("inv-ram-upgrade")
    agent, answers = two_inventories(
        http, registered, clock, data["before"], data["after"]
    )

    assert [a["accepted"]["inventory"] for a in answers] == [1, 1]
    assert event_details(registered, agent.device_id) == [
        {
            "kind": "component_changed",
            "component": "memory",
            "key": None,
            "before": {"installed_bytes": 4294967296},
            "after": {"installed_bytes": 8589934592},
            "summary_en": "Memory changed 4 GiB -> 8 GiB",
            "summary_vi": "Bộ nhớ thay đổi 4 GiB -> 8 GiB",
        }
    ]


def test_ram_removed_is_one_component_removed(http, registered, clock):
    """inv-ram-removed: taking out DIMM1 is one component_removed for that slot."""
    data = case("inv-ram-removed")
    agent, _ = two_inventories(http, registered, clock, data["before"], data["after"])

    assert event_details(registered, agent.device_id) == [
        {
            "kind": "component_removed",
            "component": "memory",
            "key": "DIMM1",
            "before": {"slot": "DIMM1", "size_bytes": 4294967296},
            "after": None,
            "summary_en": "Memory module removed from slot DIMM1 (4 GiB)",
            "summary_vi": "Tháo thanh bộ nhớ ở khe DIMM1 (4 GiB)",
        }
    ]
    assert registered.asset_events(agent.device_id)[0]["school"] == "C02"


def test_vm_usable_memory_wobble_makes_no_event(http, registered, clock):
    """inv-vm-memory: installed and usable memory are stored apart; a wobble of usable
    memory is no event."""
    data = case("inv-vm-memory")
    after = data["run_1"] | data["run_2"]
    agent, answers = two_inventories(http, registered, clock, data["run_1"], after)

    memory = registered.inventory(agent.device_id)["sections"]["memory"]["data"]
    assert (
        [a["accepted"]["inventory"] for a in answers],
        memory["installed_bytes"],
        memory["usable_bytes"],
        events_by_kind(registered),
    ) == ([1, 1], 2147483648, 1815953408, {})


def test_vpn_adapter_added_is_the_same_device_without_event(http, registered, clock):
    """inv-vpn-adds-adapter: a TAP adapter appears; same device, same identity MACs,
    no asset event."""
    data = case("inv-vpn-adds-adapter")
    system = lab_pc()["system"] | data["system"]
    agent, answers = two_inventories(
        http,
        registered,
        clock,
        {"system": system, "network": data["run_1"]},
        {"system": system, "network": data["run_2"]},
    )

    device = registered.device(agent.device_id)
    assert (
        [(a["device_id"], a["instructions"]) for a in answers],
        device["identity"]["macs"],
        len(registered.devices("C02")),
        events_by_kind(registered),
    ) == (
        [(agent.device_id, []), (agent.device_id, [])],
        ["94:65:9C:10:20:30"],
        1,
        {},
    )


def test_huge_software_list_is_accepted_gzip_and_then_sent_unchanged(
    http, registered, clock
):
    """inv-huge-software-list: 3,000 programs (about 1 MB of JSON) arrive gzip; the
    next report marks the list unchanged and the stored list stays whole."""
    agent = enrolled(http, registered, clock, lab_pc(software=huge_software(7)))
    document = agent.report(clock())
    raw = json.dumps(document, ensure_ascii=False).encode()
    body = gzip.compress(raw)
    headers = {
        "Authorization": f"Bearer {agent.credential}",
        "Content-Encoding": "gzip",
    }
    first = http.post("/api/v1/reports", content=body, headers=headers)

    envelopes = agent.envelopes(clock())
    software = envelopes["software"] | {"data": None, "unchanged": True}
    unchanged = inventory_document(envelopes | {"software": software})
    second = agent.send(agent.report(clock(), inventory=unchanged))

    stored = registered.inventory(agent.device_id)["sections"]["software"]
    assert (
        (len(raw) > 500_000, len(body) < len(raw) // 3),
        first.status_code,
        first.json()["accepted"],
        second.json()["instructions"],
        second.json()["duplicates"]["inventory"],
        len(stored["data"]["programs"]),
        stored["data"] == huge_software(7),
    ) == (
        (True, True),
        200,
        {"probes": 5, "speedtests": 0, "inventory": 1},
        [],
        1,
        3000,
        True,
    )


def test_unicode_is_byte_exact_from_agent_to_database_and_api(http, registered, clock):
    """inv-unicode: Vietnamese, Cyrillic and Bulgarian program names and the school
    name come back as the very same UTF-8 bytes."""
    agent = enrolled(http, registered, clock, lab_pc())
    body = json.dumps(agent.report(clock()), ensure_ascii=False).encode("utf-8")
    http.post(
        "/api/v1/reports",
        content=body,
        headers={"Authorization": f"Bearer {agent.credential}"},
    )
    names = [p["name"] for p in lab_pc()["software"]["programs"]]

    raw = http.get(f"/api/v1/devices/{agent.device_id}").content
    stored = registered.inventory(agent.device_id)["sections"]["software"]["data"]
    school = http.get("/api/v1/schools/C02").content
    assert (
        [p["name"] for p in stored["programs"]],
        [json.dumps(n, ensure_ascii=False).encode() in raw for n in names],
        "Trường THCS Cẩm Phúc".encode() in school,
    ) == (names, [True] * 4, True)


def test_failed_section_keeps_the_last_good_data_and_records_the_failure(
    http, registered, clock
):
    """A memory section that timed out keeps the last good modules (no event) and
    says when and why it failed."""
    agent = enrolled(http, registered, clock, lab_pc())
    agent.send(agent.report(clock()))
    envelopes = agent.envelopes(clock())
    envelopes["memory"] = envelopes["memory"] | {
        "status": "timeout",
        "error": "WMI timed out",
        "hash": None,
        "data": None,
    }
    later = agent.send(agent.report(clock(), inventory=inventory_document(envelopes)))

    memory = registered.inventory(agent.device_id)["sections"]["memory"]
    assert (
        later.json()["duplicates"]["inventory"],
        memory["status"],
        memory["data"],
        memory["last_failure"],
        events_by_kind(registered),
    ) == (
        1,
        "ok",
        lab_pc()["memory"],
        {
            "status": "timeout",
            "error": "WMI timed out",
            "collected_at": "2026-12-01T02:00:00Z",
        },
        {},
    )


def test_unchanged_section_with_an_unknown_hash_asks_for_the_full_inventory(
    http, registered, clock
):
    """A section sent unchanged whose hash the collector does not hold keeps the
    stored data and answers send_full_inventory."""
    agent = enrolled(http, registered, clock, lab_pc())
    agent.send(agent.report(clock()))
    envelopes = agent.envelopes(clock())
    envelopes["software"] = envelopes["software"] | {
        "hash": "f" * 64,
        "data": None,
        "unchanged": True,
    }
    answer = agent.send(agent.report(clock(), inventory=inventory_document(envelopes)))

    software = registered.inventory(agent.device_id)["sections"]["software"]
    assert (answer.json()["instructions"], software["data"]) == (
        [{"kind": "send_full_inventory"}],
        lab_pc()["software"],
    )


def snapshots(storage, device_id: str) -> list[dict[str, Any]]:
    return storage.inventory_snapshots(device_id)


def test_volatile_fields_update_the_inventory_but_keep_no_snapshot(
    http, registered, clock
):
    """A volume's free space, the boot time and usable memory change between two
    inventories: the latest inventory holds the new values; the history keeps only
    the first snapshot."""
    after = lab_pc()
    after["disks"]["volumes"][0]["free_bytes"] -= 10**9
    after["system"]["boot_time"] = "2026-12-01T01:00:00Z"
    after["memory"]["usable_bytes"] -= 4096
    agent, answers = two_inventories(http, registered, clock, {}, after)

    stored = registered.inventory(agent.device_id)["sections"]
    assert (
        [a["accepted"]["inventory"] for a in answers],
        stored["disks"]["data"]["volumes"][0]["free_bytes"],
        stored["system"]["data"]["boot_time"],
        len(snapshots(registered, agent.device_id)),
    ) == (
        [1, 1],
        after["disks"]["volumes"][0]["free_bytes"],
        "2026-12-01T01:00:00Z",
        1,
    )


def test_a_hardware_change_keeps_a_snapshot(http, registered, clock):
    """inv-ram-upgrade: the memory upgrade is kept in the history as a second
    snapshot holding the new memory."""
    data = case("inv-ram-upgrade")
    agent, _ = two_inventories(http, registered, clock, data["before"], data["after"])

    history = snapshots(registered, agent.device_id)
    assert [s["sections"]["memory"]["data"]["installed_bytes"] for s in history] == [
        4294967296,
        8589934592,
    ]
