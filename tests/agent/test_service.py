"""Agent cycles against a loopback collector: outages, 413, 422, 401, instructions."""

from __future__ import annotations

import json
import random
import shutil
import sys
import threading

import pytest
import requests
from schoolmon.agent.config import AgentConfig, Backoff, Target
from schoolmon.agent.inventory import envelope
from schoolmon.agent.outbox import Outbox
from schoolmon.agent.probes import Prober
from schoolmon.agent.service import Agent
from schoolmon.agent.state import Credential, State

from tests.agent.conftest import StubCollector

COLLECTOR_TARGET = Target(
    "collector", "{server}/healthz", "collector", 200, "schoolmon"
)
CONFIG = AgentConfig(
    targets=(COLLECTOR_TARGET,),
    jitter_seconds=0,
    backoff=Backoff(base_seconds=30, cap_seconds=3600),
)


def programs(count: int) -> list[dict]:
    return [
        {
            "name": f"Phần mềm giáo dục số {i} – bản đầy đủ cho Tiểu học và THCS "
            "(phiên bản dành cho phòng máy của nhà trường)",
            "version": f"{i}.0.{i % 97}.{i * 7919 % 10007}",
            "publisher": "Công ty Cổ phần Phần mềm và Dịch vụ Giáo dục Việt Nam "
            f"(chi nhánh {i % 63})",
            "install_date": "2024-01-15",
        }
        for i in range(count)
    ]


class Inventory:
    """A fixed inventory whose usable memory and software can be changed."""

    def __init__(self, program_count: int = 3) -> None:
        self.usable = 4_196_343_808
        self.programs = programs(program_count)
        self.calls = 0

    def __call__(self) -> dict:
        self.calls += 1
        data = {
            "system": {"hostname": "PHONG-MAY-01", "serial": "8XK2Q32"},
            "memory": {"installed_bytes": 4294967296, "usable_bytes": self.usable},
            "network": {
                "adapters": [
                    {"mac": "B8:CA:3A:11:22:33", "kind": "ethernet", "bus": "pci"}
                ]
            },
            "software": {"source": "windows-uninstall", "programs": self.programs},
        }
        when = "2026-12-03T01:00:00Z"
        return {
            name: envelope("ok", when, 0.01, None, [], d) for name, d in data.items()
        }


class Harness:
    """An agent wired to a state directory, a stub collector and fake clocks."""

    def __init__(self, tmp_path, collector, clocks, inventory=None, config=CONFIG):
        self.collector = collector
        self.clocks = clocks
        self.state = State(tmp_path / "state")
        self.state.ensure()
        self.inventory = inventory or Inventory()
        self.config = config
        self.session = requests.Session()
        self.session.trust_env = False
        self.credential = Credential(
            "d_0001", "cred-0", "C01", "lab", collector.url, 300, token="school-token"
        )
        self.state.save_credential(self.credential)
        self.outbox = None
        self.agent = self.start()

    def start(self, with_transport: bool = True) -> Agent:
        from schoolmon.agent.transport import Transport

        if self.outbox is not None:
            self.outbox.close()
        self.outbox = Outbox(self.state.outbox_path, now=self.clocks.wall)
        credential = self.state.load_credential()
        transport = Transport(self.session, self.collector.url, credential.credential)
        self.agent = Agent(
            self.config,
            self.state,
            self.outbox,
            transport if with_transport else None,
            Prober(self.session, timeout=2.0),
            self.inventory,
            wall=self.clocks.wall,
            monotonic=self.clocks.monotonic,
            sleep=self.clocks.sleep,
            boot_id="boot-1",
            rng=random.Random(3),
            credential=credential,
        )
        return self.agent

    def cycle(self, advance: float = 300.0):
        outcome = self.agent.cycle()
        self.clocks.advance(advance)
        return outcome

    def close(self):
        self.outbox.close()
        self.session.close()


@pytest.fixture
def harness(tmp_path, collector, clocks):
    made = []

    def make(**kw):
        made.append(Harness(tmp_path, collector, clocks, **kw))
        return made[-1]

    yield make
    for item in made:
        item.close()


def seqs(reports: list[dict]) -> list[int]:
    return [p["seq"] for r in reports for p in r["probes"]]


