"""Outages on an emulated school link: reported vs true outage times, and delivery.

Run as root from the repository root::

    python -m bench.outage_links [--agents 3] [--interval 10] [--cut 40]
        [--side upstream|school] [--runs 1] [--timeouts CONNECT,PROBE,READ]

Each row is one run of the outage scenario of tests/netlab/test_outage_on_link.py
on a fresh school (tests/netlab/school.py): real agents probe through the link, the
link is cut for ``--cut`` seconds (``upstream``: the school's router answers
"network unreachable"; ``school``: packets vanish) and restored. The row gives the
outage the collector reports against the true cut and restore (start and end
errors, seconds), its down time and uptime ratio, the probe cycles each agent ran
inside the cut, and the samples the agents issued, the collector stored, lost,
doubled, left queued and received twice (duplicates it refused).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netlab.netns import unavailable_reason  # noqa: E402 - needs the repo path
from tests.netlab.school import (  # noqa: E402
    OutageRun,
    SchoolSetup,
    collector_config,
    run_outage,
    school_behind_link,
)

HEADER = (
    f"{'side':<9}{'agents':>7}{'interval':>9}{'cut':>6}{'outages':>8}"
    f"{'start err':>10}{'end err':>9}{'down':>7}{'ratio':>7}{'cycles in cut':>15}"
    f"{'issued':>8}{'stored':>7}{'lost':>5}{'doubled':>8}{'queued':>7}{'resent':>7}\n"
    f"{'':<9}{'':>7}{'s':>9}{'s':>6}{'':>8}{'s':>10}{'s':>9}{'s':>7}{'':>7}"
    f"{'per agent':>15}{'':>8}{'':>7}{'':>5}{'':>8}{'':>7}{'':>7}\n"
)


def row(side: str, agents: int, interval: int, cut: float, run: OutageRun) -> str:
    """One line of the table."""
    deliveries = run.deliveries.values()
    cycles = ",".join(str(d.outage_cycles) for d in deliveries)
    down = run.uptime["down_seconds"]
    ratio = run.uptime["ratio"]
    return (
        f"{side:<9}{agents:>7}{interval:>9}{cut:>6g}{len(run.outages):>8}"
        f"{_signed(run.start_error):>10}{_signed(run.end_error):>9}"
        f"{down:>7.1f}{ratio if ratio is not None else float('nan'):>7.3f}"
        f"{cycles:>15}"
        f"{sum(d.issued for d in deliveries):>8}{sum(d.stored for d in deliveries):>7}"
        f"{sum(len(d.lost) for d in deliveries):>5}"
        f"{sum(d.doubled for d in deliveries):>8}"
        f"{sum(d.queued for d in deliveries):>7}"
        f"{run.probe_duplicates_metric:>7g}\n"
    )


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--interval", type=int, default=10, help="seconds, >= 10")
    parser.add_argument("--cut", type=float, default=40.0, help="seconds")
    parser.add_argument("--side", choices=("upstream", "school"), default="upstream")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--timeouts", help="agent CONNECT,PROBE,READ seconds (default: scaled)"
    )
    args = parser.parse_args()

    reason = unavailable_reason()
    if reason is not None:
        sys.stderr.write(f"cannot build emulated links: {reason}\n")
        return 2
    timeouts = None
    if args.timeouts:
        connect, probe, read = (float(value) for value in args.timeouts.split(","))
        timeouts = (connect, probe, read)
    toml = collector_config(args.interval, slots_per_day=0)
    setup = SchoolSetup(args.agents, args.interval, toml, timeouts=timeouts)

    sys.stdout.write(HEADER)
    for _ in range(args.runs):
        with (
            tempfile.TemporaryDirectory(prefix="outage-bench-") as workdir,
            school_behind_link(Path(workdir), setup) as school,
        ):
            run = run_outage(school, args.cut, args.side)
        sys.stdout.write(row(args.side, args.agents, args.interval, args.cut, run))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
