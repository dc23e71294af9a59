"""Asset history: events between two inventories, and which sections are stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from schoolmon.server.assets import (
    AssetEvent,
    diff_inventories,
    format_binary,
    format_decimal,
    merge_sections,
    needs_full_inventory,
    renamed,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "assets"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def ok(sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Wrap bare section data in ``ok`` envelopes as the agent sends them."""
    return {
        name: {
            "status": "ok",
            "collected_at": "2026-12-03T01:00:00Z",
            "duration_seconds": 0.05,
            "error": None,
            "warnings": [],
            "hash": f"hash-{name}",
            "data": data,
        }
        for name, data in sections.items()
    }


def test_ram_upgrade_is_one_memory_changed_event():
    """Two modules swapped for bigger ones give exactly one event, none for wobbles."""
    case = load("inv-ram-upgrade")

    events = diff_inventories(ok(case["before"]), ok(case["after"]))

    assert events == [
        AssetEvent(
            kind="component_changed",
            component="memory",
            key=None,
            before={"installed_bytes": 4294967296},
            after={"installed_bytes": 8589934592},
            summary_en="Memory changed 4 GiB -> 8 GiB",
            summary_vi="Bộ nhớ thay đổi 4 GiB -> 8 GiB",
        )
    ]


def test_ram_removed_is_one_component_removed_for_the_slot():
    """A module gone from DIMM1 is one component_removed keyed by the slot."""
    case = load("inv-ram-removed")

    events = diff_inventories(ok(case["before"]), ok(case["after"]))

    assert events == [
        AssetEvent(
            kind="component_removed",
            component="memory",
            key="DIMM1",
            before={"slot": "DIMM1", "size_bytes": 4294967296},
            after=None,
            summary_en="Memory module removed from slot DIMM1 (4 GiB)",
            summary_vi="Tháo thanh bộ nhớ ở khe DIMM1 (4 GiB)",
        )
    ]


def test_ram_added_is_one_component_added_for_the_slot():
    """Putting the module back into DIMM1 is one component_added."""
    case = load("inv-ram-removed")

    events = diff_inventories(ok(case["after"]), ok(case["before"]))

    assert events == [
        AssetEvent(
            kind="component_added",
            component="memory",
            key="DIMM1",
            before=None,
            after={"slot": "DIMM1", "size_bytes": 4294967296},
            summary_en="Memory module added in slot DIMM1 (4 GiB)",
            summary_vi="Lắp thêm thanh bộ nhớ vào khe DIMM1 (4 GiB)",
        )
    ]


def test_vm_usable_memory_wobble_is_no_event():
    """Installed and usable memory stay separate; usable changing is no event."""
    case = load("inv-vm-memory")

    events = diff_inventories(ok(case["run_1"]), ok(case["run_2"]))

    assert events == []
    assert (
        case["run_2"]["memory"]["installed_bytes"],
        case["run_2"]["memory"]["usable_bytes"],
    ) == (2147483648, 1815953408)


def test_memory_total_compared_when_modules_are_unknown():
    """Without module lists the installed total decides, with a formatted summary."""
    before = {"memory": {"installed_bytes": 2 * 1024**3, "modules": []}}
    after = {"memory": {"installed_bytes": 3 * 1024**3, "modules": []}}

    events = diff_inventories(ok(before), ok(after))

    assert [(e.kind, e.summary_en, e.summary_vi) for e in events] == [
        (
            "component_changed",
            "Memory changed 2 GiB -> 3 GiB",
            "Bộ nhớ thay đổi 2 GiB -> 3 GiB",
        )
    ]


def test_vpn_adapter_added_is_no_event():
    """A TAP adapter is not hardware: no network event."""
    case = load("inv-vpn-adds-adapter")

    events = diff_inventories(
        ok({"network": case["run_1"]}), ok({"network": case["run_2"]})
    )

    assert events == []


def test_replaced_network_card_is_one_component_changed():
    """The onboard MAC gone and a card's MAC new is one network change."""
    case = load("identity-replaced-network-card")

    events = diff_inventories(
        ok({"network": case["network_before"]}), ok({"network": case["network_after"]})
    )

    assert events == [
        AssetEvent(
            kind="component_changed",
            component="network",
            key="00:E0:4C:68:01:02",
            before={"mac": "1C:6F:65:AA:00:07", "name": "Ethernet", "kind": "ethernet"},
            after={
                "mac": "00:E0:4C:68:01:02",
                "name": "Ethernet 2",
                "kind": "ethernet",
            },
            summary_en="Network adapter changed Ethernet (1C:6F:65:AA:00:07) -> "
            "Ethernet 2 (00:E0:4C:68:01:02)",
            summary_vi="Card mạng thay đổi Ethernet (1C:6F:65:AA:00:07) -> "
            "Ethernet 2 (00:E0:4C:68:01:02)",
        )
    ]


