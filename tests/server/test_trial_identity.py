"""Identity: one signal in common, contradicted by another, never makes two machines
one device (a virtual disk serial, a moved USB network adapter, a batch board)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from schoolmon.server.identity import Decision, KnownDevice, Signals, identify

from tests.support.collector import enroll

FIXTURES = Path(__file__).parents[1] / "fixtures" / "assets"
UUID_A = "4C4C4544-0058-4B10-8032-B8C04F513332"
UUID_B = "4C4C4544-0031-3510-8052-C2C04F4B4C32"
NEW_MACHINE = Decision("new_machine", None, "C02", None, ())


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def known(entry: dict[str, Any]) -> KnownDevice:
    return KnownDevice(
        entry["device_id"], entry["school"], Signals.from_wire(entry["signals"])
    )


def test_shared_virtual_disk_serial_does_not_merge_two_vms():
    """'overlayblk' on two VMs with their own machine ids: a new machine, not moved."""
    case = load("identity-shared-virtual-disk-serial")

    decision = identify(
        Signals.from_wire(case["incoming"]),
        school=case["token_school"],
        candidates=[known(case["known"])],
    )

    assert (decision, decision.events()) == (NEW_MACHINE, [])


LONE_SIGNAL_CONTRADICTED = {
    "disk serial vs machine id": (
        {"disk_serial": "overlayblk", "machine_id": "m-1"},
        {"disk_serial": "overlayblk", "machine_id": "m-2"},
    ),
    "disk serial vs SMBIOS UUID": (
        {"disk_serial": "S3Z9NB0K812345", "smbios_uuid": UUID_A},
        {"disk_serial": "S3Z9NB0K812345", "smbios_uuid": UUID_B},
    ),
    "disk serial vs system serial": (
        {"disk_serial": "S3Z9NB0K812345", "system_serial": "8XK2Q32"},
        {"disk_serial": "S3Z9NB0K812345", "system_serial": "2RKLK12"},
    ),
    "USB adapter MAC vs SMBIOS UUID": (
        {"macs": ["00:E0:4C:68:01:02"], "smbios_uuid": UUID_A},
        {"macs": ["00:E0:4C:68:01:02"], "smbios_uuid": UUID_B},
    ),
    "MAC vs machine id": (
        {"macs": ["00:E0:4C:68:01:02"], "machine_id": "m-1"},
        {"macs": ["00:E0:4C:68:01:02"], "machine_id": "m-2"},
    ),
    "SMBIOS UUID vs disk serial": (
        {"smbios_uuid": UUID_A, "disk_serial": "WD-WCC2EAB10001"},
        {"smbios_uuid": UUID_A, "disk_serial": "WD-WCC2EAB10002"},
    ),
    "board serial vs MAC": (
        {"board_serial": "/8XK2Q32/CN12/", "macs": ["1C:6F:65:AA:00:01"]},
        {"board_serial": "/8XK2Q32/CN12/", "macs": ["1C:6F:65:AA:00:02"]},
    ),
}


@pytest.mark.parametrize(
    ("stored", "incoming"),
    list(LONE_SIGNAL_CONTRADICTED.values()),
    ids=list(LONE_SIGNAL_CONTRADICTED),
)
def test_one_signal_contradicted_by_another_identifies_nobody(stored, incoming):
    """At enrollment, one match against one contradiction is a new machine."""
    device = KnownDevice("d_pc01", "C01", Signals.from_wire(stored))

    decision = identify(Signals.from_wire(incoming), school="C02", candidates=[device])

    assert decision == NEW_MACHINE


def test_two_matches_outweigh_a_new_machine_id():
    """A reinstalled PC (new machine id) with MAC and disk as before is recognised."""
    stored = {
        "machine_id": "m-1",
        "disk_serial": "Z3T4ABCD",
        "macs": ["B8:CA:3A:11:22:33"],
    }
    incoming = stored | {"machine_id": "m-2"}
    device = KnownDevice("d_pc01", "C01", Signals.from_wire(stored))

    decision = identify(Signals.from_wire(incoming), school="C01", candidates=[device])

    assert decision == Decision(
        outcome="other_known",
        device_id="d_pc01",
        school="C01",
        score=75,
        reasons=(
            "macs matches (B8:CA:3A:11:22:33)",
            "disk_serial matches (Z3T4ABCD)",
            "machine_id differs (m-2 vs m-1)",
        ),
    )


def test_cloned_vm_on_a_shared_credential_becomes_its_own_device():
    """Same virtual disk serial, other MAC and machine id: not the credential's PC."""
    stored = {"machine_id": "m-1", "disk_serial": "overlayblk",
              "macs": ["52:54:00:12:34:01"]}  # fmt: skip
    incoming = {"machine_id": "m-2", "disk_serial": "overlayblk",
                "macs": ["52:54:00:12:34:02"]}  # fmt: skip
    device = KnownDevice("d_vm01", "C01", Signals.from_wire(stored))

    decision = identify(
        Signals.from_wire(incoming), school="C01", credential=device,
        candidates=[device],
    )  # fmt: skip

    assert decision == Decision(
        outcome="new_machine_on_shared_credential",
        device_id=None,
        school="C01",
        score=-5,
        reasons=(
            "macs differ (52:54:00:12:34:02 vs 52:54:00:12:34:01)",
            "disk_serial matches (overlayblk)",
            "machine_id differs (m-2 vs m-1)",
        ),
        credential_device_id="d_vm01",
        raise_conflict=True,
    )


def test_vms_sharing_a_disk_serial_enroll_as_two_devices_at_their_schools(
    http, registered
):
    """Through the API: the second VM's enrollment leaves the first one in place."""
    case = load("identity-shared-virtual-disk-serial")
    first = enroll(http, registered, "C01", identity=case["known"]["signals"])
    second = enroll(http, registered, "C02", identity=case["incoming"])

    devices = sorted(
        (d["id"], d["school"], d["hostname"]) for d in registered.devices()
    )

    assert (
        first["device_id"] != second["device_id"],
        devices,
        registered.asset_events(first["device_id"]),
    ) == (
        True,
        sorted(
            [
                (first["device_id"], "C01", "LAB-PC01"),
                (second["device_id"], "C02", "LAB-PC01"),
            ]
        ),
        [],
    )
