"""Field cases of the headline figures, end to end: simulated agents probe into
outboxes and report over real HTTP to a real collector whose clock the test moves;
the figures are read back from the API and /metrics.

Cases: net-outage-backfill, net-all-pcs-off, net-collector-restart (a real collector
process restarted), mon-local-school-hours, mon-silent-school-still-exported.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from schoolmon.server.api import create_app
from schoolmon.server.clock import ManualClock, utcnow
from schoolmon.server.config import config_from_mapping, load_config
from schoolmon.server.figures import DEVICE_STATES
from schoolmon.server.metrics import SCHOOL_GAUGES, SCHOOL_LABELLED

from tests.server.test_metrics import samples, scrape
from tests.support.collector import (
    collector_in_thread,
    collector_process,
    enroll,
    probe_json,
    report_json,
    wire_time,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "figures"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
MONOTONIC_AT_POWER_ON = 50.0


def local(text: str) -> datetime:
    """A wall time in Ho Chi Minh City as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=HCM).astimezone(UTC)


def wire_local(text: str) -> str:
    return wire_time(local(text))


@pytest.fixture
def config() -> Any:
    """Agents probe every minute in these cases."""
    return config_from_mapping(
        {"server": {"report_interval_seconds": 60, "report_jitter_seconds": 5}}
    )


# Simulated agents ---------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One report as it reaches the collector."""

    received_at: datetime
    device: str
    body: dict[str, Any]


def load_case(name: str) -> dict[str, Any]:
    return yaml.safe_load((FIXTURES / f"{name}.yaml").read_text(encoding="utf-8"))


def absolute(case: dict[str, Any]) -> dict[str, Any]:
    """The case with local wall times turned into UTC instants."""
    spans = {
        k: [(local(a), local(b)) for a, b in case[k]]
        for k in ("link_down", "internet_down")
    }
    devices = [
        d | {"powered": [(local(a), local(b)) for a, b in d["powered"]]}
        for d in case["devices"]
    ]
    return case | spans | {"devices": devices, "now": local(case["now"])}


def deliveries(case: dict[str, Any]) -> list[Delivery]:
    """Every report of every device, in the order the collector receives them."""
    found = [d for device in case["devices"] for d in _run_device(case, device)]
    return sorted(found, key=lambda d: (d.received_at, d.device))


def _run_device(case: dict[str, Any], device: dict[str, Any]) -> list[Delivery]:
    outbox: list[dict[str, Any]] = []
    found: list[Delivery] = []
    seq = 0
    for boot, (on, off) in enumerate(device["powered"]):
        boot_id, wall = f"{device['id']}-boot{boot}", _wall_clock(device, on)
        t, cycle = on + timedelta(seconds=device["phase_seconds"]), 0
        while t < min(off, case["now"]):
            monotonic = MONOTONIC_AT_POWER_ON + (t - on).total_seconds()
            for scope, kind in case["targets"]:
                seq += 1
                outbox.append(
                    probe_json(
                        seq, wall(t), run=boot_id, cycle=cycle, scope=scope, kind=kind,
                        ok=_reachable(case, scope, t), monotonic=monotonic,
                        boot_id=boot_id,
                    )
                )  # fmt: skip
            if _reports(case, cycle, t):
                body = report_json(
                    wall(t), sent_monotonic=monotonic, boot_id=boot_id, probes=outbox
                )
                received = t + timedelta(seconds=case["transit_seconds"])
                found.append(Delivery(received, device["id"], body))
                outbox = []
            t, cycle = t + timedelta(seconds=case["probe_interval_seconds"]), cycle + 1
        if outbox and off >= case["now"]:
            found += _last_report(case, device, on, boot_id, outbox)
    return found


def _last_report(
    case: dict[str, Any], device: dict[str, Any], on: datetime, boot_id: str, outbox
) -> list[Delivery]:
    """What a PC still on when the case ends sends just then (if its link is up)."""
    sent = case["now"] - timedelta(seconds=case["transit_seconds"])
    if _within(case["link_down"], sent):
        return []
    monotonic = MONOTONIC_AT_POWER_ON + (sent - on).total_seconds()
    wall = _wall_clock(device, on)(sent)
    body = report_json(wall, sent_monotonic=monotonic, boot_id=boot_id, probes=outbox)
    return [Delivery(case["now"], device["id"], body)]


