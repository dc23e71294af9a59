"""Speed-test scheduling: slots, leases, budget and backoff (server/scheduling.py)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from schoolmon.server.scheduling import (
    ReportingDevice,
    Slot,
    SlotState,
    SpeedtestPolicy,
    SpeedtestResult,
    decide,
    decide_atomically,
    record_result,
    record_result_atomically,
    slot_plan,
)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
POLICY = SpeedtestPolicy()
RUN = {"kind": "run_speedtest", "backend": "collector"}
LABS = [ReportingDevice(f"LAB-{n:02d}", "lab") for n in range(1, 26)]


def local(text: str) -> datetime:
    """A wall time in Ho Chi Minh City as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=HCM).astimezone(UTC)


TUESDAY = [
    (local("2026-12-01T07:00"), local("2026-12-01T11:30")),
    (local("2026-12-01T13:30"), local("2026-12-01T17:00")),
]
MOMENT = local("2026-12-01T10:49:03")  # slot 1's moment for school C01 (see below)
GOOD = SpeedtestResult(True, None, "collector", 52_000_000)


def test_slot_plan_cuts_session_time_in_three_with_seeded_moments():
    """Three slots of equal session time (lunch excluded), each with a moment in its
    first half drawn from the seed, school, day and slot."""
    plan = slot_plan("C01", TUESDAY, POLICY)

    assert plan == [
        Slot("C01/2026-12-01/0", 0, local("2026-12-01T07:00"),
             local("2026-12-01T09:40"), local("2026-12-01T07:41:39")),
        Slot("C01/2026-12-01/1", 1, local("2026-12-01T09:40"),
             local("2026-12-01T14:20"), MOMENT),
        Slot("C01/2026-12-01/2", 2, local("2026-12-01T14:20"),
             local("2026-12-01T17:00"), local("2026-12-01T15:06:16")),
    ]  # fmt: skip


def test_slot_moments_agree_across_processes():
    """Another interpreter with another hash seed computes the same moments."""
    code = (
        "from datetime import datetime\n"
        "from schoolmon.server.scheduling import slot_plan, SpeedtestPolicy\n"
        "iv = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in "
        f"{[(lo.isoformat(), hi.isoformat()) for lo, hi in TUESDAY]!r}]\n"
        "print([s.moment.isoformat() for s in slot_plan('C01', iv, SpeedtestPolicy())])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )

    here = [slot.moment.isoformat() for slot in slot_plan("C01", TUESDAY, POLICY)]
    assert out.stdout.strip() == str(here)


def reports_around_the_moment(seed: int) -> list[tuple[datetime, ReportingDevice]]:
    """25 lab PCs reporting every 5 minutes from 20 minutes before the moment to 30
    after it, each at its own phase, in time order."""
    rng = random.Random(seed)
    reports = []
    for device in LABS:
        t = MOMENT - timedelta(minutes=20) + timedelta(seconds=rng.randrange(300))
        while t < MOMENT + timedelta(minutes=30):
            reports.append((t, device))
            t += timedelta(seconds=300)
    return sorted(reports, key=lambda r: (r[0], r[1].id))


def test_one_test_per_school_when_25_lab_pcs_report_as_the_slot_opens():
    """Of 25 lab PCs reporting around the slot moment exactly one, the first to report
    after it, gets the instruction; the others get nothing in that slot."""
    reports = reports_around_the_moment(seed=3)
    first_after = next(device for t, device in reports if t >= MOMENT)
    state = SlotState("C01")

    granted = []
    for t, device in reports:
        instruction, state = decide(t, "C01", device, state, TUESDAY, POLICY)
        if instruction is not None:
            granted.append((device.id, instruction))
        if device.id == first_after.id and t > MOMENT + timedelta(minutes=5):
            state = record_result(state, device.id, GOOD, t, POLICY)

    assert granted == [(first_after.id, RUN)]
    assert (state.slot, state.done, state.attempts, state.tried) == (
        "C01/2026-12-01/1", True, 1, (first_after.id,)
    )  # fmt: skip


class SqliteSlotStore:
    """The storage contract, as the collector's storage must implement it: state as
    JSON with a version, saved by UPDATE ... WHERE version = expected."""

    def __init__(self, path, school: str) -> None:
        self.db = sqlite3.connect(path, timeout=10, check_same_thread=False)
        self.school = school
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS speedtest_state "
            "(school TEXT PRIMARY KEY, version INTEGER NOT NULL, state TEXT NOT NULL)"
        )
        self.db.commit()

    def load(self) -> SlotState:
        row = self.db.execute(
            "SELECT state FROM speedtest_state WHERE school = ?", (self.school,)
        ).fetchone()
        return SlotState(self.school) if row is None else SlotState.from_json(row[0])

    def compare_and_set(self, expected: SlotState, new: SlotState) -> bool:
        with self.db:
            if expected.version == 0:
                cursor = self.db.execute(
                    "INSERT INTO speedtest_state VALUES (?, ?, ?) "
                    "ON CONFLICT(school) DO NOTHING",
                    (self.school, new.version, new.to_json()),
                )
            else:
                cursor = self.db.execute(
                    "UPDATE speedtest_state SET version = ?, state = ? "
                    "WHERE school = ? AND version = ?",
                    (new.version, new.to_json(), self.school, expected.version),
                )
        return cursor.rowcount == 1


