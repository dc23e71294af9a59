"""Device identity through the real API: enrollment and reports decide which device
speaks (cases inv-placeholder-serials, inv-shared-bluetooth-mac, inv-cloned-image,
inv-reboot-to-restore, and the simulator's clone and move scenarios)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from schoolmon.agent.inventory import envelope, inventory_document
from schoolmon.agent.inventory.normalize import identity_signals
from schoolmon.agent.outbox import Item
from schoolmon.agent.report import build_report
from schoolmon.server.auth import hash_secret
from schoolmon.server.clock import to_wire
from schoolmon.server.identity import KnownDevice, Signals
from schoolmon.server.ingest import known_devices

from tests.support.collector import probe_json

FIXTURES = Path(__file__).parents[1] / "fixtures"
LAB_PC = json.loads((FIXTURES / "ingest" / "whitebox-lab-pc.json").read_text())


# Helpers shared with test_ingest_assets.py and test_ingest_scheduling.py -------------


def lab_pc(**sections: Any) -> dict[str, Any]:
    """The fixture lab PC's section data with some sections replaced."""
    return copy.deepcopy(LAB_PC["sections"]) | copy.deepcopy(sections)


def cloned_pc(number: int) -> dict[str, Any]:
    """Copy ``number`` of the lab PC's disk image: its own MAC and disk serial."""
    sections = lab_pc()
    sections["network"]["adapters"][0]["mac"] = f"1C:6F:65:AA:01:{number:02X}"
    sections["disks"]["physical"][0]["serial"] = f"WD-WCC2EAB1{number:04d}"
    return sections


class SimAgent:
    """One PC's agent: builds enrollments and reports as ``schoolmon.agent`` does."""

    def __init__(
        self, http: httpx.Client, sections: dict[str, Any], boot_id: str = "boot-1"
    ) -> None:
        self.http, self.sections, self.boot_id = http, sections, boot_id
        self.run, self.seq, self.credential = f"run-{boot_id}", 0, None
        self.device_id: str | None = None

    def envelopes(self, at: datetime) -> dict[str, Any]:
        return {
            name: envelope("ok", to_wire(at), 0.05, None, [], data)
            for name, data in self.sections.items()
        }

    def enroll(self, token: str) -> httpx.Response:
        identity = identity_signals(self.sections)
        body = {"token": token, "hostname": identity["hostname"]}
        body |= {"identity": identity, "agent_version": "0.1.0"}
        answer = self.http.post("/api/v1/enroll", json=body)
        if answer.status_code == 201:
            self.credential = answer.json()["credential"]
            self.device_id = answer.json()["device_id"]
        return answer

    def probes(self, at: datetime, count: int) -> list[dict[str, Any]]:
        samples = []
        for offset in range(count):
            self.seq += 1
            instant = at - timedelta(seconds=count - offset)
            samples.append(
                probe_json(
                    self.seq,
                    instant,
                    run=self.run,
                    cycle=1,
                    monotonic=1000.0 + self.seq,
                    boot_id=self.boot_id,
                )
            )
        return samples

    def report(
        self,
        at: datetime,
        *,
        probes: int = 5,
        inventory: dict[str, Any] | None = None,
        speedtests: tuple[dict[str, Any], ...] = (),
        full_inventory: bool = True,
    ) -> dict[str, Any]:
        """A report sent at ``at`` carrying new probes, and the inventory if asked."""
        items = [Item(0, "probe", p["seq"], p, 0, 0) for p in self.probes(at, probes)]
        items += [Item(0, "speedtest", t["seq"], t, 0, 0) for t in speedtests]
        if inventory is None and full_inventory:
            inventory = inventory_document(self.envelopes(at))
        if inventory is not None:
            items.append(Item(0, "inventory", None, inventory, 0, 0))
        return build_report(
            items,
            identity=identity_signals(self.sections),
            health={"state_restored": False},
            boot_id=self.boot_id,
            wall=lambda: at.timestamp(),
            monotonic=lambda: 1001.0 + self.seq,
        )

    def send(self, document: dict[str, Any], **headers: str) -> httpx.Response:
        """POST a report with this agent's credential; follow replace_credential."""
        auth = {"Authorization": f"Bearer {self.credential}"}
        answer = self.http.post("/api/v1/reports", json=document, headers=auth)
        for instruction in answer.json().get("instructions", []):
            if instruction["kind"] == "replace_credential":
                self.credential = instruction["credential"]
                self.device_id = instruction["device_id"]
        return answer


