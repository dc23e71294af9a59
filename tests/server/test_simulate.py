"""The simulated district: generation from a seed, wire shape, and HTTP delivery."""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from schoolmon.server import schemas
from schoolmon.server import simulate as sim
from schoolmon.server.auth import hash_secret
from schoolmon.server.simulate import School, SimOptions, SimulationError

from tests.conftest import SMALL_REGISTRY
from tests.support.collector import free_port

FIXTURES = Path(__file__).parents[1] / "fixtures" / "simulate"
# Tuesday 1 December 2026, 09:00 in Asia/Ho_Chi_Minh.
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
ALL_SCENARIOS = frozenset(sim.SCENARIOS)


def _schools(count: int) -> list[School]:
    return sim.synthetic_schools([f"C{n:02d}" for n in range(1, count + 1)], seed=7)


def _documents(reports: list[sim.PreparedReport]) -> list[dict[str, Any]]:
    return [json.loads(gzip.decompress(report.body)) for report in reports]


def _run_bodies(options: SimOptions, count: int = 8) -> tuple[sim.District, list]:
    district = sim.build_district(_schools(count), options, NOW)
    return district, list(sim.iter_report_bodies(district, options, NOW))


def _memory_sizes(document: dict[str, Any]) -> list[tuple[str, int]]:
    modules = document["inventory"]["sections"]["memory"]["data"]["modules"]
    return [(m["slot"], m["size_bytes"]) for m in modules]


# Registry --------------------------------------------------------------------------


def test_registry_saved_by_excel_with_bom_and_semicolons_is_read_whole() -> None:
    """A BOM, semicolons, CRLF and a trailing empty line still give every school."""
    schools = sim.load_registry(FIXTURES / "registry-excel-semicolon.csv")

    assert schools == [
        School("S01", "primary", 420, 50.0, 18, True, "Trường Tiểu học Cẩm Phúc"),
        School("S02", "lower_secondary", 610, 80.0, None, True, "Trường THCS Cẩm Phúc"),
        School("S03", "preschool", 180, 30.0, None, None, "Trường Mầm non Cẩm Điền"),
        School("S04", "primary", 250, None, None, False, "Trường Tiểu học Cẩm Vũ"),
    ]


def test_registry_row_with_unknown_level_is_refused_with_its_line(
    tmp_path: Path,
) -> None:
    """The collector's registry reader refuses an unknown level, naming the line,
    the value and the accepted levels."""
    path = tmp_path / "bad.csv"
    path.write_text("code,name,level,commune\nC03,Mầm non,kindergarden,X\n")

    with pytest.raises(SimulationError) as error:
        sim.load_registry(path)

    assert str(error.value) == (
        f"{path} line 2, column level: 'kindergarden' is not a school level; "
        "accepted: preschool, primary, lower_secondary, upper_secondary, other "
        "(or mầm non, tiểu học, THCS, THPT)"
    )


# Generation ------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_inventories_and_report_bodies() -> None:
    """Two districts from one seed and clock produce the same bytes, another differs."""
    options = SimOptions(days_history=1, cycles=2, scenarios=ALL_SCENARIOS)
    first, first_bodies = _run_bodies(options)
    second, second_bodies = _run_bodies(options)
    other = sim.build_district(_schools(8), SimOptions(seed=8), NOW)

    def inventories(district: sim.District) -> list[bytes]:
        return [
            sim.encode_body(sim.inventory_document(pc.sections, NOW))
            for pc in district.pcs()
        ]

    assert inventories(first) == inventories(second)
    assert [r.body for r in first_bodies] == [r.body for r in second_bodies]
    assert inventories(first) != inventories(other)


