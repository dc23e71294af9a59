"""Case net-one-test-per-school on an emulated link: 25 real agents of one school
report when the day's first speed-test slot has opened, and exactly one of them is
told to run the test; it runs it against the collector across the 20 Mbit/s link
while the other 24 keep probing.

The slot's moment is drawn by the collector from a hash of the school and the day,
so the test chooses the session timetable that puts it a few seconds after the
collector starts, computed with the collector's own ``slot_plan``; it uses a time
zone in which the test runs around noon, so the session never crosses midnight.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from schoolmon.server.config import config_from_mapping
from schoolmon.server.ingest import session_today, speedtest_policy
from schoolmon.server.scheduling import Slot, slot_plan

from tests.netlab.matchers import Between
from tests.netlab.netns import LinkSpec, unavailable_reason
from tests.netlab.school import (
    COLLECTOR_PORT,
    WEEKDAYS,
    AgentRun,
    School,
    SchoolSetup,
    collector_config,
    default_timeouts,
    school_behind_link,
    wait_for_time,
    wall_time,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        unavailable_reason() is not None, reason=str(unavailable_reason())
    ),
]

AGENTS = 25
CODE = "C01"
INTERVAL = 60
SESSION = timedelta(minutes=30)  # one period today: three slots of ten minutes
LEAD = timedelta(seconds=20)  # from now to the slot's moment: link, collector, enroll
LINK = LinkSpec(20)


@dataclass(frozen=True)
class SlotRounds:
    """Two rounds of ``once`` by every PC after the slot's moment, and the DB."""

    slot: Slot
    devices: dict[int, str]
    first: dict[int, AgentRun]
    second: dict[int, AgentRun]
    speedtests: list[dict]
    cycles_per_device: dict[str, int]
    link_host: str


def noon_zone(at: datetime) -> str:
    """An ``Etc/GMT`` zone in which ``at`` falls between 11:30 and 12:30."""
    utc = at.astimezone(UTC)
    offset = max(-12, min(12, round(12 - utc.hour - utc.minute / 60)))
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def timetable_for(moment: datetime) -> tuple[str, Slot]:
    """Collector TOML whose first slot of today opens at ``moment``, and that slot
    as the collector will compute it."""
    zone = noon_zone(moment)
    policy = speedtest_policy(config_from_mapping({}))
    start = moment
    for _ in range(3):  # the moment's offset depends on the day of the start
        plan = slot_plan(CODE, [(start, start + SESSION)], policy)
        start = moment - (plan[0].moment - start)

    local = start.astimezone(ZoneInfo(zone))
    period = f"{local:%H:%M:%S}-{local + SESSION:%H:%M:%S}"
    toml = collector_config(
        INTERVAL, 3, timetable=dict.fromkeys(WEEKDAYS, [period]), timezone=zone
    )
    config = config_from_mapping(tomllib.loads(toml))
    today = session_today(config, {"code": CODE, "timezone": None}, moment)
    return toml, slot_plan(CODE, today, speedtest_policy(config))[0]


@pytest.fixture(scope="module")
def rounds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlotRounds]:
    """Build the school, wait for the slot's moment, run two rounds of ``once``."""
    moment = datetime.fromtimestamp(int(time.time()), UTC) + LEAD
    toml, slot = timetable_for(moment)
    assert slot.moment == moment, "the timetable puts the slot's moment at `moment`"
    workdir: Path = tmp_path_factory.mktemp("slot")
    # 25 first reports at once on two cores: the agent's own timeouts
    setup = SchoolSetup(AGENTS, INTERVAL, toml, default_timeouts(), LINK, CODE)
    with school_behind_link(workdir, setup) as school:
        assert _speedtests(school) == [], "nothing ran before the slot opened"
        wait_for_time(moment.timestamp())
        first = school.once()
        second = school.once()
        yield SlotRounds(
            slot=slot,
            devices=school.device_ids(),
            first=first,
            second=second,
            speedtests=_speedtests(school),
            cycles_per_device=_cycles(school),
            link_host=f"{school.link.collector_ip}:{COLLECTOR_PORT}",
        )


def _speedtests(school: School) -> list[dict]:
    columns = (
        "device", "ok", "reason", "backend", "tool", "server",
        "download_bytes_per_second", "upload_bytes_per_second", "flags", "placed_at",
    )  # fmt: skip
    rows = school.rows(
        f"SELECT {', '.join(columns)} FROM speedtests WHERE school = ?", CODE
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _cycles(school: School) -> dict[str, int]:
    rows = school.rows(
        "SELECT device, COUNT(DISTINCT run || '/' || cycle) FROM probe_samples "
        "WHERE school = ? GROUP BY device",
        CODE,
    )
    return dict(rows)


def test_exactly_one_pc_is_told_to_run_the_speed_test(rounds: SlotRounds) -> None:
    """Of 25 PCs reporting after the slot's moment, exactly one receives
    run_speedtest, and no PC receives it again in the second round."""
    told = {i: run.instructions for i, run in rounds.first.items() if run.instructions}
    again = [i for i, run in rounds.second.items() if run.instructions]

    assert (list(told.values()), again) == ([["run_speedtest"]], [])


def test_the_one_speed_test_ran_across_the_link_in_the_slot(rounds: SlotRounds) -> None:
    """The school has one stored speed test in the slot: the told PC's, a good
    collector-backend test of the shaped link."""
    told = [i for i, run in rounds.first.items() if run.instructions]
    shaped = LINK.rate_mbit * 1e6 / 8
    slot = rounds.slot
    server = {"id": None, "name": "collector", "host": rounds.link_host}

    assert [_parsed(row) for row in rounds.speedtests] == [
        {
            "device": rounds.devices[told[0]] if told else None,
            "ok": 1,
            "reason": None,
            "backend": "collector",
            "tool": "schoolmon",
            "server": server | {"sponsor": None},
            "download_bytes_per_second": Between(0.5 * shaped, 1.1 * shaped),
            "upload_bytes_per_second": Between(0.5 * shaped, 1.1 * shaped),
            "flags": [],
            "placed_at": Between(slot.moment.timestamp(), slot.end.timestamp()),
        }
    ]


def test_the_other_pcs_keep_probing(rounds: SlotRounds) -> None:
    """Every PC delivered both rounds and has two probe cycles stored."""
    runs = [*rounds.first.items(), *rounds.second.items()]
    failed = {i: run.stderr[-500:] for i, run in runs if run.returncode != 0}

    assert (failed, rounds.cycles_per_device) == (
        {},
        dict.fromkeys(rounds.devices.values(), 2),
    )


def _parsed(row: dict) -> dict:
    """A speedtests row with its JSON columns decoded and its time a wall time."""
    return row | {
        "server": json.loads(row["server"]) if row["server"] else None,
        "flags": json.loads(row["flags"]) if row["flags"] else [],
        "placed_at": wall_time(row["placed_at"]),
    }