def school_token(storage: Any, school: str, role: str, now: datetime) -> str:
    """A fresh enrollment token of ``school`` for ``role``."""
    token = f"token-{school}-{role}"
    if storage.enrollment_token(hash_secret(token)) is None:
        storage.add_enrollment_token(hash_secret(token), school, role, now)
    return token


def events_by_kind(storage: Any) -> Counter[str]:
    rows = storage.db.execute("SELECT kind FROM asset_events").fetchall()
    return Counter(row[0] for row in rows)


def device_count(storage: Any) -> int:
    return storage.db.execute("SELECT COUNT(*) FROM devices").fetchone()[0]


def probes_per_device(storage: Any) -> dict[str, int]:
    rows = storage.db.execute(
        "SELECT device, COUNT(*) FROM probe_samples GROUP BY device"
    ).fetchall()
    return dict(rows)


def no_speedtests(config_mapping: dict[str, Any] | None = None) -> Any:
    """The default configuration without speed-test slots (no run_speedtest)."""
    from schoolmon.server.config import config_from_mapping

    return config_from_mapping(
        {"speedtest": {"slots_per_day": 0}} | (config_mapping or {})
    )


@pytest.fixture
def config() -> Any:
    """No speed-test slots: these tests look at identity answers only."""
    return no_speedtests()


# Placeholders and shared adapters ---------------------------------------------------


def test_placeholder_serials_never_merge_two_pcs(http, registered, clock):
    """inv-placeholder-serials: two PCs that share only OEM filler are two devices,
    and the filler is stored as null."""
    token = school_token(registered, "C01", "lab", clock())
    placeholders = json.loads(
        (FIXTURES / "assets" / "inv-placeholder-serials.json").read_text()
    )["placeholders"]
    agents = []
    for serial, uuid in zip(
        placeholders["system_serial"][:2], placeholders["smbios_uuid"][:2], strict=True
    ):
        system = LAB_PC["sections"]["system"] | {
            "hostname": "PC-LAB",
            "serial": serial,
            "uuid": uuid,
            "machine_id": None,
        }
        sections = {"system": system, "network": {"adapters": []}, "disks": {}}
        agents.append(SimAgent(http, sections))

    answers = [agent.enroll(token).status_code for agent in agents]
    reports = [agent.send(agent.report(clock())).json() for agent in agents]

    devices = registered.devices("C01")
    assert (answers, [r["device_id"] for r in reports], len(devices)) == (
        [201, 201],
        [agents[0].device_id, agents[1].device_id],
        2,
    )
    assert [d["identity"] for d in devices] == [
        {
            "machine_id": None,
            "smbios_uuid": None,
            "system_serial": None,
            "board_serial": None,
            "disk_serial": None,
            "macs": [],
            "hostname": "PC-LAB",
        },
    ] * 2


def test_shared_bluetooth_mac_gives_two_devices(http, registered, clock):
    """inv-shared-bluetooth-mac: the same Bluetooth dongle MAC on two PCs is no
    identity; each PC is its own device with its Ethernet MAC."""
    case = json.loads(
        (FIXTURES / "assets" / "inv-shared-bluetooth-mac.json").read_text()
    )
    token = school_token(registered, "C01", "lab", clock())
    agents = [SimAgent(http, lab_pc(**case[pc])) for pc in ("pc_a", "pc_b")]
    for agent in agents:
        agent.sections["disks"]["physical"][0]["serial"] = None
        agent.enroll(token)
        agent.send(agent.report(clock()))

    assert sorted(
        (d["hostname"], d["identity"]["macs"]) for d in registered.devices("C01")
    ) == [("LAB-PC07", ["B8:AC:6F:11:22:01"]), ("LAB-PC12", ["B8:AC:6F:11:22:02"])]
    assert events_by_kind(registered) == Counter()