def _wall_clock(device: dict[str, Any], on: datetime):
    if "clock_at_boot" in device:
        reset = datetime.fromisoformat(device["clock_at_boot"]).replace(tzinfo=UTC)
        return lambda t: reset + (t - on)
    offset = timedelta(seconds=device.get("clock_offset_seconds", 0))
    return lambda t: t + offset


def _within(spans: list[tuple[datetime, datetime]], t: datetime) -> bool:
    return any(lo <= t < hi for lo, hi in spans)


def _reachable(case: dict[str, Any], scope: str, t: datetime) -> bool:
    link_up = not _within(case["link_down"], t)
    return link_up and (scope == "collector" or not _within(case["internet_down"], t))


def _reports(case: dict[str, Any], cycle: int, t: datetime) -> bool:
    every = case["report_every_cycles"]
    return cycle % every == every - 1 and not _within(case["link_down"], t)


class School:
    """The case's devices enrolled at the collector, delivering in order."""

    def __init__(self, http, storage, clock, case: dict[str, Any]) -> None:
        self.http, self.clock, self.case = http, clock, case
        self.pending = deliveries(case)
        self.credentials = {
            d["id"]: enroll(
                http, storage, case["school"], d.get("role", "lab"), hostname=d["id"]
            )["credential"]
            for d in case["devices"]
        }

    def deliver_until(self, instant: datetime) -> None:
        """Post every report received up to ``instant``; leave the clock there."""
        while self.pending and self.pending[0].received_at <= instant:
            delivery = self.pending.pop(0)
            self.clock.set(delivery.received_at)
            headers = {"Authorization": f"Bearer {self.credentials[delivery.device]}"}
            answer = self.http.post(
                "/api/v1/reports", json=delivery.body, headers=headers
            )
            assert answer.status_code == 200, answer.text
        self.clock.set(instant)

    def figures(self) -> dict[str, Any]:
        return self.http.get(f"/api/v1/schools/{self.case['school']}").json()["figures"]


def probe_count(storage) -> int:
    return storage.db.execute("SELECT COUNT(*) FROM probe_samples").fetchone()[0]


# net-outage-backfill -----------------------------------------------------------------


def test_outage_backfill_gives_one_outage_and_offline_after_15_minutes(
    http, registered, clock
):
    """net-outage-backfill: offline from 15 minutes after the last report; after the
    link returns, the backlog arrives and the school shows one outage 08:05-10:40
    (within one probe interval) that uptime counts."""
    school = School(http, registered, clock, absolute(load_case("net-outage-backfill")))

    offline = []
    for at in ("08:19:58", "08:19:59", "10:40:00"):
        school.deliver_until(local(f"2026-12-01T{at}"))
        figures = school.figures()
        offline.append((at, figures["offline_now"], figures["last_seen"]))
    school.deliver_until(local("2026-12-01T11:00:00"))
    figures = school.figures()
    outages = http.get("/api/v1/schools/C02/outages").json()

    up = 14400.0 - 9245.0
    assert offline == [
        ("08:19:58", False, wire_local("2026-12-01T08:04:59")),
        ("08:19:59", True, wire_local("2026-12-01T08:04:59")),
        ("10:40:00", True, wire_local("2026-12-01T08:04:59")),
    ]
    # Samples are placed by the agents' monotonic clocks, 1 s (the transit) late.
    assert (figures["in_session"], figures["offline_now"], figures["uptime"]) == (
        True,
        False,
        {
            "window": {
                "start": wire_local("2026-11-24T11:00:00"),
                "end": wire_local("2026-12-01T11:00:00"),
            },
            "ratio": up / 14400.0,
            "session_seconds": 172800.0,
            "up_seconds": up,
            "down_seconds": 9245.0,
            "no_device_seconds": 172800.0 - 14400.0,
            "outages": 1,
            "ongoing_outage_started_at": None,
            "latest_verdict_at": wire_local("2026-12-01T10:59:59"),
        },
    )
    assert outages["outages"] == [
        {
            "start": wire_local("2026-12-01T08:05:59"),
            "end": wire_local("2026-12-01T10:40:04"),
            "in_session_seconds": 9245.0,
            "ongoing": False,
            "clipped_at_window_start": False,
        }
    ]
    # Every buffered sample arrived once: 11 PCs x 245 cycles, LAB-PC05 125 + 118.
    assert probe_count(registered) == (11 * 245 + 125 + 118) * 3