def test_collector_down_then_back_nothing_lost_nothing_doubled_in_order(
    harness, collector, clocks
):
    """Samples queued during an outage arrive once each, in order, when it ends."""
    h = harness()
    first = h.cycle()
    port = collector.port
    collector.stop()

    down = [h.cycle(advance=4000) for _ in range(3)]
    back = StubCollector(port)
    try:
        h.collector = back
        last = h.cycle()
        delivered = seqs(collector.reports) + seqs(back.reports)
        outage = [
            p for r in back.reports for p in r["probes"] if p["cycle"] in (2, 3, 4)
        ]
    finally:
        back.stop()

    assert [first.delivered, *[o.delivered for o in down], last.delivered] == [
        True,
        False,
        False,
        False,
        True,
    ]
    assert delivered == list(range(1, 16))
    assert [(p["kind"], p["ok"], p["reason"]) for p in outage[:3]] == [
        ("dns", True, None),
        ("tcp", False, "connection refused"),
        ("https", False, "connection refused"),
    ]
    assert h.outbox.stats()["outbox_items"] == 0


def test_case_batch_resend_after_lost_answer_is_stored_once(harness, collector):
    """A batch stored but unanswered is resent; duplicates are not a restore."""
    h = harness()
    collector.script.append("store-then-drop")
    lost = h.cycle(advance=4000)

    again = h.cycle()
    answer_body = h.agent.health()

    assert (lost.delivered, again.delivered) == (False, True)
    assert [p["seq"] for p in collector.stored_probes()] == list(range(1, 7))
    assert seqs(collector.reports) == [1, 2, 3, 1, 2, 3, 4, 5, 6]
    assert answer_body["state_restored"] is False


def test_case_huge_software_list_413_sends_inventory_without_it(harness, collector):
    """A 413 splits the batch; the lone inventory goes without its software list."""
    h = harness(inventory=Inventory(program_count=3000))

    def limit(report, body):
        if len(body) > 600_000:
            return (
                413,
                {},
                b'{"error": "too_large", "message": "body over 600000 bytes"}',
            )
        return None

    collector.rule = limit

    outcome = h.cycle()

    inventories = [r["inventory"] for r in collector.reports if r["inventory"]]
    assert outcome.delivered is True
    assert [sorted(i["sections"]) for i in inventories] == [
        ["memory", "network", "system"]
    ]
    assert seqs(collector.reports) == [1, 2, 3]
    assert h.outbox.set_aside_rows() == [
        {
            "kind": "software",
            "seq": None,
            "status": 413,
            "reason": "413 body over 600000 bytes",
        }
    ]
    assert collector.reports[-1]["health"]["set_aside_total"] == 1
    assert h.outbox.stats()["outbox_items"] == 0


def test_case_huge_software_list_fits_compressed(harness, collector):
    """About 1 MB of programs travels gzip-compressed, at under a quarter size."""
    h = harness(inventory=Inventory(program_count=3000))
    collector.rule = lambda report, body: None
    outcome = h.cycle()

    software = collector.reports[0]["inventory"]["sections"]["software"]["data"]
    assert outcome.delivered is True
    plain = json.dumps(software["programs"], ensure_ascii=False).encode("utf-8")
    assert len(plain) > 900_000
    assert len(collector.raw_bodies[0]) < len(plain) / 4
    assert software["programs"] == programs(3000)


def test_item_refused_with_422_is_set_aside_and_the_rest_delivered(harness, collector):
    """One probe the collector cannot validate is isolated, set aside, never blocks."""
    h = harness()

    def refuse_seq_2(report, body):
        if any(p["seq"] == 2 for p in report["probes"]):
            return 422, {}, b'{"error": "invalid", "message": "probe seq 2 invalid"}'
        return None

    collector.rule = refuse_seq_2

    first = h.cycle()
    second = h.cycle()

    assert (first.delivered, second.delivered) == (True, True)
    assert [p["seq"] for p in collector.stored_probes()] == [1, 3, 4, 5, 6]
    assert h.outbox.set_aside_rows() == [
        {"kind": "probe", "seq": 2, "status": 422, "reason": "422 probe seq 2 invalid"}
    ]


def test_envelope_refused_is_retried_not_set_aside(harness, collector):
    """When even an empty report is refused, nothing is set aside; it is retried."""
    h = harness()
    refusal = (422, {}, b'{"error": "invalid", "message": "schema 1 unknown"}')
    collector.rule = lambda report, body: refusal

    outcome = h.cycle()

    assert outcome.delivered is False
    assert h.outbox.set_aside_rows() == []
    assert h.outbox.stats()["outbox_items"] == 4
    assert h.agent.last_error == "422 schema 1 unknown"


