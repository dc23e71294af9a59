"""Windows inventory parsers on the exact text PowerShell prints (captured fixtures)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from schoolmon.agent.inventory import _windows
from schoolmon.agent.inventory.normalize import identity_signals

from tests.agent.conftest import FIXTURES

WINDOWS = FIXTURES / "windows"
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
# Compliance with the minimum specification is the collector's policy, not a
# fact the agent reports; that part of the case is asserted by the collector.
POLICY_KEYS = {"below_minimum_spec"}


def load(name: str) -> dict:
    return json.loads((WINDOWS / name).read_text(encoding="utf-8"))


def fetch_from(captured: dict):
    """A fetch function answering each query with its captured text."""
    return lambda name: _windows.parse_cim(captured.get(name, ""))


def sections_of(captured: dict) -> dict:
    fetch = fetch_from(captured)
    warnings: list[str] = []
    return {
        "system": _windows.system(fetch, warnings),
        "memory": _windows.memory(fetch, warnings),
        "disks": _windows.disks(fetch, warnings, "C:"),
        "network": _windows.network(fetch, warnings, {}),
        "os": _windows.os_section(fetch, warnings, NOW),
        "software": _windows.software(fetch, warnings),
        "monitors": _windows.monitors(fetch, warnings),
    }


def view(sections: dict, expected: dict) -> dict:
    """Project parsed sections onto the shape of a fixture's ``expected``."""
    modules = sections["memory"]["modules"] or []
    projections = {
        "system": lambda: {k: sections["system"][k] for k in expected["system"]},
        "memory_installed_bytes": lambda: sections["memory"]["installed_bytes"],
        "memory_module_serial": lambda: modules[0]["serial"],
        "fixed_disks": lambda: [
            {k: d[k] for k in ("model", "serial", "size_bytes")}
            for d in sections["disks"]["physical"]
            if not d["removable"]
        ],
        "adapter_kinds": lambda: {
            a["mac"]: a["kind"] for a in sections["network"]["adapters"]
        },
        "identity_macs": lambda: identity_signals(sections)["macs"],
        "os": lambda: {k: sections["os"][k] for k in expected["os"]},
        "monitors": lambda: sections["monitors"]["monitors"],
        "programs": lambda: [p["name"] for p in sections["software"]["programs"]],
    }
    return {key: projections[key]() for key in expected if key not in POLICY_KEYS}


@pytest.mark.parametrize(
    "fixture",
    [
        "branded-win10.json",
        "whitebox-win7.json",
        "powershell7-iso-dates-tethering-hyperv.json",
    ],
)
def test_parsed_inventory_matches_the_whole_expected_result(fixture):
    """Parsing every captured query gives exactly the fixture's expected inventory."""
    captured = load(fixture)
    expected = {k: v for k, v in captured["expected"].items() if k not in POLICY_KEYS}

    assert view(sections_of(captured), expected) == expected


def test_whitebox_win7_full_system_section_has_no_placeholders():
    """The white-box board's OEM filler becomes null in the whole system section."""
    system = sections_of(load("whitebox-win7.json"))["system"]

    assert system == {
        "hostname": "PC-07",
        "manufacturer": None,
        "model": None,
        "serial": None,
        "uuid": None,
        "board": "Gigabyte Technology Co., Ltd. H61M-S1",
        "board_serial": None,
        "bios_version": "F6",
        "bios_date": "2012-01-01",
        "virtual": False,
        "machine_id": None,
        "boot_time": "2025-12-03T01:00:00Z",
    }