# net-all-pcs-off ---------------------------------------------------------------------


def test_all_pcs_off_is_no_device_time_not_downtime(http, registered, config, clock):
    """net-all-pcs-off: Saturday afternoon and the weekdays without a PC on are 'no
    device on', with no downtime and no outage; the dead-CMOS PC's skew shows."""
    school = School(http, registered, clock, absolute(load_case("net-all-pcs-off")))

    school.deliver_until(local("2026-12-05T14:00:00"))
    saturday = school.figures()
    school.deliver_until(local("2026-12-06T10:00:00"))
    sunday = school.figures()
    school.deliver_until(local("2026-12-07T09:00:00"))
    monday = school.figures()
    outages = http.get("/api/v1/schools/C02/outages").json()["outages"]

    skew = (
        datetime(2009, 1, 1, tzinfo=UTC) - local("2026-12-07T06:50")
    ).total_seconds()
    assert [(f["in_session"], f["offline_now"]) for f in (saturday, sunday)] == [
        (True, True),  # in session and silent since 11:35
        (False, False),
    ]
    assert (monday["uptime"], outages, monday["clock_skew_seconds"]) == (
        {
            "window": {
                "start": wire_local("2026-11-30T09:00:00"),
                "end": wire_local("2026-12-07T09:00:00"),
            },
            "ratio": 1.0,
            "session_seconds": 172800.0,
            "up_seconds": 16200.0 + 7200.0,
            "down_seconds": 0.0,
            "no_device_seconds": 172800.0 - 16200.0 - 7200.0,
            "outages": 0,
            "ongoing_outage_started_at": None,
            "latest_verdict_at": wire_local("2026-12-07T08:59:45"),
        },
        [],
        abs(skew - 1.0),
    )


# net-collector-restart ---------------------------------------------------------------


def restart_case(t0: datetime) -> dict[str, Any]:
    """The case with its minutes relative to ``t0`` turned into instants."""
    case = load_case("net-collector-restart")

    def at(minutes: float) -> datetime:
        return t0 + timedelta(minutes=minutes)

    devices = [
        d | {"powered": [(at(d["powered_minutes"][0]), at(d["powered_minutes"][1]))]}
        for d in case["devices"]
    ]
    return case | {
        "now": t0,
        "devices": devices,
        "link_down": [tuple(at(m) for m in case["link_down_minutes"])],
        "internet_down": [tuple(at(m) for m in case["internet_down_minutes"])],
    }


def school_view(url: str) -> dict[str, Any]:
    """What the collector at ``url`` says about C02's offline state and outages."""
    figures = httpx.get(f"{url}/api/v1/schools/C02", timeout=10).json()["figures"]
    outages = httpx.get(f"{url}/api/v1/schools/C02/outages", timeout=10).json()
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        "offline_now": figures["offline_now"],
        "last_seen": figures["last_seen"],
        "internet_up": figures["internet_up"],
        "ratio": figures["uptime"]["ratio"],
        "outages": outages["outages"],
        "outages_7d": samples(text, "schoolmon_school_outages_7d")[
            (("school", "C02"),)
        ],
    }


