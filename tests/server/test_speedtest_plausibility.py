"""Plausibility flags: results a school link cannot produce are kept but flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from schoolmon.server.speedtest import median_eligible, plausibility_flags

FIXTURES = Path(__file__).resolve().parents[1] / "netlab" / "fixtures"
GOOD = {
    "ok": True,
    "reason": None,
    "download_bytes_per_second": 2_500_000.0,
    "upload_bytes_per_second": 1_200_000.0,
    "latency_seconds": 0.021,
    "jitter_seconds": 0.003,
    "bytes_used": 52_000_000,
}


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "name",
    ["net-upload-above-link.json", "speedtest-cli-unreachable-sentinel.json"],
)
def test_field_cases_get_the_flags_that_keep_them_out_of_medians(name):
    """Each captured field case gets exactly its expected flags and no median."""
    case = load(name)

    flags = plausibility_flags(case["result"], case.get("contracted_download_mbps"))

    assert (flags, median_eligible(case["result"], flags)) == (
        case["expected_flags"],
        False,
    )


@pytest.mark.parametrize(
    ("changes", "contracted", "expected"),
    [
        ({}, 20.0, []),
        ({}, None, []),
        # 40 Mbit/s contracted = 5e6 B/s; upload just under and just over 2x that.
        ({"download_bytes_per_second": 5e6, "upload_bytes_per_second": 9.9e6}, 40, []),
        (
            {"download_bytes_per_second": 5e6, "upload_bytes_per_second": 10.1e6},
            40,
            ["implausible_upload"],
        ),
        # Unknown contract: upload over 5x the same test's download.
        ({"upload_bytes_per_second": 12.6e6}, None, ["implausible_upload"]),
        ({"upload_bytes_per_second": 12.4e6}, None, []),
        # A download above the contract is not flagged: registries lag upgrades.
        ({"download_bytes_per_second": 50e6, "upload_bytes_per_second": 5e6}, 40, []),
        ({"download_bytes_per_second": -1.0}, None, ["implausible_download"]),
        ({"download_bytes_per_second": 2e9}, None, ["implausible_download"]),
        ({"latency_seconds": 1800.0}, None, ["implausible_latency"]),
        ({"latency_seconds": -0.01}, None, ["implausible_latency"]),
        ({"latency_seconds": None}, None, ["implausible_latency"]),
        ({"jitter_seconds": None}, None, []),
        ({"jitter_seconds": -0.1}, None, ["implausible_jitter"]),
        ({"bytes_used": -3}, None, ["implausible_bytes_used"]),
        ({"upload_bytes_per_second": float("nan")}, None, ["implausible_upload"]),
    ],
)
def test_flags_name_each_figure_a_school_link_cannot_produce(
    changes, contracted, expected
):
    """Upload far above the link, sentinel or negative values are flagged by name."""
    assert plausibility_flags({**GOOD, **changes}, contracted) == expected


def test_a_failed_test_has_no_figures_to_flag_and_never_counts():
    """A failure carries a reason and nulls, so it gets no flags and no median."""
    failed = dict.fromkeys(GOOD, None) | {"ok": False, "reason": "server unreachable"}

    assert (plausibility_flags(failed, 40), median_eligible(failed, [])) == ([], False)


def test_a_plausible_result_counts_in_medians():
    """A good result without flags is eligible for medians and classes."""
    assert median_eligible(GOOD, plausibility_flags(GOOD, 20.0)) is True
