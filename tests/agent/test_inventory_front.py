"""The inventory front: envelopes, per-section timeout and error capture."""

from __future__ import annotations

import threading

import pytest
from schoolmon.agent.inventory import SECTIONS, collect, inventory_document
from schoolmon.agent.inventory.normalize import canonical_hash

NOW = 1_796_263_200.0  # 2026-12-03T02:00:00Z


def test_each_section_gets_its_own_status_and_nothing_crashes():
    """A slow, a broken, a missing and a good reader each give their envelope."""
    release = threading.Event()

    def slow(warnings):
        release.wait(5)
        return {}

    def broken(warnings):
        raise OSError("WMI repository is corrupt")

    def partial(warnings):
        warnings.append("cpu.max_frequency_mhz: the system does not report it")
        return {
            "model": "Intel(R) Pentium(R) CPU G630 @ 2.70GHz",
            "max_frequency_mhz": None,
        }

    readers = {"system": slow, "memory": broken, "cpu": partial}
    try:
        result = collect(
            ["system", "memory", "cpu", "battery"], 0.2, readers, now=lambda: NOW
        )
    finally:
        release.set()

    for env in result.values():
        assert env.pop("duration_seconds") >= 0
    cpu = {"model": "Intel(R) Pentium(R) CPU G630 @ 2.70GHz", "max_frequency_mhz": None}
    at = "2026-12-03T02:00:00Z"
    assert result == {
        "system": {
            "status": "timeout",
            "collected_at": at,
            "error": result["system"]["error"],
            "warnings": [],
            "hash": None,
            "data": None,
        },
        "memory": {
            "status": "error",
            "collected_at": at,
            "error": "OSError: WMI repository is corrupt",
            "warnings": [],
            "hash": None,
            "data": None,
        },
        "cpu": {
            "status": "ok",
            "collected_at": at,
            "error": None,
            "warnings": ["cpu.max_frequency_mhz: the system does not report it"],
            "hash": canonical_hash(cpu),
            "data": cpu,
        },
        "battery": {
            "status": "unsupported",
            "collected_at": at,
            "error": None,
            "warnings": [],
            "hash": None,
            "data": None,
        },
    }
    assert result["system"]["error"].startswith("section system took over 0.")


def test_unknown_section_name_is_refused_with_the_known_ones():
    """Asking for a section that does not exist names it and lists the known ones."""
    with pytest.raises(ValueError, match=r"unknown inventory section\(s\) \['bios'\]"):
        collect(["bios"], readers={})


def test_real_collection_on_this_machine_has_every_section_ok():
    """Every section of this machine's real inventory is collected without error."""
    sections = collect(timeout=30)

    assert list(sections) == list(SECTIONS)
    assert {name: env["status"] for name, env in sections.items()} == dict.fromkeys(
        SECTIONS, "ok"
    )
    assert [
        env["hash"] == canonical_hash(env["data"]) for env in sections.values()
    ] == [True] * len(SECTIONS)


def test_inventory_hash_changes_only_with_a_section_hash():
    """The inventory hash is over section hashes: same data, same hash."""
    sections = {"cpu": {"hash": "a", "data": {}}, "os": {"hash": "b", "data": {}}}
    changed = {"cpu": {"hash": "a", "data": {}}, "os": {"hash": "c", "data": {}}}

    first, again, other = (
        inventory_document(sections),
        inventory_document(dict(sections)),
        inventory_document(changed),
    )

    assert first["hash"] == again["hash"] != other["hash"]
    assert first["sections"] == sections