UNKNOWN = (
    401,
    {},
    b'{"error": "unknown_credential", "message": '
    b"\"the credential starting 'cred' is unknown; enroll again with a valid token\"}",
)
REVOKED = (
    401,
    {},
    b'{"error": "revoked_credential", "message": '
    b"\"the credential starting 'cred' was revoked; enroll again with a valid token\"}",
)
REVOKED_SAYS = (
    "the district revoked this PC on 2026-12-03T01:06:40Z: reports are kept in the "
    "outbox and not sent; ask the district technician, who can enroll it again "
    "(schoolmon-agent enroll --server URL --token TOKEN)"
)


def test_unknown_credential_re_enrolls_and_delivers_in_the_same_cycle(
    harness, collector
):
    """A credential the collector does not know is replaced by enrolling again with
    the stored token, and the queued samples go with the new one at once."""
    h = harness()
    collector.script.append(UNKNOWN)

    outcome = h.cycle()

    assert outcome.delivered is True
    assert [e["token"] for e in collector.enrollments] == ["school-token"]
    assert h.state.load_credential() == Credential(
        "d_0001", "secret-1", "C01", "lab", collector.url, 300, token="school-token"
    )
    assert [x["Authorization"] for x in collector.headers] == [
        "Bearer cred-0",
        "Bearer secret-1",
    ]
    assert seqs(collector.reports) == [1, 2, 3]
    assert (h.agent.last_error, h.outbox.get_meta("last_error")) == (None, None)


def test_unknown_credential_retried_once_only_when_the_new_one_fails_too(
    harness, collector
):
    """If the fresh credential is refused as well, the cycle stops there (bounded)."""
    h = harness()
    collector.script.extend([UNKNOWN, UNKNOWN])

    outcome = h.cycle()

    assert (outcome.delivered, len(collector.enrollments)) == (False, 1)
    assert len(collector.headers) == 2
    assert h.agent.last_error == (
        "401 the credential starting 'cred' is unknown; enroll again with a valid token"
    )
    assert h.outbox.stats()["outbox_items"] == 4


def test_revoked_credential_stops_delivery_keeps_the_outbox_and_never_re_enrolls(
    harness, collector, caplog
):
    """A revoked PC stops sending, says so, keeps its samples, and stays stopped
    after a restart; only a new `enroll` by a person brings it back."""
    h = harness()
    collector.script.append(REVOKED)

    caplog.set_level("WARNING", logger="schoolmon.agent.service")
    first = h.cycle(advance=4000)
    second = h.cycle(advance=4000)
    h.start()
    after_restart = h.cycle()

    assert [first.delivered, second.delivered, after_restart.delivered] == [
        False,
        False,
        False,
    ]
    assert (collector.enrollments, len(collector.headers)) == ([], 1)
    assert h.state.load_credential() == Credential(
        "d_0001",
        "cred-0",
        "C01",
        "lab",
        collector.url,
        300,
        token="school-token",
        revoked_at="2026-12-03T01:06:40Z",
    )
    assert h.agent.last_error == REVOKED_SAYS
    assert h.outbox.get_meta("last_error")["message"] == REVOKED_SAYS
    assert h.outbox.stats()["outbox_items"] == 10
    # Said once when the answer came, and once more by the restarted agent.
    assert [r.getMessage() for r in caplog.records] == [REVOKED_SAYS, REVOKED_SAYS]


def test_5xx_backs_off_and_retry_after_is_honoured(harness, collector, clocks):
    """After a 503 nothing is sent before the backoff delay; a 429 waits Retry-After."""
    h = harness()
    collector.script.extend([(503, {}, b"{}"), (429, {"Retry-After": "900"}, b"{}")])

    h.agent.cycle()
    first_wait = h.agent.next_delivery_at - clocks.monotonic()
    clocks.advance(first_wait + 1)
    h.agent.cycle()
    throttled_wait = h.agent.next_delivery_at - clocks.monotonic()
    clocks.advance(throttled_wait - 10)
    quiet = h.agent.cycle()
    posts_before = len(collector.headers)
    clocks.advance(20)
    final = h.agent.cycle()

    assert 0 <= first_wait <= 30
    assert 900 <= throttled_wait <= 3600
    assert (quiet.delivered, posts_before, final.delivered) == (False, 2, True)
    assert seqs(collector.reports) == list(range(1, 13))


def test_software_list_sent_only_when_changed(harness, collector, clocks):
    """A changed inventory carries software data only if the software changed."""
    inventory = Inventory()
    h = harness(inventory=inventory)
    h.cycle(advance=3600)
    inventory.usable -= 4096
    h.cycle(advance=3600)
    inventory.programs = programs(4)
    h.cycle()

    sent = [
        r["inventory"]["sections"]["software"]
        for r in collector.reports
        if r["inventory"]
    ]
    assert [(s.get("unchanged", False), s["data"] is None) for s in sent] == [
        (False, False),
        (True, True),
        (False, False),
    ]
    assert sent[1]["hash"] == sent[0]["hash"]


