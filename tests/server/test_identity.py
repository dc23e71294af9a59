"""Identity decisions: which known device a report or an enrollment belongs to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from schoolmon.server.assets import AssetEvent
from schoolmon.server.identity import (
    Decision,
    KnownDevice,
    Signals,
    compare,
    identify,
    shared_values,
    uuid_forms,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "assets"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def known(entry: dict[str, Any]) -> KnownDevice:
    return KnownDevice(
        device_id=entry["device_id"],
        school=entry["school"],
        signals=Signals.from_wire(entry["signals"]),
        conflict_reported=entry.get("conflict_reported", False),
    )


@pytest.mark.parametrize(
    ("field", "values"),
    sorted(load("inv-placeholder-serials")["placeholders"].items()),
)
def test_placeholders_from_an_old_agent_become_unknown(field, values):
    """Every placeholder serial and UUID in the wire signals is cleaned to None."""
    cleaned = [getattr(Signals.from_wire({field: value}), field) for value in values]

    assert cleaned == [None] * len(values)


def test_two_pcs_differing_only_by_placeholders_are_never_merged():
    """Identical placeholder serials and UUIDs do not make a new PC a known device."""
    case = load("inv-placeholder-serials")
    pc = known(case["known"])

    decision = identify(
        Signals.from_wire(case["incoming"]), school="C01", candidates=[pc]
    )

    assert decision == Decision(
        outcome="new_machine", device_id=None, school="C01", score=None, reasons=()
    )


def test_shared_bluetooth_mac_does_not_merge_two_pcs():
    """Two PCs with one Bluetooth MAC in common stay two devices."""
    case = load("inv-shared-bluetooth-mac")
    pc_a = KnownDevice("d_pc07", "C01", Signals.from_sections(case["pc_a"]))
    signals_b = Signals.from_sections(case["pc_b"])

    decision = identify(signals_b, school="C01", candidates=[pc_a])

    assert signals_b == Signals(
        macs=frozenset({"B8:AC:6F:11:22:02"}), hostname="LAB-PC12"
    )
    assert decision == Decision(
        outcome="new_machine", device_id=None, school="C01", score=None, reasons=()
    )


def test_vpn_adapter_added_keeps_the_same_device():
    """A TAP adapter appearing between two runs changes nothing about identity."""
    case = load("inv-vpn-adds-adapter")
    run_1 = Signals.from_sections({"system": case["system"], "network": case["run_1"]})
    run_2 = Signals.from_sections({"system": case["system"], "network": case["run_2"]})
    device = KnownDevice("d_pc03", "C01", run_1)

    decision = identify(run_2, school="C01", credential=device, candidates=[device])

    assert run_2 == run_1
    assert decision == Decision(
        outcome="same",
        device_id="d_pc03",
        school="C01",
        score=90,
        reasons=(
            "macs matches (94:65:9C:10:20:30)",
            "smbios_uuid matches (4C4C4544-0058-4B10-8032-B8C04F513335)",
            "system_serial matches (8XK2Q35)",
            "machine_id matches (0b6e2c1f-7a1d-4d2e-9a53-1f2e3d4c5b6a)",
            "hostname PHONGMAY-PC03 (not used for identity)",
        ),
        credential_device_id="d_pc03",
    )


def test_cloned_image_splits_into_one_device_per_machine_with_one_conflict():
    """24 copies on one credential become 24 new devices and raise one conflict."""
    case = load("inv-cloned-image")
    master = known(case["master"])
    devices = {master.device_id: master}
    outcomes, events = [], []

    for number, wire in enumerate(case["copies"], start=1):
        decision = identify(
            Signals.from_wire(wire),
            school="C02",
            credential=devices["d_master"],
            candidates=list(devices.values()),
        )
        new_id = f"d_copy{number:02d}"
        outcomes.append((decision.outcome, decision.device_id))
        events += decision.events(new_device_id=new_id)
        devices[new_id] = KnownDevice(new_id, "C02", Signals.from_wire(wire))
        if decision.raise_conflict:
            devices["d_master"] = KnownDevice(
                "d_master", "C02", master.signals, conflict_reported=True
            )

    assert outcomes == [("new_machine_on_shared_credential", None)] * 24
    assert [event.kind for event in events] == ["identity_conflict"]
    assert events[0] == AssetEvent(
        kind="identity_conflict",
        component="device",
        key="d_master",
        before={"device_id": "d_master"},
        after={
            "device_id": "d_copy01",
            "reasons": [
                "macs differ (1C:6F:65:AA:01:01 vs 1C:6F:65:AA:01:00)",
                "disk_serial differs (WD-WCC2EAB10001 vs WD-WCC2EAB10000)",
                "machine_id matches (9f1c0a7e5b2d4e8f8a6b3c2d1e0f9a8b)",
                "hostname PHONGMAY-PC (not used for identity)",
            ],
        },
        summary_en="The credential of device d_master is also used by another machine "
        "(new device d_copy01); it gets its own credential",
        summary_vi="Khóa xác thực của thiết bị d_master đang được một máy khác dùng "
        "(thiết bị mới d_copy01); máy đó được cấp khóa riêng",
    )


def test_cloned_copies_still_on_the_old_credential_land_on_their_own_device():
    """A copy that reports again with the image's credential is routed to its device."""
    case = load("inv-cloned-image")
    master = known(case["master"])
    copies = [
        KnownDevice(f"d_copy{n:02d}", "C02", Signals.from_wire(wire))
        for n, wire in enumerate(case["copies"], start=1)
    ]
    everyone = [master, *copies]

    routed = [
        identify(
            Signals.from_wire(wire),
            school="C02",
            credential=master,
            candidates=everyone,
        ).device_id
        for wire in case["copies"]
    ]
    own = identify(master.signals, school="C02", credential=master, candidates=everyone)

    assert routed == [device.device_id for device in copies]
    assert (own.outcome, own.device_id) == ("same", "d_master")


