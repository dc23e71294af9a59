"""Internet uptime from placed probe samples (server/uptime.py)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from schoolmon.server import clocks
from schoolmon.server.uptime import (
    Outage,
    ProbeSample,
    Uptime,
    compute_uptime,
    offline_now,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "uptime"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
MONOTONIC_AT_POWER_ON = 50.0


def local(text: str) -> datetime:
    """A wall time in Ho Chi Minh City as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=HCM).astimezone(UTC)


# --- a small simulated school: agents probing into outboxes, reports, placement ---


@dataclass
class Delivery:
    received_at: datetime
    device: str
    boot_id: str
    sent_wall: datetime
    sent_monotonic: float
    samples: list[dict]


@dataclass
class Simulation:
    samples: list[ProbeSample] = field(default_factory=list)
    methods: Counter = field(default_factory=Counter)
    last_seen: datetime | None = None


def load_case(name: str) -> dict:
    """Read one scenario fixture."""
    return yaml.safe_load((FIXTURES / f"{name}.yaml").read_text(encoding="utf-8"))


def simulate(case: dict, until: datetime | None = None) -> Simulation:
    """Run the case's agents and place every sample the collector received by
    ``until`` (default: the case's ``now``) the way the collector does."""
    now = local(case["now"])
    until = until or now
    deliveries = [d for dev in case["devices"] for d in _run_device(case, dev, now)]
    deliveries.sort(key=lambda d: d.received_at)

    result = Simulation()
    last_skew: dict[str, float] = {}
    for delivery in (d for d in deliveries if d.received_at <= until):
        _place_delivery(delivery, last_skew.get(delivery.device), result)
        last_skew[delivery.device] = clocks.skew(
            delivery.sent_wall, delivery.received_at
        )
        result.last_seen = delivery.received_at
    random.Random(7).shuffle(result.samples)  # arrival order must not matter
    return result


def _run_device(case: dict, device: dict, now: datetime) -> list[Delivery]:
    outbox: list[dict] = []
    deliveries: list[Delivery] = []
    for boot, (on, off) in enumerate(device["powered"]):
        on_at, off_at = local(on), min(local(off), now)
        boot_id = f"{device['id']}-boot{boot}"
        wall = _wall_clock(device, on_at)
        mono = _monotonic_clock(on_at)
        t, cycle = on_at + timedelta(seconds=device["phase_seconds"]), 0
        while t < off_at:
            outbox += _probe(case, device["id"], boot_id, cycle, t, wall(t), mono(t))
            if cycle % case["report_every_cycles"] == case["report_every_cycles"] - 1:
                _report(case, device, boot_id, t, wall(t), mono(t), outbox, deliveries)
            t, cycle = t + timedelta(seconds=case["probe_interval_seconds"]), cycle + 1
        if local(off) >= now:  # still on: its latest report arrives right at now
            sent = now - timedelta(seconds=case["transit_seconds"])
            _report(
                case, device, boot_id, sent, wall(sent), mono(sent), outbox, deliveries
            )
    return deliveries


def _monotonic_clock(on_at: datetime):
    return lambda t: MONOTONIC_AT_POWER_ON + (t - on_at).total_seconds()


def _wall_clock(device: dict, on_at: datetime):
    if "clock_at_boot" in device:
        reset = datetime.fromisoformat(device["clock_at_boot"]).replace(tzinfo=UTC)
        return lambda t: reset + (t - on_at)
    offset = timedelta(seconds=device.get("clock_offset_seconds", 0))
    return lambda t: t + offset


def _probe(case, device, boot_id, cycle, t, wall, mono) -> list[dict]:
    link_up = not _within(case["link_down"], t)
    internet_up = link_up and not _within(case["internet_down"], t)
    return [
        {"device": device, "cycle": (boot_id, cycle), "scope": scope, "kind": kind,
         "ok": internet_up if scope == "internet" else link_up,
         "boot_id": boot_id, "wall": wall, "monotonic": mono}
        for scope, kind in case["targets"]
    ]  # fmt: skip


