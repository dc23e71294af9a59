"""Speed tests and probe samples through the real API: who runs the slot's test,
how results and resent batches are stored and placed in time (cases
net-one-test-per-school, net-batch-resend, net-upload-above-link,
net-speedtest-unreachable-server)."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from schoolmon.server.clock import to_wire
from schoolmon.server.ingest import session_today, speedtest_policy
from schoolmon.server.scheduling import SlotState, slot_plan

from tests.conftest import SMALL_REGISTRY
from tests.server.test_ingest_identity import (
    FIXTURES,
    SimAgent,
    cloned_pc,
    events_by_kind,
    school_token,
)

RUN = [{"kind": "run_speedtest", "backend": "collector"}]
TESTS = json.loads(
    (FIXTURES / "ingest" / "speedtests-implausible-and-legacy.json").read_text()
)


def speedtest(agent: SimAgent, at: datetime, result: dict[str, Any]) -> dict:
    """A speed test as the agent queues it: the result stamped with run, seq, clocks."""
    agent.seq += 1
    return result | {
        "run": agent.run,
        "seq": agent.seq,
        "wall_time": to_wire(at),
        "monotonic": 1000.0 + agent.seq,
        "boot_id": agent.boot_id,
        "started_at": to_wire(at - timedelta(seconds=20)),
    }


def lab_agents(http, storage, clock, count: int) -> list[SimAgent]:
    token = school_token(storage, "C02", "lab", clock())
    agents = [SimAgent(http, cloned_pc(n), boot_id=f"b{n}") for n in range(count)]
    for agent in agents:
        agent.enroll(token)
    return agents


def slot_moment(storage, config, clock, index: int) -> datetime:
    """The instant slot ``index`` of C02 opens on the clock's day."""
    school = storage.school("C02")
    today = session_today(config, school, clock())
    return slot_plan("C02", today, speedtest_policy(config))[index].moment


def slot_state(storage) -> SlotState:
    return SlotState.from_json(storage.speedtest_state("C02")["state"])


def speedtest_rows(storage) -> list[tuple]:
    return storage.db.execute(
        "SELECT device, ok, reason, download_bytes_per_second, "
        "upload_bytes_per_second, latency_seconds, flags, method FROM speedtests "
        "ORDER BY seq"
    ).fetchall()


def test_one_of_25_lab_pcs_runs_the_slot_test(http, registered, config, clock):
    """net-one-test-per-school: 25 lab PCs report together when the 10:00 slot opens;
    exactly one is told to run the test, and nobody else while its lease runs."""
    agents = lab_agents(http, registered, clock, 25)
    clock.set(slot_moment(registered, config, clock, 1))

    with ThreadPoolExecutor(max_workers=8) as pool:
        first = list(pool.map(lambda a: a.send(a.report(clock())).json(), agents))
    clock.advance(minutes=5)
    second = [a.send(a.report(clock())).json() for a in agents]

    chosen = [a["device_id"] for a in first if a["instructions"]]
    state = slot_state(registered)
    assert (
        Counter(json.dumps(a["instructions"]) for a in first),
        [a["instructions"] for a in second],
        (state.lease_holder, state.tried, state.attempts, state.done),
    ) == (
        Counter({"[]": 24, json.dumps(RUN): 1}),
        [[]] * 25,
        (chosen[0], (chosen[0],), 1, False),
    )


def test_a_failed_result_hands_the_slot_on_and_a_good_one_closes_it(
    http, registered, config, clock
):
    """A 'rate limited' failure is stored with its reason and lets another PC try; a
    good result closes the slot; no asset event or other alarm comes of either."""
    agents = lab_agents(http, registered, clock, 3)
    clock.set(slot_moment(registered, config, clock, 1))
    answers = {a.device_id: a.send(a.report(clock())).json() for a in agents}
    holder = next(a for a in agents if answers[a.device_id]["instructions"])
    refused = TESTS["upload_above_link"] | {
        "ok": False,
        "reason": "rate limited",
        "server": None,
        "download_bytes_per_second": None,
        "upload_bytes_per_second": None,
        "latency_seconds": None,
        "jitter_seconds": None,
        "bytes_used": None,
    }
    failed = holder.send(
        holder.report(clock(), speedtests=(speedtest(holder, clock(), refused),))
    )

    others = [a for a in agents if a is not holder]
    handed = [a.send(a.report(clock())).json()["instructions"] for a in others]
    runner = others[handed.index(RUN)]
    good = TESTS["upload_above_link"] | {"upload_bytes_per_second": 1_200_000.0}
    runner.send(runner.report(clock(), speedtests=(speedtest(runner, clock(), good),)))
    after = [a.send(a.report(clock())).json()["instructions"] for a in agents]

    assert (
        failed.json()["instructions"],
        sorted(handed),
        after,
        [row[:3] for row in speedtest_rows(registered)],
        slot_state(registered).done,
        events_by_kind(registered),
    ) == (
        [],
        [[], RUN],
        [[], [], []],
        [(holder.device_id, 0, "rate limited"), (runner.device_id, 1, None)],
        True,
        {},
    )