def test_reboot_to_restore_recognises_the_pc_by_its_hardware():
    """The restored master credential is routed to the PC's own device."""
    case = load("inv-reboot-to-restore")
    devices = [known(entry) for entry in case["known"]]

    decision = identify(
        Signals.from_wire(case["morning_report"]),
        school="C02",
        credential=devices[0],
        candidates=devices,
    )

    assert decision == Decision(
        outcome="other_known",
        device_id="d_copy05",
        school="C02",
        score=75,
        reasons=(
            "macs matches (1C:6F:65:AA:01:05)",
            "disk_serial matches (WD-WCC2EAB10005)",
            "hostname PHONGMAY-PC (not used for identity)",
        ),
        credential_device_id="d_master",
    )
    assert decision.events() == []


def test_reinstalled_os_enrolled_again_is_the_known_pc():
    """A new machine id on the same hardware is recognised at enrollment."""
    case = load("identity-reinstalled-os")
    devices = [known(case["known"]), known(case["other"])]

    decision = identify(
        Signals.from_wire(case["incoming"]), school="C01", candidates=devices
    )

    assert decision == Decision(
        outcome="other_known",
        device_id="d_pc01",
        school="C01",
        score=135,
        reasons=(
            "macs matches (B8:CA:3A:11:22:33)",
            "disk_serial matches (Z3T4ABCD)",
            "smbios_uuid matches (4C4C4544-0058-4B10-8032-B8C04F513332)",
            "system_serial matches (8XK2Q32)",
            "board_serial matches (/8XK2Q32/CN1296345I00A7/)",
            "hostname PHONGMAY-PC01 -> DESKTOP-8K3J2QF (not used for identity)",
        ),
    )


def test_uuid_in_the_other_byte_order_is_the_same_machine():
    """Windows and dmidecode spellings of one SMBIOS UUID match each other."""
    case = load("identity-uuid-byte-order")
    device = known(case["known"])

    decision = identify(
        Signals.from_wire(case["incoming"]), school="C01", candidates=[device]
    )

    assert uuid_forms("4C4C4544-0058-4B10-8032-B8C04F513332") == {
        "4C4C4544-0058-4B10-8032-B8C04F513332",
        "44454C4C-5800-104B-8032-B8C04F513332",
    }
    assert decision == Decision(
        outcome="other_known",
        device_id="d_pc01",
        school="C01",
        score=20,
        reasons=(
            "smbios_uuid matches byte-swapped (44454C4C-5800-104B-8032-B8C04F513332 "
            "vs 4C4C4544-0058-4B10-8032-B8C04F513332)",
            "hostname PHONGMAY-PC01 -> phongmay-pc01 (not used for identity)",
        ),
    )


@pytest.mark.parametrize(("variant", "score"), [("branded", 65), ("whitebox", -5)])
def test_replaced_network_card_keeps_the_same_device(variant, score):
    """One changed MAC, the rest the same: still the credential's device."""
    case = load("identity-replaced-network-card")[variant]
    device = known(case["known"])

    decision = identify(
        Signals.from_wire(case["incoming"]),
        school="C01",
        credential=device,
        candidates=[device],
    )

    assert (decision.outcome, decision.device_id, decision.score) == (
        "same",
        device.device_id,
        score,
    )
    assert decision.events() == []


def test_renamed_pc_stays_the_same_device():
    """A new hostname with the same hardware is the same device."""
    case = load("identity-renamed-pc")
    device = known(case["known"])

    decision = identify(
        Signals.from_wire(case["incoming"]),
        school="C01",
        credential=device,
        candidates=[device],
    )

    assert decision == Decision(
        outcome="same",
        device_id="d_pc07",
        school="C01",
        score=85,
        reasons=(
            "macs matches (1C:6F:65:AA:00:07)",
            "disk_serial matches (WD-WCC2EAB12345)",
            "machine_id matches (1d2c3b4a59687f0e1d2c3b4a59687f0e)",
            "hostname PC-07 -> PHONGMAY-07 (not used for identity)",
        ),
        credential_device_id="d_pc07",
    )