def test_branded_win10_network_section_drops_speed_sentinel_and_keeps_buses():
    """The unknown-speed sentinel is null and each adapter keeps its bus."""
    adapters = sections_of(load("branded-win10.json"))["network"]["adapters"]

    assert adapters == [
        {
            "name": "Realtek PCIe GBE Family Controller",
            "mac": "B8:CA:3A:11:22:33",
            "kind": "ethernet",
            "addresses": [],
            "speed_bps": 100000000,
            "up": True,
            "bus": "pci",
        },
        {
            "name": "Bluetooth Device (Personal Area Network)",
            "mac": "00:1A:7D:DA:71:0A",
            "kind": "bluetooth",
            "addresses": [],
            "speed_bps": None,
            "up": False,
            "bus": "bluetooth",
        },
        {
            "name": "TAP-Windows Adapter V9",
            "mac": "00:FF:4E:AA:BB:CC",
            "kind": "vpn",
            "addresses": [],
            "speed_bps": None,
            "up": False,
            "bus": "root",
        },
    ]


def test_branded_win10_volumes_are_fixed_drives_with_system_flag():
    """Only DriveType 3 volumes are listed, sizes from byte counts, C: is system."""
    volumes = sections_of(load("branded-win10.json"))["disks"]["volumes"]

    assert volumes == [
        {
            "device": "C:",
            "mount": "C:\\",
            "filesystem": "NTFS",
            "size_bytes": 214748360704,
            "free_bytes": 38654705664,
            "system": True,
        },
        {
            "device": "D:",
            "mount": "D:\\",
            "filesystem": "NTFS",
            "size_bytes": 285354307584,
            "free_bytes": 250000000000,
            "system": False,
        },
    ]


def test_uninstall_keys_filtered_and_deduplicated_across_registry_views():
    """Updates, system components and blank names are dropped; duplicates once."""
    captured = load("uninstall-duplicates-across-wow6432node-and-updates.json")
    fetch = fetch_from(captured)

    software = _windows.software(fetch, [])

    assert software == {
        "source": "windows-uninstall",
        "programs": captured["expected"]["programs_full"],
    }


def test_case_vm_memory_and_disk_bytes_keep_both_fields_and_byte_counts():
    """Installed and usable memory stay apart; disk sizes are the byte counts."""
    captured = load("hyperv-vm-memory-and-disk-byte-counts.json")
    sections = sections_of(captured)

    assert {"memory": sections["memory"], "disks": sections["disks"]} == captured[
        "expected"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Date(1483228800000)/", "2017-01-01T00:00:00Z"),
        ("2021-06-15T07:00:00+07:00", "2021-06-15T00:00:00Z"),
        ("2021-06-15T00:00:00", "2021-06-15T00:00:00Z"),
        ("20170101000000.000000+420", "2016-12-31T17:00:00Z"),
        ("not a date", None),
        (None, None),
    ],
)
def test_cim_dates_in_every_powershell_spelling(text, expected):
    """PowerShell 5.1 /Date(ms)/, PowerShell 7 ISO and WMI DMTF dates all parse."""
    assert _windows.cim_date(text) == expected


def test_parse_cim_accepts_object_array_and_empty_output():
    """One instance prints an object, several an array, none prints nothing."""
    results = [
        _windows.parse_cim('{"A": 1}'),
        _windows.parse_cim('[{"A": 1}, {"A": 2}]'),
        _windows.parse_cim("\ufeff  \r\n"),
    ]

    assert results == [[{"A": 1}], [{"A": 1}, {"A": 2}], []]


def test_every_query_sets_utf8_output_first():
    """Each PowerShell script starts by switching its output encoding to UTF-8."""
    assert _windows._UTF8_FIRST.startswith(
        "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8"
    )
    assert sorted(_windows._SCRIPTS) == sorted(
        [*_windows.QUERIES, "WmiMonitorID", "Uninstall", "MachineGuid"]
    )


def test_fixture_files_are_the_shared_cases_unchanged():
    """The two shared Windows cases are copied byte for byte into the fixtures."""
    shared = Path("/work/shared/cases/windows")
    if not shared.is_dir():
        pytest.skip("shared cases directory not present on this machine")
    for name in ("branded-win10.json", "whitebox-win7.json"):
        assert (WINDOWS / name).read_bytes() == (shared / name).read_bytes()