def _report(case, device, boot_id, t, wall, mono, outbox, deliveries) -> None:
    if _within(case["link_down"], t):
        return
    received = t + timedelta(seconds=case["transit_seconds"])
    deliveries.append(Delivery(received, device["id"], boot_id, wall, mono, outbox[:]))
    outbox.clear()


def _within(periods: list, t: datetime) -> bool:
    return any(local(lo) <= t < local(hi) for lo, hi in periods)


def _place_delivery(delivery: Delivery, last_skew: float | None, sim: Simulation):
    for raw in delivery.samples:
        placed, method = clocks.place(
            raw["monotonic"], raw["boot_id"], raw["wall"],
            delivery.sent_monotonic, delivery.boot_id, delivery.sent_wall,
            delivery.received_at, last_skew,
        )  # fmt: skip
        sim.methods[method] += 1
        sim.samples.append(
            ProbeSample(raw["device"], placed, raw["cycle"], raw["scope"],
                        raw["kind"], raw["ok"])
        )  # fmt: skip


def uptime_of(case: dict, sim: Simulation, now: datetime | None = None) -> Uptime:
    """Compute the case's uptime from the simulation's placed samples."""
    sessions = [(local(lo), local(hi)) for lo, hi in case["sessions"]]
    now = now or local(case["now"])
    return compute_uptime(sim.samples, sessions, case["probe_interval_seconds"], now)


# --- field cases ---


def test_outage_backfilled_after_link_returns_is_one_outage_counted_in_uptime():
    """Samples buffered during 08:05-10:40 arrive late and give one outage within a
    probe interval of the real one, counted as downtime; other days have no device."""
    case = load_case("net-outage-backfill")
    sim = simulate(case)

    result = uptime_of(case, sim)

    assert result == Uptime(
        window_start=local("2026-11-24T17:30:00"),
        window_end=local("2026-12-01T17:30:00"),
        session_seconds=6 * 28800.0,
        up_seconds=28800.0 - 9245.0,
        down_seconds=9245.0,
        no_device_seconds=5 * 28800.0,
        uptime_ratio=(28800.0 - 9245.0) / 28800.0,
        outages=(
            Outage(
                start=local("2026-12-01T08:05:59"),
                end=local("2026-12-01T10:40:04"),
                in_session_seconds=9245.0,
            ),
        ),
        internet_up_now=True,
        latest_verdict_at=local("2026-12-01T17:04:59"),
        ongoing_outage_started_at=None,
    )
    # LAB-PC05's samples from before its reboot (08:04:22 report up to 09:00) came
    # with the next boot's report and were placed by its last measured skew.
    # Its last three cycles (17:02-17:04) never left its outbox before shutdown.
    assert sim.methods == {"monotonic": (11 * 610 + 70 + 480) * 3, "skew": 55 * 3}


def test_all_pcs_off_on_saturday_afternoon_is_no_device_not_downtime():
    """PCs switched off at 11:35 on Saturday until Monday leave the Saturday afternoon
    session as 'no device on', with no downtime and no outage."""
    case = load_case("net-all-pcs-off")
    sim = simulate(case)

    result = uptime_of(case, sim)

    session = 9000.0 + 12600.0 + 4 * 28800.0 + 28800.0 + 7200.0
    assert result == Uptime(
        window_start=local("2026-11-30T09:00:00"),
        window_end=local("2026-12-07T09:00:00"),
        session_seconds=session,
        up_seconds=session - 12600.0,
        down_seconds=0.0,
        no_device_seconds=12600.0,
        uptime_ratio=1.0,
        outages=(),
        internet_up_now=True,
        latest_verdict_at=local("2026-12-07T08:59:45"),
        ongoing_outage_started_at=None,
    )
    # Each evening's last 4 cycles (Saturday's last 5) came with the next boot's report.
    assert sim.methods == {"monotonic": 3 * 3515 * 2 - 150, "skew": 3 * 25 * 2}