def test_disk_added_is_sized_from_bytes_in_decimal_units():
    """A second fixed disk is one event sized from bytes; a USB stick is ignored."""
    case = load("inv-disk-bytes")

    events = diff_inventories(ok(case["before"]), ok(case["after"]))

    assert events == [
        AssetEvent(
            kind="component_added",
            component="disk",
            key="Z1F0ABCD",
            before=None,
            after={
                "model": "ST3000DM001",
                "serial": "Z1F0ABCD",
                "size_bytes": 3000592982016,
            },
            summary_en="Disk added: ST3000DM001 (3 TB, serial Z1F0ABCD)",
            summary_vi="Thêm ổ đĩa: ST3000DM001 (3 TB, serial Z1F0ABCD)",
        )
    ]


def test_replaced_parts_give_one_event_each():
    """OS upgrade, CPU swap, disk and monitor replacement: four changed events."""
    case = load("assets-parts-replaced")

    events = diff_inventories(ok(case["before"]), ok(case["after"]))

    assert [(e.kind, e.component, e.key, e.summary_en) for e in events] == [
        (
            "component_changed",
            "disk",
            "50026B7784A1B2C3",
            "Disk changed ST500DM002-1BD142 (500 GB, serial Z3T4ABCD) -> "
            "KINGSTON SA400S37240G (240 GB, serial 50026B7784A1B2C3)",
        ),
        (
            "component_changed",
            "cpu",
            None,
            "CPU changed Intel(R) Pentium(R) CPU G3250 @ 3.20GHz -> "
            "Intel(R) Core(TM) i3-4150 CPU @ 3.50GHz",
        ),
        (
            "component_changed",
            "monitor",
            "H4ZK300123",
            "Monitor changed DELL E1916H (serial CN0J9727) -> "
            "S22F350 (serial H4ZK300123)",
        ),
        (
            "component_changed",
            "os",
            None,
            "OS changed Microsoft Windows 10 Pro 10.0.19045 -> "
            "Microsoft Windows 11 Pro 10.0.26100",
        ),
    ]
    assert events[3].summary_vi == (
        "Hệ điều hành thay đổi Microsoft Windows 10 Pro 10.0.19045 -> "
        "Microsoft Windows 11 Pro 10.0.26100"
    )
    assert (events[3].before, events[3].after) == (
        {
            "family": "windows",
            "name": "Microsoft Windows 10 Pro",
            "version": "10.0.19045",
        },
        {
            "family": "windows",
            "name": "Microsoft Windows 11 Pro",
            "version": "10.0.26100",
        },
    )


def test_failed_section_is_never_compared():
    """A memory timeout after a good run gives no 'memory removed' event."""
    case = load("assets-failed-section")

    events = diff_inventories(case["stored"], case["received"])

    assert events == []


def test_failed_section_keeps_its_last_good_values():
    """Merging keeps stored data of failed and unchanged sections, noting failures."""
    case = load("assets-failed-section")
    stored, received = case["stored"], case["received"]

    merged = merge_sections(stored, received)

    assert merged == {
        "memory": {
            **stored["memory"],
            "last_failure": {
                "status": "timeout",
                "error": "Get-CimInstance Win32_PhysicalMemory timed out after 30 s",
                "collected_at": "2026-12-03T01:00:00Z",
            },
        },
        "software": {**received["software"], "data": stored["software"]["data"]},
        "battery": received["battery"],
    }
    assert needs_full_inventory(stored, received) == []


def test_unchanged_section_unknown_to_the_collector_asks_for_a_full_inventory():
    """An 'unchanged' section with no stored data is named for send_full_inventory."""
    received = load("assets-failed-section")["received"]

    assert needs_full_inventory({}, received) == ["software"]


def test_renamed_pc_is_a_rename_not_an_asset_event():
    """A hostname change is reported by renamed() and makes no asset event."""
    case = load("identity-renamed-pc")
    before, after = (
        ok({"system": case["system_before"]}),
        ok({"system": case["system_after"]}),
    )

    assert (renamed(before, after), diff_inventories(before, after)) == (
        ("PC-07", "PHONGMAY-07"),
        [],
    )


@pytest.mark.parametrize(
    ("size", "en", "vi"),
    [
        (4294967296, "4 GiB", "4 GiB"),
        (1816133632, "1.7 GiB", "1,7 GiB"),
        (536870912, "512 MiB", "512 MiB"),
        (None, "?", "?"),
    ],
)
def test_memory_sizes_read_in_binary_units(size, en, vi):
    """Memory sizes are shown in GiB/MiB with the language's decimal mark."""
    assert (format_binary(size), format_binary(size, ",")) == (en, vi)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (500105249280, "500 GB"),
        (256060514304, "256 GB"),
        (3000592982016, "3 TB"),
        (2500000000000, "2.5 TB"),
        (8004304896, "8 GB"),
        (7516192768, "7.5 GB"),
    ],
)
def test_disk_sizes_read_in_decimal_units(size, text):
    """Disk sizes are shown the way vendors label them (decimal GB/TB)."""
    assert format_decimal(size) == text