def test_restarted_collector_keeps_the_school_offline_and_the_outage_start(
    registered, db_path, tmp_path
):
    """net-collector-restart: a real collector process, restarted while C02 has been
    silent for 40 minutes, still shows it offline and the same ongoing outage."""
    t0 = utcnow().replace(second=0, microsecond=0)
    case = restart_case(t0)
    config_file = tmp_path / "collector.toml"
    config_file.write_text(case["config"], encoding="utf-8")
    config = load_config(config_file)
    clock = ManualClock(t0 - timedelta(minutes=101))
    app = create_app(config, registered, clock, rng=random.Random(7))
    with collector_in_thread(app) as url, httpx.Client(base_url=url) as http:
        School(http, registered, clock, case).deliver_until(t0)

    views = []
    for _ in range(2):
        with collector_process(db_path, config_file) as (url, _process):
            views.append(school_view(url))

    # Samples are placed by the agents' monotonic clocks, 1 s (the transit) late.
    on = t0 - timedelta(minutes=100) + timedelta(seconds=1)
    start, last_verdict = (
        on + timedelta(seconds=40 * 60 + 40),
        on + timedelta(seconds=59 * 60 + 40),
    )
    down = (last_verdict + timedelta(seconds=90) - start).total_seconds()
    up = (start - (on + timedelta(seconds=12))).total_seconds()
    assert (
        views
        == [
            {
                "offline_now": True,
                "last_seen": wire_time(last_verdict),
                "internet_up": False,
                "ratio": up / (up + down),
                "outages": [
                    {
                        "start": wire_time(start),
                        "end": None,
                        "in_session_seconds": down,
                        "ongoing": True,
                        "clipped_at_window_start": False,
                    }
                ],
                "outages_7d": 1.0,
            }
        ]
        * 2
    )


# mon-local-school-hours, mon-silent-school-still-exported ---------------------------


@pytest.mark.parametrize(
    ("at", "in_session"),
    [
        ("2026-12-01T06:59:59", 0.0),
        ("2026-12-01T07:00:00", 1.0),
        ("2026-12-01T11:29:59", 1.0),
        ("2026-12-01T11:30:00", 0.0),
        ("2026-12-01T13:30:00", 1.0),
        ("2026-12-05T16:59:59", 1.0),  # Saturday afternoon
        ("2026-12-06T09:00:00", 0.0),  # Sunday
        ("2026-12-02T09:00:00", 0.0),  # a configured holiday
    ],
)
def test_in_session_follows_local_school_hours(registered, clock, at, in_session):
    """mon-local-school-hours: the session edges are local times of the school's
    zone (07:00 local is 00:00 UTC); Sundays and holidays are out of session."""
    config = config_from_mapping({"sessions": {"holidays": ["2026-12-02"]}})
    clock.set(local(at))

    text = scrape(registered, config, clock)

    assert samples(text, "schoolmon_school_in_session") == {
        (("school", code),): in_session for code in ("C01", "C02", "C03")
    }


def test_silent_school_keeps_every_series_hours_later(http, registered, config, clock):
    """mon-silent-school-still-exported: a school that reported once at 07:30 keeps
    its 07:30 last-seen value and a series in every per-school family at 12:30."""
    clock.set(local("2026-12-01T07:30:00"))
    device = enroll(http, registered, "C01")
    answer = http.post(
        "/api/v1/reports",
        json=report_json(clock(), probes=[probe_json(1, clock())]),
        headers={"Authorization": f"Bearer {device['credential']}"},
    )
    assert answer.status_code == 200, answer.text
    clock.set(local("2026-12-01T12:30:00"))

    text = scrape(registered, config, clock)

    families = ["schoolmon_school_info"]
    families += [f"schoolmon_{name}" for name, _, _ in SCHOOL_GAUGES]
    families += [f"schoolmon_{name}" for name, _, _, _ in SCHOOL_LABELLED]
    families += ["schoolmon_asset_events"]
    with_c01 = {
        f for f in families if any(("school", "C01") in k for k in samples(text, f))
    }
    assert (
        with_c01,
        samples(text, "schoolmon_school_last_seen_timestamp_seconds")[
            (("school", "C01"),)
        ],
        len(samples(text, "schoolmon_school_devices")),
    ) == (
        set(families),
        local("2026-12-01T07:30:00").timestamp(),
        3 * 4 * len(DEVICE_STATES),
    )