# Cloned images ---------------------------------------------------------------------


def test_cloned_image_gives_24_devices_one_conflict_and_loses_no_report(
    http, registered, clock
):
    """inv-cloned-image: 24 copies report on the master's credential; each becomes
    its own device with its own credential, one identity_conflict is raised, and every
    probe of every copy is stored."""
    master = SimAgent(http, cloned_pc(0))
    master.enroll(school_token(registered, "C02", "lab", clock()))
    master.send(master.report(clock()))
    copies = [SimAgent(http, cloned_pc(n), boot_id=f"boot-{n}") for n in range(1, 25)]
    for copy_ in copies:
        copy_.credential = master.credential

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda a: a.send(a.report(clock())), copies))
    again = [a.send(a.report(clock() + timedelta(minutes=5))) for a in copies]

    instructions = [a.json()["instructions"] for a in answers]
    assert [
        (a.status_code, len(i), i[0]["kind"])
        for a, i in zip(answers, instructions, strict=True)
    ] == [(200, 1, "replace_credential")] * 24
    new_ids = [i[0]["device_id"] for i in instructions]
    assert (
        len(set(new_ids)),
        master.device_id in new_ids,
        [a.json()["device_id"] for a in answers] == new_ids,
        [
            (a.status_code, a.json()["device_id"], a.json()["instructions"])
            for a in again
        ],
        device_count(registered),
        events_by_kind(registered),
        probes_per_device(registered),
    ) == (
        24,
        False,
        True,
        [(200, device_id, []) for device_id in new_ids],
        25,
        Counter({"identity_conflict": 1}),
        {master.device_id: 5} | dict.fromkeys(new_ids, 10),
    )
    event = registered.asset_events(master.device_id)[0]
    assert (event["school"], event["detail"]["kind"], event["detail"]["key"]) == (
        "C02",
        "identity_conflict",
        master.device_id,
    )


def test_reboot_to_restore_stays_one_device(http, registered, clock):
    """inv-reboot-to-restore: the restored state brings back an old credential (the
    master's, or the PC's own replaced one); the PC stays one device and re-enrolling
    gives the same device a new credential."""
    token = school_token(registered, "C02", "lab", clock())
    master = SimAgent(http, cloned_pc(0))
    master.enroll(token)
    pc = SimAgent(http, cloned_pc(5), boot_id="monday")
    pc.credential = master.credential
    pc.send(pc.report(clock()))
    own_id, own_credential = pc.device_id, pc.credential

    pc.boot_id, pc.run, pc.credential = "tuesday", "run-tuesday", master.credential
    restored = pc.send(pc.report(clock() + timedelta(days=1)))
    stale = pc.http.post(
        "/api/v1/reports",
        json=pc.report(clock() + timedelta(days=1)),
        headers={"Authorization": f"Bearer {own_credential}"},
    )
    enrolled = pc.enroll(token)

    assert (
        restored.json()["device_id"],
        [i["device_id"] for i in restored.json()["instructions"]],
        stale.status_code,
        (enrolled.status_code, enrolled.json()["device_id"]),
        pc.send(pc.report(clock() + timedelta(days=1, minutes=5))).status_code,
        device_count(registered),
        events_by_kind(registered),
    ) == (
        own_id,
        [own_id],
        401,
        (201, own_id),
        200,
        2,
        Counter({"identity_conflict": 1}),
    )


def test_reinstalled_pc_enrolling_again_keeps_its_device(http, registered, clock):
    """A reinstalled OS (new machine id, same hardware) enrolls as the same device;
    another PC with the same hostname does not."""
    token = school_token(registered, "C02", "lab", clock())
    first = SimAgent(http, cloned_pc(1))
    first.enroll(token)
    reinstalled = SimAgent(http, cloned_pc(1))
    reinstalled.sections["system"]["machine_id"] = "0b6e2c1f7a1d4d2e9a531f2e3d4c5b6a"
    namesake = SimAgent(http, cloned_pc(2))

    answers = [reinstalled.enroll(token).json(), namesake.enroll(token).json()]

    assert (
        [a["device_id"] == first.device_id for a in answers],
        registered.device(first.device_id)["identity"]["machine_id"],
        device_count(registered),
    ) == ([True, False], "0b6e2c1f7a1d4d2e9a531f2e3d4c5b6a", 2)