def test_pc_enrolled_at_another_school_is_recognised_and_moved():
    """Same hardware enrolled with another school's token gives a device_moved event."""
    case = load("identity-moved-school")
    devices = [known(entry) for entry in case["known"]]

    decision = identify(
        Signals.from_wire(case["incoming"]), school="C03", candidates=devices
    )

    assert (decision.outcome, decision.device_id, decision.moved_from) == (
        "other_known",
        "d_pc01",
        "C01",
    )
    assert decision.events() == [
        AssetEvent(
            kind="device_moved",
            component="device",
            key="d_pc01",
            before={"school": "C01"},
            after={"school": "C03"},
            summary_en="Device moved from school C01 to C03",
            summary_vi="Thiết bị chuyển từ trường C01 sang trường C03",
        )
    ]


def test_identical_hostnames_alone_never_match():
    """Two PCs known only by the same hostname are not merged."""
    first = KnownDevice("d_a", "C01", Signals(hostname="PHONGMAY-PC"))

    decision = identify(
        Signals(hostname="PHONGMAY-PC"), school="C01", candidates=[first]
    )

    assert (decision.outcome, decision.device_id) == ("new_machine", None)


def test_batch_duplicated_serial_is_ignored_between_known_devices():
    """A serial shared by several known PCs does not attach a third PC to them."""
    batch = {
        "system_serial": "0123ABCD",
        "smbios_uuid": "A1B2C3D4-1111-2222-3333-444455556666",
    }
    first = KnownDevice("d_a", "C01", Signals.from_wire({**batch, "disk_serial": "S1"}))
    second = KnownDevice(
        "d_b", "C01", Signals.from_wire({**batch, "disk_serial": "S2"})
    )

    decision = identify(
        Signals.from_wire(batch), school="C01", candidates=[first, second]
    )

    assert (decision.outcome, decision.device_id) == ("new_machine", None)


def test_credential_device_without_stored_signals_is_trusted():
    """A device enrolled without signals keeps its reports (missing is neutral)."""
    device = KnownDevice("d_a", "C01", Signals())

    decision = identify(
        Signals.from_wire({"disk_serial": "S1", "macs": ["B8:CA:3A:11:22:33"]}),
        school="C01",
        credential=device,
        candidates=[device],
    )

    assert decision == Decision(
        outcome="same",
        device_id="d_a",
        school="C01",
        score=0,
        reasons=(),
        credential_device_id="d_a",
    )


# Few values per signal, so that devices share some: batch serials, cloned images.
_SIGNAL_VALUES = {
    "machine_id": st.sampled_from([None, "m1", "m2", "m3"]),
    "smbios_uuid": st.sampled_from(
        [None, "03000200-0400-0500-0006-000700080009", "00020003-0004-0005-0006-0007"]
    ),
    "system_serial": st.sampled_from([None, "SN1", "SN2", "SN3"]),
    "board_serial": st.sampled_from([None, "BS1", "BS2"]),
    "disk_serial": st.sampled_from([None, "D1", "D2", "D3", "D4"]),
    "macs": st.lists(
        st.sampled_from(
            ["AA:00:00:00:00:01", "AA:00:00:00:00:02", "AA:00:00:00:00:03"]
        ),
        max_size=2,
    ),
}
_signals = st.fixed_dictionaries(_SIGNAL_VALUES).map(Signals.from_wire)


def _compared_with_every_device(
    incoming: Signals, school: str, candidates: list[KnownDevice]
) -> str | None:
    """The recognised device by comparing with every candidate, as identify did
    before it left out those holding none of the incoming values."""
    shared = shared_values(candidates)
    scored = [(compare(incoming, c, shared), c) for c in candidates]
    kept = [(s, c) for s, c in scored if s.score > 0 and s.corroborated]
    if not kept:
        return None
    return max(kept, key=lambda pair: (pair[0].score, pair[1].school == school))[
        1
    ].device_id


@given(
    incoming=_signals,
    known_signals=st.lists(_signals, max_size=8),
    schools=st.lists(st.sampled_from(["C01", "C02"]), min_size=8, max_size=8),
)
def test_enrollment_recognises_what_a_comparison_with_every_device_does(
    incoming, known_signals, schools
):
    """Leaving out devices that hold none of the incoming values changes no
    decision: such a device matches on no signal and cannot be corroborated."""
    candidates = [
        KnownDevice(f"d_{n}", schools[n], signals)
        for n, signals in enumerate(known_signals)
    ]

    decision = identify(incoming, school="C01", candidates=candidates)

    assert decision.device_id == _compared_with_every_device(
        incoming, "C01", candidates
    )