def test_collector_restart_keeps_offline_state_and_ongoing_outage_start():
    """Offline comes from the persisted last_seen, and the ongoing outage keeps the
    start it had before the restart, so its notification key does not change."""
    case = load_case("net-collector-restart")
    before = local("2026-12-01T08:30:00")
    after = local(case["now"])

    before_restart = uptime_of(case, simulate(case, until=before), now=before)
    after_restart = uptime_of(case, simulate(case), now=after)

    outage_start = local("2026-12-01T08:05:41")
    assert before_restart.ongoing_outage_started_at == outage_start
    assert after_restart.outages == (
        Outage(start=outage_start, end=None, in_session_seconds=2359.0),
    )
    assert after_restart.ongoing_outage_started_at == outage_start
    assert (after_restart.internet_up_now, after_restart.uptime_ratio) == (
        False,
        3941.0 / 6300.0,
    )


def test_school_silent_for_40_minutes_is_offline_before_and_after_restart():
    """A school silent for 40 minutes in session is offline from its persisted
    last_seen alone, whichever process computes it."""
    last_seen = local("2026-12-01T08:04:41")
    now = local("2026-12-01T08:45:00")

    verdicts = [
        offline_now(last_seen, True, now),
        offline_now(last_seen, True, now + timedelta(seconds=5)),
    ]

    assert verdicts == [True, True]


# --- rules ---


def sample(device, at, cycle, scope="internet", kind="https", ok=True):
    """A placed sample at local time ``at``."""
    return ProbeSample(device, local(at), cycle, scope, kind, ok)


def test_any_device_up_makes_the_school_up():
    """When one device reaches the Internet and another does not, the school is up."""
    samples = [
        sample("A", "2026-12-01T08:00:00", 1, ok=False),
        sample("B", "2026-12-01T08:00:30", 1, ok=True),
        sample("A", "2026-12-01T08:01:00", 2, ok=False),
        sample("B", "2026-12-01T08:01:30", 2, ok=True),
    ]
    sessions = [(local("2026-12-01T08:00"), local("2026-12-01T08:10"))]

    result = compute_uptime(
        samples, sessions, 60, local("2026-12-01T08:10"), timedelta(minutes=10)
    )

    assert (result.up_seconds, result.down_seconds, result.no_device_seconds) == (
        150.0,
        30.0,
        420.0,
    )
    assert result.outages == (
        Outage(local("2026-12-01T08:00:00"), local("2026-12-01T08:00:30"), 30.0),
    )


def test_cycle_without_internet_targets_is_judged_by_the_collector_probe():
    """A cycle with no internet-scope sample counts its collector https probe; dns and
    tcp never decide, and an internet target's failure is not hidden by the
    collector's success."""
    samples = [
        sample("A", "2026-12-01T08:00:00", 1, scope="collector", kind="dns"),
        sample("A", "2026-12-01T08:00:01", 1, scope="collector"),
        sample("B", "2026-12-01T08:02:00", 1, scope="collector"),
        sample("B", "2026-12-01T08:02:01", 1, scope="internet", ok=False),
        sample("C", "2026-12-01T08:04:00", 1, scope="internet", kind="tcp"),
    ]
    sessions = [(local("2026-12-01T08:00"), local("2026-12-01T08:06"))]

    result = compute_uptime(
        samples, sessions, 60, local("2026-12-01T08:06"), timedelta(minutes=6)
    )

    assert result.outages == (Outage(local("2026-12-01T08:02:00"), None, 180.0),)
    assert (result.up_seconds, result.down_seconds, result.no_device_seconds) == (
        90.0,
        180.0,
        90.0,
    )


def test_outage_over_lunch_is_one_outage_with_session_seconds():
    """A link down from 11:00 to 14:00 with PCs off over lunch is one outage whose
    duration counts only session time."""
    samples = [
        sample("A", f"2026-12-01T{hh}:{mm:02d}:00", f"{hh}{mm}", ok=not down)
        for hh, down in (("10", False), ("11", True), ("13", True), ("14", False))
        for mm in range(60)
        if not (hh == "11" and mm >= 40)
    ]
    sessions = [
        (local("2026-12-01T07:00"), local("2026-12-01T11:30")),
        (local("2026-12-01T13:30"), local("2026-12-01T17:00")),
    ]

    result = compute_uptime(
        samples, sessions, 60, local("2026-12-01T15:00"), timedelta(hours=5)
    )

    assert result.outages == (
        Outage(local("2026-12-01T11:00"), local("2026-12-01T14:00"), 1800.0 + 1800.0),
    )
    assert (
        result.session_seconds,
        result.up_seconds,
        result.down_seconds,
        result.no_device_seconds,
    ) == (5400.0 + 5400.0, 3600.0 + 3600.0, 1800.0 + 1800.0, 0.0)