def test_pc_moved_to_another_school_keeps_its_device_and_history(
    http, registered, clock
):
    """A PC enrolled with another school's token is moved there: same id, one
    device_moved event under the new school."""
    pc = SimAgent(http, cloned_pc(3))
    pc.enroll(school_token(registered, "C01", "lab", clock()))
    old_id = pc.device_id

    answer = pc.enroll(school_token(registered, "C02", "office", clock()))
    events = registered.asset_events(old_id)

    assert (
        answer.json()["device_id"],
        answer.json()["school"],
        answer.json()["role"],
        [
            (e["school"], e["kind"], e["detail"]["before"], e["detail"]["after"])
            for e in events
        ],
    ) == (
        old_id,
        "C02",
        "office",
        [("C02", "device_moved", {"school": "C01"}, {"school": "C02"})],
    )


# The simulated district ------------------------------------------------------------


def test_simulator_scenarios_produce_their_asset_events(
    collector_url, registered, clock
):
    """Simulator scenarios clone, move, ram-upgrade and ram-removed against a real
    collector give exactly their events and lose no report."""
    from schoolmon.server import simulate as sim

    tokens = {}
    for code, role in [
        ("C01", "lab"),
        ("C01", "office"),
        ("C02", "lab"),
        ("C02", "office"),
        ("C03", "office"),
        ("C03", "teacher"),
    ]:
        tokens[f"{code}:{role}"] = school_token(registered, code, role, clock())
    schools = [
        sim.School("C01", "primary", 420, 50.0, None, True),
        sim.School("C02", "lower_secondary", 600, 80.0, 20, True),
        sim.School("C03", "preschool", 150, 30.0, None, None),
    ]
    scenarios = frozenset({"clone", "move", "ram-upgrade", "ram-removed"})
    options = sim.SimOptions(
        pcs_per_school=8,
        cycles=2,
        offline_share=0,
        slow_share=0,
        scenarios=scenarios,
        clone_count=4,
        workers=4,
    )

    summary = sim.run(
        collector_url,
        tokens,
        options,
        schools=schools,
        clock=clock,
        sleep=lambda seconds: None,
    )

    assert (
        summary.reports_failed,
        sorted(summary.scenario_devices),
        events_by_kind(registered),
    ) == (
        0,
        sorted(scenarios),
        Counter(
            {
                "identity_conflict": 1,
                "device_moved": 1,
                "component_changed": 1,
                "component_removed": 1,
            }
        ),
    )


def test_known_devices_follow_a_stored_identity_change(registered, clock):
    """Signals are parsed once per stored text: a device whose identity changes
    (a replaced disk) is seen with its new signals, and one without any has none."""
    old = {"disk_serial": "WD-OLD-1", "macs": ["B8:AC:6F:11:22:01"]}
    new = {"disk_serial": "WD-NEW-2", "macs": ["B8:AC:6F:11:22:01"]}
    for device_id, identity in (("d_a", old), ("d_b", None)):
        registered.add_device(
            {"id": device_id, "school": "C02", "role": "lab", "identity": identity}
            | {"credential_hash": f"hash-{device_id}", "enrolled_at": clock()}
        )
    before = known_devices(registered)
    registered.update_device("d_a", identity=new)

    assert (before, known_devices(registered)) == (
        [
            KnownDevice("d_a", "C02", Signals.from_wire(old)),
            KnownDevice("d_b", "C02", Signals()),
        ],
        [
            KnownDevice("d_a", "C02", Signals.from_wire(new)),
            KnownDevice("d_b", "C02", Signals()),
        ],
    )
