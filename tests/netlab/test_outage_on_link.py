"""Case net-outage-backfill on an emulated link, compressed in time: real agents
probe through the school's link every 10 s, the link is cut for four probe
intervals in session and restored, and the real collector must show one outage at
the true times, count it in the uptime, and hold every buffered sample once.

The collector runs on real time; its timetable makes every hour a session hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab.matchers import Between
from tests.netlab.netns import unavailable_reason
from tests.netlab.school import (
    Delivery,
    OutageRun,
    SchoolSetup,
    collector_config,
    run_outage,
    school_behind_link,
    wall_time,
)

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        unavailable_reason() is not None, reason=str(unavailable_reason())
    ),
]

AGENTS = 3
INTERVAL = 10  # the smallest probe interval the agent's configuration accepts
CUT = 4 * INTERVAL
SLACK = 1.0  # seconds: an agent cycle's own duration and the wire's rounding


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageRun]:
    """One run of the scenario, shared by the assertions of this module."""
    workdir: Path = tmp_path_factory.mktemp("outage")
    toml = collector_config(INTERVAL, slots_per_day=0)
    setup = SchoolSetup(AGENTS, INTERVAL, toml)  # timeouts scaled down likewise
    with school_behind_link(workdir, setup) as school:
        yield run_outage(school, CUT)


def test_the_cut_shows_as_one_outage_at_the_true_times(outage: OutageRun) -> None:
    """The outages API lists one ended outage starting within one probe interval
    after the cut and ending within one after the restore."""
    start, end = outage.cut_at, outage.restored_at

    assert [_in_wall_time(listed) for listed in outage.outages] == [
        {
            "start": Between(start - SLACK, start + INTERVAL + SLACK),
            "end": Between(end - SLACK, end + INTERVAL + SLACK),
            "in_session_seconds": Between(
                CUT - INTERVAL - SLACK, CUT + INTERVAL + SLACK
            ),
            "ongoing": False,
            "clipped_at_window_start": False,
        }
    ]


def _in_wall_time(outage: dict) -> dict:
    """An outage of the API with its start and end as wall times."""
    ends = {key: outage[key] and wall_time(outage[key]) for key in ("start", "end")}
    return outage | ends


def test_uptime_counts_the_outage_as_down_time(outage: OutageRun) -> None:
    """Down time is the outage's duration; the ratio is up / (up + down) in the API
    and in the metric, within one probe interval of the true cut."""
    uptime, listed = outage.uptime, outage.outages[0]
    up, down = uptime["up_seconds"], uptime["down_seconds"]
    observed = up + down
    true_ratio = (observed - CUT) / observed
    margin = (INTERVAL + SLACK) / observed

    assert (down, uptime["ratio"], uptime["outages"]) == (
        listed["in_session_seconds"],
        pytest.approx(up / (up + down)),
        1,
    )
    assert outage.uptime_ratio_metric == Between(
        true_ratio - margin, true_ratio + margin
    )


def test_every_buffered_sample_arrives_once_and_in_order(outage: OutageRun) -> None:
    """Each agent's samples of the down cycles were delivered after the restore:
    none lost, none doubled, none left queued, placed in seq order."""
    cycles = Between(CUT / INTERVAL - 1.5, CUT / INTERVAL + 0.5)

    assert outage.deliveries == {
        device: Delivery(
            issued=row.issued,
            stored=row.issued,
            lost=(),
            queued=0,
            dropped=0,
            doubled=0,
            in_order=True,
            outage_cycles=cycles,
            outage_cycles_up=0,
        )
        for device, row in outage.deliveries.items()
    }
    assert len(outage.deliveries) == AGENTS


def test_last_seen_stops_advancing_during_the_cut(outage: OutageRun) -> None:
    """The school's last-seen metric (what SchoolOffline fires on) is frozen at
    the cut while the link is down and moves past the restore once it is back."""
    during, frozen = outage.last_seen_during_cut

    assert (during, frozen, outage.last_seen_after) == (
        Between(outage.cut_at - INTERVAL - SLACK, outage.cut_at + SLACK),
        during,
        Between(outage.restored_at, outage.restored_at + 3 * INTERVAL),
    )