def test_two_collector_processes_that_race_hand_out_one_test(tmp_path):
    """Two processes that both read the free slot and both decide to hand it out:
    the second compare-and-set fails and deciding again gives nothing."""
    one = SqliteSlotStore(tmp_path / "c.db", "C01")
    two = SqliteSlotStore(tmp_path / "c.db", "C01")
    seen_by_one, seen_by_two = one.load(), two.load()
    at = MOMENT + timedelta(seconds=10)

    run_one, new_one = decide(at, "C01", LABS[0], seen_by_one, TUESDAY, POLICY)
    run_two, new_two = decide(at, "C01", LABS[1], seen_by_two, TUESDAY, POLICY)
    saved = [one.compare_and_set(seen_by_one, new_one),
             two.compare_and_set(seen_by_two, new_two)]  # fmt: skip
    retry = decide(at, "C01", LABS[1], two.load(), TUESDAY, POLICY)[0]

    assert (run_one, run_two, saved, retry) == (RUN, RUN, [True, False], None)
    assert two.load() == new_one


def test_two_collector_processes_share_the_lease_through_sqlite(tmp_path):
    """25 PCs' reports split at random between two threads, each with its own
    connection to one SQLite file, give exactly one instruction in the slot."""
    stores = [SqliteSlotStore(tmp_path / "c.db", "C01") for _ in range(2)]
    reports = reports_around_the_moment(seed=11)
    random.Random(5).shuffle(reports)
    granted: list[str] = []

    def serve(store: SqliteSlotStore, share: list) -> None:
        for t, device in share:
            instruction = decide_atomically(
                t, "C01", device, TUESDAY, POLICY, store.load, store.compare_and_set
            )
            if instruction is not None:
                granted.append(device.id)

    threads = [
        threading.Thread(target=serve, args=(store, reports[n::2]))
        for n, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    state = stores[0].load()
    assert granted == [state.lease_holder]
    assert (state.attempts, state.tried, state.version) == (1, tuple(granted), 1)


def test_result_recorded_through_compare_and_set_closes_the_slot(tmp_path):
    """A good result saved atomically closes the slot for every process."""
    store = SqliteSlotStore(tmp_path / "c.db", "C01")
    at = MOMENT + timedelta(seconds=1)
    decide_atomically(
        at, "C01", LABS[0], TUESDAY, POLICY, store.load, store.compare_and_set
    )

    saved = record_result_atomically(
        "LAB-01", GOOD, at + timedelta(minutes=2), POLICY, store.load,
        store.compare_and_set,
    )  # fmt: skip
    later = decide_atomically(
        at + timedelta(minutes=30), "C01", LABS[1], TUESDAY, POLICY, store.load,
        store.compare_and_set,
    )  # fmt: skip

    assert (saved, later, store.load().done, store.load().month_bytes) == (
        True, None, True, 52_000_000
    )  # fmt: skip


def test_expired_lease_passes_to_another_pc_with_bounded_attempts():
    """A chosen PC that never delivers loses its lease after 15 minutes; another PC
    takes over, and after three attempts the slot gives up."""
    state = SlotState("C01")
    granted = []
    for minute in range(0, 80, 5):
        at = MOMENT + timedelta(minutes=minute, seconds=1)
        for device in LABS[:4]:
            instruction, state = decide(at, "C01", device, state, TUESDAY, POLICY)
            if instruction is not None:
                granted.append((minute, device.id))

    assert granted == [(0, "LAB-01"), (15, "LAB-02"), (30, "LAB-03")]
    assert state.attempts == 3


def test_failed_result_hands_the_slot_to_another_pc_and_a_good_one_closes_it():
    """'server unreachable' frees the lease for a PC that has not tried; its good
    result closes the slot until the next one."""
    at = MOMENT + timedelta(seconds=30)
    unreachable = SpeedtestResult(False, "server unreachable", "collector", None)
    _, state = decide(at, "C01", LABS[0], SlotState("C01"), TUESDAY, POLICY)
    state = record_result(state, "LAB-01", unreachable, at + timedelta(minutes=1))

    steps = []
    for minute, device in ((2, LABS[0]), (3, LABS[1]), (4, LABS[2])):
        instruction, state = decide(
            at + timedelta(minutes=minute), "C01", device, state, TUESDAY, POLICY
        )
        steps.append((device.id, instruction))
    state = record_result(state, "LAB-02", GOOD, at + timedelta(minutes=5))
    after_good = decide(at + timedelta(minutes=6), "C01", LABS[3], state, TUESDAY)[0]
    next_slot = decide(local("2026-12-01T16:00"), "C01", LABS[3], state, TUESDAY)[0]

    assert steps == [("LAB-01", None), ("LAB-02", RUN), ("LAB-03", None)]
    assert (after_good, next_slot) == (None, RUN)


def test_monthly_budget_uses_the_median_of_past_tests_and_resets_each_month():
    """With 3.9 GB used of 4 GB, a median of 150 MB stops tests, a median of 80 MB
    allows one; a new month starts from zero."""
    at = MOMENT + timedelta(seconds=5)
    heavy = SlotState(
        "C01",
        month="2026-12",
        month_bytes=3_900_000_000,
        recent_bytes=(120_000_000, 150_000_000, 400_000_000),
    )
    light = replace(heavy, recent_bytes=(60_000_000, 80_000_000, 90_000_000))
    last_month = replace(heavy, month="2026-11")  # fmt: skip

    verdicts = [
        decide(at, "C01", LABS[0], heavy, TUESDAY, POLICY)[0],
        decide(at, "C01", LABS[0], light, TUESDAY, POLICY)[0],
        decide(at, "C01", LABS[0], last_month, TUESDAY, POLICY)[0],
    ]

    assert verdicts == [None, RUN, RUN]


def test_speedtest_net_refusals_back_off_for_growing_minutes_without_blocking_others():
    """'rate limited' and 'test service refused' back off 5, 10, 20 minutes; a good
    result resets; the collector backend is never held back."""
    net = SpeedtestPolicy(backend="speedtest-net")
    at = MOMENT + timedelta(seconds=5)
    state = SlotState("C01")
    waits = []
    for reason in ("rate limited", "test service refused", "rate limited"):
        state = record_result(
            state, "LAB-09", SpeedtestResult(False, reason, "speedtest-net", None), at
        )
        waits.append((state.backoff_until - at).total_seconds())

    held = decide(at + timedelta(minutes=19), "C01", LABS[0], state, TUESDAY, net)[0]
    free = decide(at + timedelta(minutes=20), "C01", LABS[0], state, TUESDAY, net)[0]
    collector = decide(at, "C01", LABS[0], state, TUESDAY, POLICY)[0]
    reset = record_result(state, "LAB-09", replace(GOOD, backend="speedtest-net"), at)

    assert waits == [300.0, 600.0, 1200.0]
    assert (held, free, collector) == (
        None, {"kind": "run_speedtest", "backend": "speedtest-net"}, RUN
    )  # fmt: skip
    assert (reset.backoff_until, reset.backoff_level) == (None, 0)


@pytest.mark.parametrize(
    ("at", "device"),
    [
        (MOMENT + timedelta(seconds=5), ReportingDevice("T-01", "teacher")),
        (MOMENT - timedelta(seconds=5), LABS[0]),  # before the moment
        (local("2026-12-01T12:30"), LABS[0]),  # lunch break
        (local("2026-12-01T18:00"), LABS[0]),  # after school
    ],
)
def test_no_test_for_teacher_pcs_before_the_moment_or_out_of_session(at, device):
    """Only lab and office PCs, only in session after the slot moment; the state is
    left as it was."""
    state = SlotState("C01")

    assert decide(at, "C01", device, state, TUESDAY, POLICY) == (None, state)


def test_no_session_today_means_no_slots():
    """A holiday has no slots and hands out no test."""
    state = SlotState("C01")

    plan = slot_plan("C01", [], POLICY)
    verdict = decide(MOMENT, "C01", LABS[0], state, [], POLICY)

    assert (plan, verdict) == ([], (None, state))


def test_slot_state_survives_a_json_round_trip():
    """What the storage saves is what it loads."""
    state = SlotState(
        "C01", version=4, slot="C01/2026-12-01/1", lease_holder="LAB-02",
        lease_expires=MOMENT, attempts=2, tried=("LAB-01", "LAB-02"), month="2026-12",
        month_bytes=104_000_000, recent_bytes=(52_000_000,), backoff_until=MOMENT,
        backoff_level=1,
    )  # fmt: skip

    assert SlotState.from_json(state.to_json()) == state
    assert json.loads(state.to_json())["lease_expires"] == "2026-12-01T03:49:03+00:00"


def test_result_from_the_wire_keeps_what_scheduling_needs():
    """A wire-format failed test becomes a result with its reason and no bytes."""
    wire = {"ok": False, "reason": "rate limited", "backend": "speedtest-net",
            "bytes_used": None, "download_bytes_per_second": None}  # fmt: skip

    assert SpeedtestResult.from_wire(wire) == SpeedtestResult(
        False, "rate limited", "speedtest-net", None
    )


def test_unknown_backend_and_foreign_state_are_rejected_by_name():
    """A policy naming an unknown backend, or another school's state, is an error."""
    with pytest.raises(ValueError, match="backend 'iperf'; expected one of"):
        SpeedtestPolicy(backend="iperf")
    with pytest.raises(ValueError, match="state of school 'C02' used for school 'C01'"):
        decide(MOMENT, "C01", LABS[0], SlotState("C02"), TUESDAY, POLICY)