def test_seed_7_district_has_the_stated_mix_of_links_and_hardware() -> None:
    """60 schools: 3 offline, 6 on 2-8 Mbit/s links, the rest 20-100; a fifth of lab
    PCs below the minimum specification."""
    district = sim.build_district(_schools(60), SimOptions(), NOW)
    labs = [pc for pc in district.pcs() if pc.role == "lab"]

    def below_spec(pc: sim.SimPC) -> bool:
        cpu, memory = pc.sections["cpu"], pc.sections["memory"]
        disk = pc.sections["disks"]["physical"][0]
        return (
            cpu["logical_cores"] < 2
            or memory["installed_bytes"] < 4 * sim.GIB
            or disk["size_bytes"] < 64 * 10**9
        )

    links = Counter(
        "offline" if s.offline else "slow" if 2 <= s.link_mbps <= 8 else "normal"
        for s in district.schools
        if s.offline or s.slow or 20 <= s.link_mbps <= 100
    )
    share = sum(map(below_spec, labs)) / len(labs)
    families = Counter(pc.sections["os"]["name"] for pc in district.pcs())
    serials = Counter(pc.sections["system"]["serial"] is None for pc in district.pcs())

    assert links == Counter(offline=3, slow=6, normal=51)
    assert 0.12 <= share <= 0.35, share
    assert set(families) == {
        "Microsoft Windows 7 Professional",
        "Microsoft Windows 10 Pro",
        "Microsoft Windows 11 Pro",
        "Ubuntu",
    }
    assert 0.25 <= serials[True] / sum(serials.values()) <= 0.55
    assert {pc.sections["cpu"]["logical_cores"] for pc in district.pcs()} == {
        1, 2, 4, 6, 8,
    }  # fmt: skip


def test_every_report_and_enrollment_validates_against_the_wire_models() -> None:
    """History batches, live cycles and every scenario fit schemas.Report."""
    options = SimOptions(days_history=2, cycles=2, scenarios=ALL_SCENARIOS)
    district, reports = _run_bodies(options)

    for document in _documents(reports):
        schemas.Report.model_validate(document)
    for pc in district.pcs():
        schemas.EnrollRequest.model_validate(sim.enroll_body(pc, "token", "0.1.0"))
    assert len(reports) > len(list(sim.reporting_pcs(district))) * 2


def test_identity_signals_are_distinct_per_pc_and_skip_shared_dongle_macs() -> None:
    """No two PCs share an identity MAC or disk serial; the shared Bluetooth MAC
    present on some PCs never counts."""
    district = sim.build_district(_schools(30), SimOptions(), NOW)
    identities = [sim.compute_identity(pc.sections) for pc in district.pcs()]
    macs = [mac for identity in identities for mac in identity["macs"]]
    adapters = [
        a["mac"] for pc in district.pcs() for a in pc.sections["network"]["adapters"]
    ]

    assert len(macs) == len(set(macs))
    disks = [i["disk_serial"] for i in identities]
    assert len(disks) == len(set(disks))
    assert "00:1A:7D:DA:71:0A" in adapters
    assert "00:1A:7D:DA:71:0A" not in macs


def test_history_samples_lie_in_past_session_hours_on_earlier_boots() -> None:
    """Backfilled samples carry past wall times inside Mon-Sat session hours and a
    boot id other than the report's, so the collector places them by wall time."""
    options = SimOptions(days_history=3, skewed_clock_share=0.0, outage_share=1.0)
    district = sim.build_district(_schools(6), options, NOW)
    reports = list(sim.prepare_history(district, options, NOW))
    windows = list(sim.session_windows(NOW - timedelta(days=3), NOW))
    outages = {s.code: s.outages for s in district.schools}

    failed_in_outage = 0
    for report, document in zip(reports, _documents(reports), strict=True):
        school = district.pc(report.device_key).school
        for sample in document["probes"]:
            when = datetime.fromisoformat(sample["wall_time"])
            true_time = when - timedelta(
                seconds=district.pc(report.device_key).skew_seconds
            )
            assert sample["boot_id"] != document["boot_id"]
            assert any(start <= true_time < end for start, end in windows), sample
            in_outage = any(a <= true_time < b for a, b in outages[school])
            assert not (in_outage and sample["ok"]), sample
            failed_in_outage += in_outage
    assert failed_in_outage > 0


