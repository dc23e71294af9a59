"""Policy verdicts: connectivity class, connected school, equipped lab."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from schoolmon.server.clock import parse_wire
from schoolmon.server.config import config_from_mapping
from schoolmon.server.policy import (
    GIB,
    ConnectedVerdict,
    ConnectivityVerdict,
    DeviceFacts,
    DeviceResult,
    Failure,
    LabVerdict,
    Policy,
    School,
    SpeedTest,
    Text,
    connected,
    connectivity,
    lab_verdict,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "assets"
NOW = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def speed_tests(entries: list[dict[str, Any]]) -> list[SpeedTest]:
    return [
        SpeedTest(**{**e, "at": parse_wire(e["at"]), "flags": tuple(e["flags"])})
        for e in entries
    ]


def facts(entry: dict[str, Any]) -> DeviceFacts:
    times = {k: parse_wire(entry[k]) for k in ("last_seen_at", "last_internet_at")}
    return DeviceFacts(**{**entry, **times})


def test_flagged_failed_and_off_session_tests_are_left_out_of_the_class():
    """Only valid in-session tests of the window count (net-upload-above-link)."""
    case = load("net-upload-above-link")

    verdict = connectivity(
        speed_tests(case["tests"]), now=NOW, students=case["students"]
    )

    assert verdict == ConnectivityVerdict(
        connectivity_class="good",
        median_download_bytes_per_second=3500000.0,
        median_upload_bytes_per_second=1200000.0,
        median_latency_seconds=0.021,
        valid_tests=3,
        excluded={"failed": 1, "flagged": 1, "outside_session": 1, "outside_window": 1},
        good_threshold_bytes_per_second=3375000.0,
        moderate_threshold_bytes_per_second=125000.0,
    )


@pytest.mark.parametrize(
    ("students", "download", "expected", "good_threshold"),
    [
        (None, 2_500_000, "good", 2_500_000),
        (300, 2_499_999, "moderate", 2_500_000),
        (700, 4_000_000, "moderate", 4_375_000),
        (700, 4_375_000, "good", 4_375_000),
        (120, 125_000, "moderate", 2_500_000),
        (120, 124_999, "poor", 2_500_000),
    ],
)
def test_class_thresholds_follow_the_student_count(
    students, download, expected, good_threshold
):
    """20 Mbit/s, or 50 kbit/s per student above 400 students; 1 Mbit/s moderate."""
    tests = [SpeedTest(NOW - timedelta(hours=2), True, float(download))]

    verdict = connectivity(tests, now=NOW, students=students)

    assert (verdict.connectivity_class, verdict.good_threshold_bytes_per_second) == (
        expected,
        good_threshold,
    )


def test_no_valid_test_is_class_unknown_not_zero():
    """Only failed tests in the window give class unknown and no medians."""
    tests = [SpeedTest(NOW - timedelta(hours=1), False, None)]

    verdict = connectivity(tests, now=NOW)

    assert verdict == ConnectivityVerdict(
        connectivity_class="unknown",
        median_download_bytes_per_second=None,
        median_upload_bytes_per_second=None,
        median_latency_seconds=None,
        valid_tests=0,
        excluded={"failed": 1, "flagged": 0, "outside_session": 0, "outside_window": 0},
        good_threshold_bytes_per_second=2500000.0,
        moderate_threshold_bytes_per_second=125000.0,
    )


def test_connected_needs_uptime_and_class():
    """Uptime over 95 % with a moderate class is connected, with bilingual reasons."""
    assert connected(0.973, "moderate") == ConnectedVerdict(
        connected=True,
        why=Text(
            "uptime 97.3 % >= 95.0 %; connectivity class moderate",
            "thời gian có Internet 97,3 % ≥ 95,0 %; chất lượng kết nối trung bình",
        ),
        uptime_ratio=0.973,
        connectivity_class="moderate",
        uptime_threshold=0.95,
    )


@pytest.mark.parametrize(
    ("uptime", "klass", "why_en"),
    [
        (0.941, "good", "uptime 94.1 % below 95.0 %; connectivity class good"),
        (0.99, "poor", "uptime 99.0 % >= 95.0 %; connectivity class poor"),
        (
            0.99,
            "unknown",
            "uptime 99.0 % >= 95.0 %; no valid speed test in 7 days",
        ),
        (
            None,
            "good",
            "uptime unknown (no session time measured); connectivity class good",
        ),
    ],
)
def test_not_connected_says_why(uptime, klass, why_en):
    """Low uptime, a poor or unknown class, or no uptime at all: not connected."""
    verdict = connected(uptime, klass)

    assert (verdict.connected, verdict.why.en) == (False, why_en)


def test_unknown_class_name_is_refused():
    """A class outside the closed list is an error naming it."""
    with pytest.raises(ValueError, match="'excellent' is unknown; accepted: good"):
        connected(0.99, "excellent")


def test_lab_of_23_with_14_compliant_is_not_equipped():
    """14 of 23: six 2 GB PCs and three silent PCs fail; old OS is only shown."""
    case = load("lab-lower-secondary-14-of-23")
    devices = [facts(entry) for entry in case["devices"]]

    verdict = lab_verdict(School(**case["school"]), devices, now=NOW)

    memory = Failure("memory", 2 * GIB, 4 * GIB)
    silent = Failure("not_seen_7d", datetime(2026, 11, 20, 2, tzinfo=UTC), WEEK)
    assert verdict == LabVerdict(
        school="C02",
        equipped=False,
        compliant=14,
        required=23,
        why=Text(
            "14 of 23 required lab PCs compliant: 6 have under 4 GiB RAM, "
            "3 not seen for 7 days, "
            "8 on an OS no longer supported by its vendor (not counted against)",
            "14/23 máy phòng tin học theo yêu cầu đạt chuẩn: 6 máy có RAM dưới 4 GiB, "
            "3 máy không hoạt động trong 7 ngày, "
            "8 máy dùng hệ điều hành đã hết hỗ trợ (không tính là không đạt)",
        ),
        reasons=(
            Text("6 have under 4 GiB RAM", "6 máy có RAM dưới 4 GiB"),
            Text("3 not seen for 7 days", "3 máy không hoạt động trong 7 ngày"),
            Text(
                "8 on an OS no longer supported by its vendor (not counted against)",
                "8 máy dùng hệ điều hành đã hết hỗ trợ (không tính là không đạt)",
            ),
        ),
        noncompliant={
            "cpu": 0,
            "memory": 6,
            "disk": 0,
            "not_seen_7d": 3,
            "no_internet": 0,
        },
        devices=tuple(
            [DeviceResult(f"d_lab{i:02d}", True, (), i <= 2) for i in range(1, 15)]
            + [
                DeviceResult(f"d_lab{i:02d}", False, (memory,), True)
                for i in range(15, 21)
            ]
            + [
                DeviceResult(f"d_lab{i:02d}", False, (silent,), False)
                for i in range(21, 24)
            ]
        ),
        unsupported_os=8,
        pcs_seen=21,
        pcs_per_student=21 / 540,
        thresholds={
            "lab_pcs_required": 23.0,
            "min_logical_cpus": 2.0,
            "min_memory_bytes": 4294967296.0,
            "usable_memory_tolerance_bytes": 536870912.0,
            "min_system_disk_bytes": 64e9,
            "window_seconds": 604800.0,
        },
    )


def test_whitebox_windows7_pc_fails_only_for_memory():
    """The white-box Windows 7 PC of the Windows cases is below spec for memory only."""
    case = load("windows-whitebox-win7-lab")
    device = DeviceFacts.from_sections(
        "d_pc07",
        "lab",
        case["sections"],
        last_seen_at=parse_wire(case["last_seen_at"]),
        last_internet_at=parse_wire(case["last_internet_at"]),
    )
    school = School("C01", "primary", has_informatics=True, lab_pcs_required=1)

    verdict = lab_verdict(school, [device], now=NOW)

    assert device == DeviceFacts(
        device_id="d_pc07",
        role="lab",
        last_seen_at=datetime(2026, 12, 3, 3, 50, tzinfo=UTC),
        last_internet_at=datetime(2026, 12, 3, 3, 50, tzinfo=UTC),
        logical_cpus=2,
        installed_memory_bytes=2147483648,
        usable_memory_bytes=2136539136,
        system_disk_bytes=500105249280,
        os_name="Microsoft Windows 7 Ultimate 6.1.7601",
        os_vendor_supported=False,
    )
    assert verdict.devices == (
        DeviceResult("d_pc07", False, (Failure("memory", 2 * GIB, 4 * GIB),), True),
    )
    assert (verdict.equipped, verdict.why.en) == (
        False,
        "0 of 1 required lab PCs compliant: 1 has under 4 GiB RAM, "
        "1 on an OS no longer supported by its vendor (not counted against)",
    )


def test_vm_with_2_gib_installed_fails_memory_whatever_it_can_use():
    """inv-vm-memory: installed 2 GiB decides, not the 1.7 GiB the OS can use."""
    case = load("inv-vm-memory")
    device = DeviceFacts.from_sections(
        "d_vm", "lab", case["run_1"], last_seen_at=NOW, last_internet_at=NOW
    )

    verdict = lab_verdict(
        School("C01", "primary", lab_pcs_required=1), [device], now=NOW
    )

    assert (device.installed_memory_bytes, device.usable_memory_bytes) == (
        2147483648,
        1816133632,
    )
    assert verdict.devices == (
        DeviceResult("d_vm", False, (Failure("memory", 2 * GIB, 4 * GIB),), False),
    )


@pytest.mark.parametrize(
    ("installed", "usable", "failure"),
    [
        (None, int(3.6 * GIB), None),
        (None, int(3.4 * GIB), Failure("memory", int(3.4 * GIB), int(3.5 * GIB))),
        (4 * GIB, int(3.2 * GIB), None),
        (3 * GIB, int(2.9 * GIB), Failure("memory", 3 * GIB, 4 * GIB)),
        (None, None, Failure("memory", None, 4 * GIB)),
    ],
)
def test_memory_check_uses_installed_else_usable_with_tolerance(
    installed, usable, failure
):
    """Installed RAM decides when known; else usable RAM with a 512 MiB tolerance."""
    device = DeviceFacts(
        "d_a", "lab", NOW, NOW, 2, installed, usable, 128 * 10**9, "Ubuntu 22.04", True
    )

    verdict = lab_verdict(
        School("C01", "primary", lab_pcs_required=1), [device], now=NOW
    )

    assert verdict.devices[0].failures == ((failure,) if failure else ())


def test_unknown_values_and_no_internet_fail_with_their_own_reasons():
    """Unknown CPU and disk fail as unknown; seen without Internet is no_internet."""
    device = DeviceFacts("d_a", "lab", NOW, NOW - 8 * timedelta(days=1), None, 4 * GIB)

    verdict = lab_verdict(
        School("C01", "primary", lab_pcs_required=1), [device], now=NOW
    )

    assert verdict.why == Text(
        "0 of 1 required lab PCs compliant: 1 with an unknown CPU count, "
        "1 with an unknown system disk size, 1 did not reach the Internet for 7 days",
        "0/1 máy phòng tin học theo yêu cầu đạt chuẩn: 1 máy chưa rõ số CPU, "
        "1 máy chưa rõ dung lượng ổ đĩa hệ thống, "
        "1 máy không vào được Internet trong 7 ngày",
    )
    assert verdict.noncompliant == {
        "cpu": 1,
        "memory": 0,
        "disk": 1,
        "not_seen_7d": 0,
        "no_internet": 1,
    }


@pytest.mark.parametrize(
    ("school", "why_en"),
    [
        (
            School("C05", "primary", has_informatics=False),
            "No equipped-lab target: the school does not teach Informatics",
        ),
        (
            School("C06", "upper_secondary"),
            "No equipped-lab target for level upper_secondary",
        ),
    ],
)
def test_school_without_a_target_has_equipped_none(school, why_en):
    """No Informatics or another level: equipped is None, not False."""
    verdict = lab_verdict(school, [], now=NOW)

    assert (verdict.equipped, verdict.required, verdict.why.en) == (None, None, why_en)


def test_level_default_applies_without_a_registry_count():
    """A primary school without lab_pcs_required needs 18 compliant lab PCs."""
    device = DeviceFacts("d_a", "lab", NOW, NOW, 4, 8 * GIB, None, 256 * 10**9)

    verdict = lab_verdict(School("C01", "primary"), [device], now=NOW)

    assert (verdict.equipped, verdict.compliant, verdict.required) == (False, 1, 18)


def test_preschool_needs_one_computer_with_internet():
    """A preschool is equipped with one device of any role seen with Internet."""
    office = DeviceFacts("d_office", "office", NOW, NOW - timedelta(hours=3))

    verdict = lab_verdict(School("C07", "preschool", students=150), [office], now=NOW)

    assert verdict == LabVerdict(
        school="C07",
        equipped=True,
        compliant=1,
        required=1,
        why=Text(
            "1 of 1 required PCs seen with Internet in 7 days "
            "(preschool: computers and Internet)",
            "1/1 máy tính theo yêu cầu hoạt động và có Internet trong 7 ngày "
            "(mầm non: có máy tính và Internet)",
        ),
        reasons=(),
        noncompliant={
            "cpu": 0,
            "memory": 0,
            "disk": 0,
            "not_seen_7d": 0,
            "no_internet": 0,
        },
        devices=(),
        unsupported_os=0,
        pcs_seen=1,
        pcs_per_student=1 / 150,
        thresholds={"preschool_min_devices": 1.0, "window_seconds": 604800.0},
    )


def test_policy_from_configuration_carries_the_district_values():
    """Changed thresholds in the collector's configuration reach the verdicts."""
    config = config_from_mapping(
        {
            "policy": {"good_download_mbps": 30, "connected_uptime_ratio": 0.9},
            "lab": {"min_memory_gib": 8, "pcs_required": {"primary": 20}},
        }
    )

    policy = Policy.from_config(config)

    assert policy.thresholds() == {
        "window_seconds": 604800.0,
        "good_download_bytes_per_second": 3750000.0,
        "good_download_bytes_per_second_per_student": 6250.0,
        "per_student_above_students": 400.0,
        "moderate_download_bytes_per_second": 125000.0,
        "uptime_ratio": 0.9,
        "min_logical_cpus": 2.0,
        "min_memory_bytes": 8589934592.0,
        "usable_memory_tolerance_bytes": 536870912.0,
        "min_system_disk_bytes": 64e9,
        "preschool_min_devices": 1.0,
        "lab_pcs_required_lower_secondary": 23.0,
        "lab_pcs_required_primary": 20.0,
    }