def test_outage_begun_before_the_window_is_marked_clipped():
    """An outage already going on at the window start starts there and says so."""
    samples = [
        sample("A", f"2026-12-01T08:{mm:02d}:00", mm, ok=mm >= 30) for mm in range(40)
    ]
    sessions = [(local("2026-12-01T07:00"), local("2026-12-01T11:30"))]

    result = compute_uptime(
        samples, sessions, 60, local("2026-12-01T08:40"), timedelta(minutes=30)
    )

    assert result.outages == (
        Outage(local("2026-12-01T08:10"), local("2026-12-01T08:30"), 1200.0, True),
    )


def test_samples_placed_after_now_are_left_out():
    """A sample placed after ``now`` neither covers time nor counts as latest."""
    samples = [
        sample("A", "2026-12-01T08:00:00", 1, ok=False),
        sample("B", "2026-12-01T08:30:00", 1, ok=True),
    ]
    sessions = [(local("2026-12-01T07:00"), local("2026-12-01T11:30"))]

    result = compute_uptime(
        samples, sessions, 60, local("2026-12-01T08:10"), timedelta(hours=1)
    )

    assert (
        result.up_seconds,
        result.down_seconds,
        result.internet_up_now,
        result.latest_verdict_at,
        result.ongoing_outage_started_at,
    ) == (0.0, 90.0, False, local("2026-12-01T08:00:00"), local("2026-12-01T08:00"))


def test_school_without_samples_has_unknown_uptime():
    """No samples: all session time is 'no device on' and the ratio is unknown."""
    sessions = [(local("2026-12-01T07:00"), local("2026-12-01T11:30"))]

    result = compute_uptime([], sessions, 60, local("2026-12-01T12:00"))

    assert result == Uptime(
        window_start=local("2026-11-24T12:00"),
        window_end=local("2026-12-01T12:00"),
        session_seconds=16200.0,
        up_seconds=0.0,
        down_seconds=0.0,
        no_device_seconds=16200.0,
        uptime_ratio=None,
        outages=(),
        internet_up_now=None,
        latest_verdict_at=None,
        ongoing_outage_started_at=None,
    )


@pytest.mark.parametrize(
    ("last_seen", "in_session", "expected"),
    [
        (None, True, True),
        (None, False, False),
        ("2026-12-01T09:45:01", True, False),
        ("2026-12-01T09:45:00", True, True),
        ("2026-12-01T07:00:00", False, False),
    ],
)
def test_offline_now_follows_the_spec(last_seen, in_session, expected):
    """Offline means in session and silent for 15 minutes, or never seen in session."""
    seen = None if last_seen is None else local(last_seen)

    assert offline_now(seen, in_session, local("2026-12-01T10:00")) is expected


@pytest.mark.parametrize(
    ("field_name", "value", "message"),
    [
        ("scope", "lan", "probe scope 'lan'"),
        ("kind", "icmp", "probe kind 'icmp'"),
    ],
)
def test_unknown_probe_scope_or_kind_is_rejected_by_name(field_name, value, message):
    """A sample with an unknown scope or kind is an error naming the value."""
    fields = {"scope": "internet", "kind": "https", field_name: value}
    bad = ProbeSample("A", local("2026-12-01T08:00"), 1, ok=True, **fields)

    with pytest.raises(ValueError, match=message):
        compute_uptime([bad], [], 60, local("2026-12-01T09:00"))


def test_non_positive_probe_interval_is_rejected():
    """A probe interval of 0 is refused with a message naming it."""
    with pytest.raises(ValueError, match="probe_interval 0 must be seconds > 0"):
        compute_uptime([], [], 0, local("2026-12-01T09:00"))