# Scenarios -------------------------------------------------------------------------


def test_clone_scenario_shares_credential_hostname_and_machine_id() -> None:
    """Clones speak with the master's credential and name but their own hardware."""
    options = SimOptions(scenarios=frozenset({"clone"}), clone_count=4)
    district, reports = _run_bodies(options)
    master, *clones = [district.pc(key) for key in district.scenario_devices["clone"]]
    by_device = {r.device_key: r for r in reports}

    assert [by_device[c.key].credential_keys for c in clones] == [
        (c.key, master.key) for c in clones
    ]
    assert {c.hostname for c in clones} == {master.hostname}
    system = "system"
    assert {c.sections[system]["machine_id"] for c in clones} == {
        master.sections[system]["machine_id"]
    }
    identities = [sim.compute_identity(pc.sections)["macs"] for pc in [master, *clones]]
    assert len({tuple(m) for m in identities}) == 4


def test_ram_upgrade_and_removal_show_between_first_and_last_inventory() -> None:
    """The upgraded PC goes 2x2 GiB -> 2x4 GiB; the other loses DIMM1, DIMM0 kept."""
    options = SimOptions(cycles=3, scenarios=frozenset({"ram-upgrade", "ram-removed"}))
    district, reports = _run_bodies(options)
    inventories: dict[str, list[dict[str, Any]]] = {}
    for report, document in zip(reports, _documents(reports), strict=True):
        if document["inventory"] is not None:
            inventories.setdefault(report.device_key, []).append(document)
    (upgraded,) = district.scenario_devices["ram-upgrade"]
    (removed,) = district.scenario_devices["ram-removed"]
    before, after = inventories[removed]
    kept = after["inventory"]["sections"]["memory"]["data"]["modules"][0]

    assert [_memory_sizes(d) for d in inventories[upgraded]] == [
        [("DIMM0", 2 * sim.GIB), ("DIMM1", 2 * sim.GIB)],
        [("DIMM0", 4 * sim.GIB), ("DIMM1", 4 * sim.GIB)],
    ]
    assert [_memory_sizes(before), _memory_sizes(after)] == [
        [("DIMM0", 4 * sim.GIB), ("DIMM1", 4 * sim.GIB)],
        [("DIMM0", 4 * sim.GIB)],
    ]
    assert kept == before["inventory"]["sections"]["memory"]["data"]["modules"][0]


def test_moved_pc_reports_its_last_cycle_through_the_new_school() -> None:
    """The moved PC uses its own school's credential, then the new school's."""
    options = SimOptions(cycles=3, scenarios=frozenset({"move"}))
    district, reports = _run_bodies(options)
    (key,) = district.scenario_devices["move"]
    pc = district.pc(key)

    assert pc.move_to not in (None, pc.school)
    assert [r.credential_keys for r in reports if r.device_key == key] == [
        (key,),
        (key,),
        (f"{key}@{pc.move_to}",),
    ]


def test_huge_software_list_has_3000_programs_and_travels_compressed() -> None:
    """One PC lists 3,000 programs; gzip keeps its report far under the raw size."""
    options = SimOptions(scenarios=frozenset({"huge-software"}))
    district, reports = _run_bodies(options)
    (key,) = district.scenario_devices["huge-software"]
    (report,) = [r for r in reports if r.device_key == key]
    raw = gzip.decompress(report.body)
    software = json.loads(raw)["inventory"]["sections"]["software"]["data"]

    assert len(software["programs"]) == 3000
    assert len(raw) > 700_000
    assert len(report.body) < len(raw) / 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"offline_share": 1.5}, "offline_share must be between 0 and 1, got 1.5"),
        ({"workers": 0}, "workers must be at least 1, got 0"),
        (
            {"scenarios": frozenset({"teleport"})},
            "unknown scenario(s) teleport; known: clone, move, ram-upgrade, "
            "ram-removed, huge-software",
        ),
        (
            {"scenarios": frozenset({"ram-upgrade"})},
            "scenario(s) ram-upgrade compare two inventories and need --cycles 2 "
            "or more, got 1",
        ),
    ],
)
def test_options_refuse_bad_values_naming_them(
    changes: dict[str, Any], message: str
) -> None:
    """Bad options raise one message naming the value and what is accepted."""
    with pytest.raises(SimulationError) as error:
        SimOptions(**changes)

    assert str(error.value) == message