def test_batch_resent_after_a_lost_answer_is_stored_once(http, registered, clock):
    """net-batch-resend: 500 stored, answer lost, the same 500 plus 20 new resent:
    200 with 20 accepted and 500 duplicates, 520 rows placed by monotonic time."""
    agent = lab_agents(http, registered, clock, 1)[0]
    first = agent.report(clock(), probes=500, full_inventory=False)
    agent.send(first)
    resend = agent.report(clock(), probes=20, full_inventory=False)
    resend["probes"] = first["probes"] + resend["probes"]

    answer = agent.send(resend)

    rows = registered.db.execute(
        "SELECT seq, placed_at, method FROM probe_samples ORDER BY seq"
    ).fetchall()
    received = clock()
    assert (
        answer.status_code,
        answer.json()["accepted"],
        answer.json()["duplicates"],
    ) == (
        200,
        {"probes": 20, "speedtests": 0, "inventory": 0},
        {"probes": 500, "speedtests": 0, "inventory": 0},
    )
    assert rows == [
        (seq, to_wire_storage(received - timedelta(seconds=501 - seq)), "monotonic")
        for seq in range(1, 501)
    ] + [
        (seq, to_wire_storage(received - timedelta(seconds=521 - seq)), "monotonic")
        for seq in range(501, 521)
    ]


def to_wire_storage(instant: datetime) -> str:
    from schoolmon.server.clock import to_storage

    return to_storage(instant)


def test_upload_above_the_link_is_flagged_and_kept(http, registered, clock):
    """net-upload-above-link: 38 Mbit/s down, 420 Mbit/s up on a 40 Mbit/s link is
    stored with its figures and flagged implausible_upload."""
    rows = [dict(r) for r in SMALL_REGISTRY]
    rows[1]["contracted_download_mbps"] = TESTS["contracted_download_mbps"]
    registered.import_schools(rows, clock())
    agent = lab_agents(http, registered, clock, 1)[0]
    test = speedtest(agent, clock(), TESTS["upload_above_link"])

    answer = agent.send(agent.report(clock(), speedtests=(test,)))

    assert (answer.json()["accepted"], speedtest_rows(registered)) == (
        {"probes": 5, "speedtests": 1, "inventory": 1},
        [
            (
                agent.device_id,
                1,
                None,
                4750000.0,
                52500000.0,
                0.021,
                '["implausible_upload"]',
                "monotonic",
            )
        ],
    )


def test_unreachable_server_sentinel_from_an_old_agent_is_a_failed_test(
    http, registered, clock
):
    """net-speedtest-unreachable-server: an old agent's 'ok' test with 1,800 s latency
    and 0 bit/s is stored as a failure 'server unreachable' without figures, and the
    rest of its report is kept."""
    agent = lab_agents(http, registered, clock, 1)[0]
    test = speedtest(agent, clock(), TESTS["unreachable_server_old_agent"])

    answer = agent.send(agent.report(clock(), speedtests=(test,)))

    assert (
        answer.status_code,
        answer.json()["accepted"],
        speedtest_rows(registered),
    ) == (
        200,
        {"probes": 5, "speedtests": 1, "inventory": 1},
        [
            (
                agent.device_id,
                0,
                "server unreachable",
                None,
                None,
                None,
                '["zero_figures_from_agent"]',
                "monotonic",
            )
        ],
    )


def test_samples_of_earlier_boots_are_method_skew_and_say_how(http, registered, clock):
    """A PC whose clock is a year behind: earlier-boot samples are placed by this
    report's skew, then by the stored skew; a sample no correction can place is
    stored 'unplaced' at the receive time."""
    agent = lab_agents(http, registered, clock, 1)[0]
    behind = timedelta(days=365)
    old_boot = [
        {**p, "boot_id": "yesterday", "monotonic": 5.0}
        for p in agent.probes(clock() - behind - timedelta(minutes=30), 1)
    ]
    lost = [
        {**p, "boot_id": "yesterday"} for p in agent.probes(clock() - 4 * behind, 1)
    ]
    first = agent.report(clock() - behind, probes=0, full_inventory=False)
    first["probes"] = old_boot + lost
    agent.send(first)
    clock.advance(minutes=10)
    second = agent.report(clock() - behind, probes=0, full_inventory=False)
    second["probes"] = [
        {**p, "boot_id": "yesterday"}
        for p in agent.probes(clock() - behind - timedelta(minutes=1), 1)
    ]
    agent.send(second)

    rows = registered.db.execute(
        "SELECT seq, placed_at, method FROM probe_samples ORDER BY seq"
    ).fetchall()
    start = clock() - timedelta(minutes=10)
    assert rows == [
        (1, to_wire_storage(start - timedelta(minutes=30, seconds=1)), "report_skew"),
        (2, to_wire_storage(start), "unplaced"),
        (3, to_wire_storage(clock() - timedelta(minutes=1, seconds=1)), "skew"),
    ]