def test_unchanged_inventory_is_not_resent_until_a_day_passes(
    harness, collector, clocks
):
    """The same inventory is sent once, then again only after 24 hours."""
    h = harness()
    h.cycle(advance=3600)
    h.cycle(advance=86400)
    h.cycle()

    assert [r["inventory"] is not None for r in collector.reports] == [
        True,
        False,
        True,
    ]


def test_run_speedtest_without_module_and_without_console_records_a_failure(
    harness, collector, monkeypatch
):
    """With stdout/stderr None and no speed-test module, a failed test is reported."""
    h = harness()
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    monkeypatch.setitem(sys.modules, "schoolmon.agent.speedtest", None)
    collector.instructions.append([{"kind": "run_speedtest", "backend": "collector"}])

    outcome = h.cycle()

    tests = [t for r in collector.reports for t in r["speedtests"]]
    assert outcome.delivered is True
    assert tests == [
        {
            "ok": False,
            "reason": "error",
            "message": "speed test unavailable: import of schoolmon.agent.speedtest "
            "halted; None in sys.modules",
            "backend": "collector",
            "tool": None,
            "tool_version": None,
            "server": None,
            "download_bytes_per_second": None,
            "upload_bytes_per_second": None,
            "latency_seconds": None,
            "jitter_seconds": None,
            "bytes_used": None,
            "streams": None,
            "started_at": None,
            "duration_seconds": None,
            "flags": [],
            "run": h.agent.run_id,
            "seq": 4,
            "wall_time": "2026-12-03T01:06:40Z",
            "monotonic": 1000.0,
            "boot_id": "boot-1",
        }
    ]


def test_replace_credential_instruction_stores_and_uses_the_new_one(harness, collector):
    """A replace_credential instruction (cloned image) is stored and used next."""
    h = harness()
    collector.instructions.append(
        [{"kind": "replace_credential", "credential": "clone-7", "device_id": "d_0007"}]
    )

    h.cycle()
    h.cycle()

    stored = h.state.load_credential()
    assert (stored.device_id, stored.credential) == ("d_0007", "clone-7")
    assert collector.headers[-1]["Authorization"] == "Bearer clone-7"


def test_case_reboot_to_restore_is_detected_and_reported_in_health(
    harness, collector, tmp_path
):
    """Restoring an old state directory is noticed from the answer and reported."""
    h = harness()
    h.start(with_transport=False)
    h.cycle()
    h.outbox.close()
    image = tmp_path / "image"
    shutil.copytree(h.state.directory, image)
    h.start()
    h.cycle()

    h.outbox.close()
    shutil.rmtree(h.state.directory)
    shutil.copytree(image, h.state.directory)
    h.start()
    h.cycle()
    h.cycle()
    h.cycle()

    health = [r["health"] for r in collector.reports]
    assert [(x["state_restored"], x["undelivered_lost"]) for x in health] == [
        (False, 0),
        (False, 0),
        (True, None),
        (False, 0),
    ]


def test_run_loop_sleeps_as_the_collector_says_and_stops(harness, collector, clocks):
    """The loop sleeps next_report_in_seconds after each cycle; a stop ends it."""
    h = harness()
    stop = threading.Event()
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clocks.advance(seconds)
        if len(slept) == 2:
            stop.set()

    h.agent.sleep = sleep
    h.agent.run(stop)

    assert (h.agent.cycle_number, slept) == (2, [287.0, 287.0])
    assert seqs(collector.reports) == list(range(1, 7))


def test_run_speedtest_instruction_calls_the_speedtest_module(harness, collector):
    """The real speed-test module runs on instruction; its result is stamped, sent."""
    h = harness()
    collector.instructions.append([{"kind": "run_speedtest", "backend": "collector"}])

    h.cycle()

    tests = [t for r in collector.reports for t in r["speedtests"]]
    assert len(tests) == 1
    stamp = ("run", "seq", "backend", "monotonic", "boot_id")
    assert {k: tests[0][k] for k in stamp} == {
        "run": h.agent.run_id,
        "seq": 4,
        "backend": "collector",
        "monotonic": 1000.0,
        "boot_id": "boot-1",
    }
    # The stub has no speed-test endpoint, so the module reports a failure.
    assert (
        tests[0]["ok"],
        tests[0]["reason"],
        tests[0]["download_bytes_per_second"],
    ) == (
        False,
        "error",
        None,
    )