# Delivery --------------------------------------------------------------------------


class Recorder(ThreadingHTTPServer):
    """A stand-in collector that records every request and answers like design.md.

    It hands out one credential per enrollment, answers ``replace_credential`` when
    a credential speaks for a second machine, and 503 for the credential of
    ``failing_hostname``.
    """

    def __init__(self, failing_hostname: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.credentials: dict[str, tuple[str, ...]] = {}
        self.failing_hostname = failing_hostname

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Keep the test output quiet."""

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's handler name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.requests.append((self.path, dict(self.headers), body))
            status, answer = self._answer(body)
        raw = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _answer(self, body: bytes) -> tuple[int, dict[str, Any]]:
        if self.path == "/api/v1/enroll":
            document = json.loads(body)
            credential = f"cred-{len(self.server.credentials) + 1}"
            macs = (document["hostname"], *document["identity"]["macs"])
            self.server.credentials[credential] = macs
            return 201, {"device_id": f"d_{credential}", "credential": credential}
        credential = self.headers["Authorization"].removeprefix("Bearer ")
        document = json.loads(gzip.decompress(body))
        if self.server.credentials[credential][0] == self.server.failing_hostname:
            return 503, {"error": "unavailable", "message": "try later"}
        counts = {"probes": len(document["probes"]), "speedtests": 0, "inventory": 0}
        answer = {
            "device_id": "d",
            "accepted": counts,
            "duplicates": counts | {"probes": 0},
        }
        macs = (document["identity"]["hostname"], *document["identity"]["macs"])
        if self.server.credentials[credential] != macs:
            new = f"cred-{len(self.server.credentials) + 1}"
            self.server.credentials[new] = macs
            answer["instructions"] = [{"kind": "replace_credential", "credential": new}]
        return 200, answer


@contextlib.contextmanager
def recorder(failing_hostname: str | None = None) -> Iterator[Recorder]:
    server = Recorder(failing_hostname)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class StepClock:
    """A clock that only moves when the simulation sleeps."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def test_delivery_sends_gzip_json_with_bearer_credentials_and_follows_answers() -> None:
    """Every report is gzip JSON under its device's credential; a clone adopts the
    credential the collector hands it; a 503 is counted and the run goes on."""
    schools = [School("C01", "primary", 400, 50.0, 4, True)]
    options = SimOptions(
        cycles=3, interval_seconds=300, offline_share=0, slow_share=0,
        pcs_per_school=4, scenarios=frozenset({"clone"}), clone_count=2,
    )  # fmt: skip
    clock = StepClock(NOW)
    with recorder(failing_hostname="VANPHONG-PC01") as server:
        summary = sim.run(
            server.url, {"C01": "tok"}, options,
            schools=schools, clock=clock, sleep=clock.sleep,
        )  # fmt: skip
    district = sim.build_district(schools, options, NOW)
    pcs = [pc for _, pc in sim.reporting_pcs(district)]
    offices = sum(pc.role == "office" for pc in pcs)
    reports = [(h, b) for path, h, b in server.requests if path == "/api/v1/reports"]

    def credentials_of(key: str) -> list[str]:
        macs = sim.compute_identity(district.pc(key).sections)["macs"]
        return [
            h["Authorization"]
            for h, b in reports
            if json.loads(gzip.decompress(b))["identity"]["macs"] == macs
        ]

    master, clone = credentials_of("C01-lab-01"), credentials_of("C01-lab-02")

    assert clock.sleeps == [300, 300]
    assert summary.devices_enrolled == len(pcs) - 1
    assert summary.statuses == Counter(
        {"200": 3 * (len(pcs) - offices), "503": 3 * offices}
    )
    assert summary.reports_sent == 3 * len(pcs)
    assert {(h["Content-Encoding"], h["Content-Type"]) for h, _ in reports} == {
        ("gzip", "application/json")
    }
    assert all(h["Authorization"].startswith("Bearer cred-") for h, _ in reports)
    assert len(set(master)) == 1
    assert clone[0] == master[0]
    assert len(set(clone[1:])) == 1
    assert clone[1] != master[0]


def test_unreachable_collector_is_counted_not_fatal() -> None:
    """With nothing listening, enrollments count as connection errors and reports
    as not enrolled; the run ends by itself."""
    schools = [School("C01", "preschool", 100, 30.0, None, None)]
    options = SimOptions(pcs_per_school=2, cycles=2, offline_share=0, timeout_seconds=2)

    url = f"http://127.0.0.1:{free_port()}"
    clock = StepClock(NOW)
    summary = sim.run(
        url, {"C01": "t"}, options, schools=schools, clock=clock, sleep=clock.sleep
    )

    assert [(p.name, p.statuses) for p in summary.phases] == [
        ("enroll", Counter({"connection error": 2})),
        ("cycle 1/2", Counter({"not enrolled": 2})),
        ("cycle 2/2", Counter({"not enrolled": 2})),
    ]
    assert (summary.devices_enrolled, summary.reports_accepted) == (0, 0)


def test_run_against_the_real_collector_stores_every_sample(
    collector_url: str, registered: Any, db_path: Path, clock: Any
) -> None:
    """Tokens created in the served database, enrollment and reports through the
    real app: all accepted, none duplicate."""
    schools = [
        School("C01", "primary", 420, 50.0, None, True),
        School("C02", "lower_secondary", 600, 80.0, 20, True),
        School("C03", "preschool", 150, 30.0, None, None),
    ]
    tokens = sim.tokens_from_db(db_path, schools, clock=clock)
    options = SimOptions(
        pcs_per_school=3, days_history=1, cycles=2, offline_share=0, slow_share=0
    )

    summary = sim.run(collector_url, tokens, options, schools=schools, clock=clock,
                      sleep=lambda s: None)  # fmt: skip

    district = sim.build_district(schools, options, clock())
    history = list(sim.prepare_history(district, options, clock()))
    sent_probes = sum(len(d["probes"]) for d in _documents(history))
    reporting = len(list(sim.reporting_pcs(district)))
    assert [(p.name, p.statuses) for p in summary.phases] == [
        ("enroll", Counter({"201": reporting})),
        ("history", Counter({"200": len(history)})),
        ("cycle 1/2", Counter({"200": reporting})),
        ("cycle 2/2", Counter({"200": reporting})),
    ]
    assert summary.samples_accepted["probes"] == sent_probes + 2 * reporting * 5
    assert summary.samples_duplicate["probes"] == 0


# Tokens and command line -----------------------------------------------------------


def test_tokens_from_db_are_created_in_process_in_one_go_per_school_and_role(
    db_path: Path, registered: Any, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """While the collector holds the database, each active school gets one stored
    token per role; inactive and unknown schools get none and a warning."""
    registered.import_schools([SMALL_REGISTRY[0], SMALL_REGISTRY[2]], clock())
    schools = [School(code, level) for code, level in
               [("C01", "primary"), ("C02", "lower_secondary"),
                ("C03", "preschool"), ("C09", "primary")]]  # fmt: skip

    tokens = sim.tokens_from_db(str(db_path), schools, clock=clock)

    stored = {
        key: registered.enrollment_token(hash_secret(t)) for key, t in tokens.items()
    }
    assert stored == {
        key: {"hash": hash_secret(tokens[key]), "school": key[:3], "role": key[4:],
              "created_at": clock(), "revoked_at": None}
        for key in ("C01:lab", "C01:office", "C03:office", "C03:teacher")
    }  # fmt: skip
    assert {len(token) for token in tokens.values()} == {43}
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "no token for school C02: not an active school of the registry",
        "no token for school C09: not an active school of the registry",
    ]


def test_tokens_from_a_missing_database_are_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    """A database file that does not exist is an error, not a new empty database."""
    path = tmp_path / "nowhere.sqlite3"

    with pytest.raises(SimulationError) as error:
        sim.tokens_from_db(path, [School("C01", "primary")])

    assert str(error.value) == (
        f"database {str(path)!r} does not exist; give the collector's SQLite file "
        "(its registry imported with 'schoolmon-server schools import')"
    )
    assert not path.exists()


def test_command_line_prints_one_line_per_phase_and_a_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The CLI prints tokens, enroll, each cycle and the total, and exits 0."""
    with recorder() as server:
        code = sim.main(
            ["--url", server.url, "--token", "C01=t1", "--token", "C02=t2",
             "--pcs-per-school", "2", "--cycles", "2", "--offline-share", "0"]
        )  # fmt: skip
    lines = capsys.readouterr().out.splitlines()

    assert code == 0
    assert [line.split(":")[0] for line in lines] == [
        "tokens", "enroll", "cycle 1/2", "cycle 2/2", "total",
    ]  # fmt: skip
    assert lines[-1].startswith("total: 4 devices enrolled; reports sent 8, accepted 8")


def test_command_line_refuses_a_scenario_it_cannot_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A scenario that needs two cycles with --cycles 1 is one stderr line, exit 2."""
    code = sim.main(["--url", "http://127.0.0.1:9", "--token", "C01=t",
                     "--scenario", "ram-removed"])  # fmt: skip

    assert code == 2
    assert capsys.readouterr().err == (
        "simulate: scenario(s) ram-removed compare two inventories and need "
        "--cycles 2 or more, got 1\n"
    )


def test_command_line_takes_tokens_from_the_database_of_the_registry_schools(
    db_path: Path, registered: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tokens-from-db creates one token per role of each registry school and the
    simulated PCs enroll with them."""
    registry = tmp_path / "registry.csv"
    registry.write_text(
        "code,name,level,commune\nC01,Tiểu học,primary,X\nC03,Mầm non,preschool,Y\n"
    )
    with recorder() as server:
        code = sim.main(
            ["--url", server.url, "--tokens-from-db", str(db_path),
             "--registry", str(registry), "--pcs-per-school", "2",
             "--offline-share", "0"]
        )  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    tokens = [
        json.loads(b)["token"] for p, _, b in server.requests if p == "/api/v1/enroll"
    ]

    assert code == 0
    assert lines[0].startswith("tokens: 4 for 2 schools in ")
    assert lines[1].startswith("enroll: 4 requests, 4 succeeded, 0 failed (201: 4)")
    schools = sorted(
        registered.enrollment_token(hash_secret(t))["school"] for t in tokens
    )
    assert schools == ["C01", "C01", "C03", "C03"]


def test_simulate_command_joins_a_click_group_and_refuses_two_token_sources() -> None:
    """The click command runs under another group; --token with --tokens-from-db is
    a usage error (exit 2) naming both options."""
    group = click.Group("schoolmon-server")
    group.add_command(sim.simulate_command, "simulate")

    result = CliRunner().invoke(
        group,
        ["simulate", "--url", "http://127.0.0.1:9", "--token", "C01=t",
         "--tokens-from-db", "x.sqlite3"],
    )  # fmt: skip

    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: give either --tokens-from-db DB or --token CODE=TOKEN"
    )
