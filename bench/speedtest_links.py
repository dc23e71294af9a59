"""Speed-test accuracy on emulated school links: measured vs shaped rate.

Run as root from the repository root::

    python -m bench.speedtest_links [--rates 20,100] [--seconds 8] [--st-length 10]

Each row is one test across a fresh emulated link (tests/netlab/netns.py): the
backend, the shaped rate, measured download and upload with their error against
the shaped rate, latency, the bytes the test used and how long it took.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netlab import scenarios  # noqa: E402 - needs the repository on the path
from tests.netlab.netns import EmulatedLink, LinkSpec, unavailable_reason  # noqa: E402

HEADER = (
    f"{'backend':<14}{'shaped':>8}{'down':>9}{'err':>8}{'up':>9}{'err':>8}"
    f"{'latency':>10}{'bytes used':>13}{'took':>7}\n"
    f"{'':<14}{'Mbit/s':>8}{'Mbit/s':>9}{'%':>8}{'Mbit/s':>9}{'%':>8}"
    f"{'ms':>10}{'MB':>13}{'s':>7}\n"
)


def row(backend: str, spec: LinkSpec, result: dict) -> str:
    """One line of the table, or the failure reason."""
    if not result["ok"]:
        return f"{backend:<14}{spec.rate_mbit:>8g}  failed: {result['reason']}\n"
    down = result["download_bytes_per_second"] * 8 / 1e6
    up = result["upload_bytes_per_second"] * 8 / 1e6
    return (
        f"{backend:<14}{spec.rate_mbit:>8g}"
        f"{down:>9.2f}{(down / spec.rate_mbit - 1) * 100:>+8.1f}"
        f"{up:>9.2f}{(up / spec.rate_mbit - 1) * 100:>+8.1f}"
        f"{result['latency_seconds'] * 1e3:>10.1f}"
        f"{result['bytes_used'] / 1e6:>13.1f}{result['duration_seconds']:>7.1f}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20,100", help="Mbit/s, comma-separated")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--backends", default="collector,speedtest-net")
    parser.add_argument("--seconds", type=float, default=8.0, help="collector window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--st-length", type=int, default=10, help="speedtest.net")
    args = parser.parse_args()

    reason = unavailable_reason()
    if reason is not None:
        sys.stderr.write(f"cannot build emulated links: {reason}\n")
        return 2
    os.environ["SCHOOLMON_NETLAB_SECONDS"] = str(args.seconds)
    os.environ["SCHOOLMON_NETLAB_WARMUP"] = str(args.warmup)
    os.environ["SCHOOLMON_NETLAB_ST_LENGTH"] = str(args.st_length)

    sys.stdout.write(HEADER)
    for rate in (float(value) for value in args.rates.split(",")):
        spec = LinkSpec(rate, args.delay_ms)
        for backend in args.backends.split(","):
            test = {
                "collector": scenarios.collector_test,
                "speedtest-net": scenarios.speedtest_net_test,
            }[backend]
            with EmulatedLink(spec) as link:
                sys.stdout.write(row(backend, spec, test(link)))
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
