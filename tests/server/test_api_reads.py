"""The read side of the HTTP API over a real uvicorn: school list, one school's full
figures with reasons and thresholds, outages, a device's compliance, the speed-test
endpoints behind the device credential."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from schoolmon.server.policy import GIB

from tests.server.test_metrics import lab_inventory, speedtest_json
from tests.support.collector import enroll, probe_json, report_json, wire_time

ZERO = {"online": 0, "seen_7d": 0}
NO_DEVICES = {"lab": ZERO, "office": ZERO, "teacher": ZERO, "other": ZERO}
THRESHOLDS = {
    "good_download_bytes_per_second": 2500000.0,
    "good_download_bytes_per_second_per_student": 6250.0,
    "lab_pcs_required_lower_secondary": 23.0,
    "lab_pcs_required_primary": 18.0,
    "min_logical_cpus": 2.0,
    "min_memory_bytes": 4294967296.0,
    "min_system_disk_bytes": 64e9,
    "moderate_download_bytes_per_second": 125000.0,
    "offline_after_seconds": 900.0,
    "per_student_above_students": 400.0,
    "preschool_min_devices": 1.0,
    "probe_interval_seconds": 300.0,
    "uptime_ratio": 0.95,
    "usable_memory_tolerance_bytes": 536870912.0,
    "window_seconds": 604800.0,
}


def bearer(device: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {device['credential']}"}


def post(http, device, clock, **parts) -> dict[str, Any]:
    answer = http.post(
        "/api/v1/reports", json=report_json(clock(), **parts), headers=bearer(device)
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def lab_pcs(http, registered, clock) -> dict[str, dict[str, Any]]:
    """Two lab PCs of C02 reported at 09:00: a good one that ran speed tests and
    an old one (2 GiB, Windows 7); the clock then stands at 09:05."""
    minutes = [clock() - timedelta(minutes=m) for m in range(10)]
    tests = [
        speedtest_json(1, minutes[9], 5e6, 1e6),
        speedtest_json(2, minutes[8], 3e6, 2e6),
        speedtest_json(3, minutes[7], 4e6, 1.5e6),
        speedtest_json(4, minutes[6], 9e6, 9e6, flags=["implausible_upload"]),
        speedtest_json(5, minutes[5], 1e6, 30e6),
        speedtest_json(6, minutes[4], None),
    ]
    pcs = {}
    for name, os_name, build, supported, cores, memory, bios in [
        ("good", "Microsoft Windows 10 Pro", "19045", True, 4, 8 * GIB, "2023-05-01"),
        (
            "old",
            "Microsoft Windows 7 Professional",
            "7601",
            False,
            2,
            2 * GIB,
            "2012-01-01",
        ),
    ]:
        pcs[name] = enroll(http, registered, "C02", hostname=f"LAB-{name.upper()}")
        inventory = lab_inventory(os_name, build, supported, cores, memory, bios)
        post(
            http,
            pcs[name],
            clock,
            inventory=inventory,
            probes=[probe_json(1, clock())],
            speedtests=tests if name == "good" else [],
        )
    clock.advance(minutes=5)
    return pcs


def test_school_list_shows_registry_and_summary_figures(http, registered, clock):
    """Every active school with its summary; a silent school is offline in session
    and its unknown figures are null, not 0."""
    device = enroll(http, registered, "C02")
    post(http, device, clock, probes=[probe_json(1, clock())])
    clock.advance(minutes=15)

    schools = http.get("/api/v1/schools").json()["schools"]

    silent = {
        "in_session": True,
        "last_seen": None,
        "offline_now": True,
        "internet_up": None,
        "devices": NO_DEVICES,
        "uptime_ratio": None,
        "connectivity_class": "unknown",
        "connected": False,
        "lab_equipped": False,
    }
    assert [(s["code"], s["name"], s["figures"]) for s in schools] == [
        ("C01", "Trường Tiểu học Cẩm Phúc", silent),
        (
            "C02",
            "Trường THCS Cẩm Phúc",
            {
                "in_session": True,
                "last_seen": "2026-12-01T02:00:00Z",
                "offline_now": True,
                "internet_up": True,
                "devices": NO_DEVICES | {"lab": {"online": 0, "seen_7d": 1}},
                "uptime_ratio": 1.0,
                "connectivity_class": "unknown",
                "connected": False,
                "lab_equipped": False,
            },
        ),
        ("C03", "Trường Mầm non Cẩm Điền", silent),
    ]


def test_one_school_has_every_figure_with_reasons_in_both_languages(
    http, lab_pcs, clock
):
    """GET /schools/{code}: uptime, class with medians of valid tests, connected and
    equipped lab with reasons in English and Vietnamese, thresholds in force."""
    body = http.get("/api/v1/schools/C02").json()

    unsupported = {
        "en": "1 on an OS no longer supported by its vendor (not counted against)",
        "vi": "1 máy dùng hệ điều hành đã hết hỗ trợ (không tính là không đạt)",
    }
    memory = {"en": "1 has under 4 GiB RAM", "vi": "1 máy có RAM dưới 4 GiB"}
    assert (body["code"], body["figures"], body["thresholds"]) == (
        "C02",
        {
            "in_session": True,
            "last_seen": "2026-12-01T02:00:00Z",
            "offline_now": False,
            "internet_up": True,
            "devices": NO_DEVICES | {"lab": {"online": 2, "seen_7d": 2}},
            "uptime_ratio": 1.0,
            "connectivity_class": "good",
            "connected": True,
            "lab_equipped": False,
            "at": "2026-12-01T02:05:00Z",
            "uptime": {
                "window": {
                    "start": "2026-11-24T02:05:00Z",
                    "end": "2026-12-01T02:05:00Z",
                },
                "ratio": 1.0,
                "session_seconds": 172800.0,
                "up_seconds": 300.0,
                "down_seconds": 0.0,
                "no_device_seconds": 172500.0,
                "outages": 0,
                "ongoing_outage_started_at": None,
                "latest_verdict_at": "2026-12-01T02:00:00Z",
            },
            "connectivity": {
                "class": "good",
                "median_download_bytes_per_second": 4e6,
                "median_upload_bytes_per_second": 1.5e6,
                "median_latency_seconds": 0.022,
                "valid_tests": 3,
                "excluded": {
                    "failed": 1,
                    "flagged": 2,
                    "outside_session": 0,
                    "outside_window": 0,
                },
                "good_threshold_bytes_per_second": 2.5e6,
                "moderate_threshold_bytes_per_second": 125000.0,
                "last_valid_test_at": "2026-12-01T01:53:00Z",
            },
            "connected_why": {
                "en": "uptime 100.0 % >= 95.0 %; connectivity class good",
                "vi": "thời gian có Internet 100,0 % ≥ 95,0 %; chất lượng kết nối tốt",
            },
            "lab": {
                "equipped": False,
                "compliant": 1,
                "required": 20,
                "why": {
                    "en": "1 of 20 required lab PCs compliant: "
                    + memory["en"]
                    + ", "
                    + unsupported["en"],
                    "vi": "1/20 máy phòng tin học theo yêu cầu đạt chuẩn: "
                    + memory["vi"]
                    + ", "
                    + unsupported["vi"],
                },
                "reasons": [memory, unsupported],
                "lab_pcs_compliant": 1,
                "lab_pcs_noncompliant": {
                    "cpu": 0,
                    "memory": 1,
                    "disk": 0,
                    "not_seen_7d": 0,
                    "no_internet": 0,
                },
                "lab_pcs_by_memory": {
                    "lt_4gib": 1,
                    "4_8gib": 0,
                    "ge_8gib": 1,
                    "unknown": 0,
                },
                "lab_pcs_by_os": {"unknown": 0, "Windows 10": 1, "Windows 7": 1},
                "lab_pcs_by_age": {"lt_5y": 1, "5_10y": 0, "ge_10y": 1, "unknown": 0},
                "pcs_seen": 2,
                "thresholds": {
                    "lab_pcs_required": 20.0,
                    "min_logical_cpus": 2.0,
                    "min_memory_bytes": 4294967296.0,
                    "usable_memory_tolerance_bytes": 536870912.0,
                    "min_system_disk_bytes": 64e9,
                    "window_seconds": 604800.0,
                },
            },
            "devices_unsupported_os": 1,
            "clock_skew_seconds": 0.0,
            "asset_events": {},
        },
        THRESHOLDS,
    )


def test_a_device_shows_its_compliance_and_why(http, lab_pcs):
    """GET /devices/{id}: the latest inventory plus each failed check with its value
    and limit, and the reasons in both languages."""
    body = http.get(f"/api/v1/devices/{lab_pcs['old']['device_id']}").json()

    assert (
        body["hostname"],
        sorted(body["inventory"]["sections"]),
        body["compliance"],
    ) == (
        "LAB-OLD",
        ["cpu", "disks", "memory", "os", "system"],
        {
            "compliant": False,
            "counts_for_lab": True,
            "failures": [
                {"reason": "memory", "value": 2 * GIB, "limit": 4 * GIB},
            ],
            "reasons": [
                {"en": "1 has under 4 GiB RAM", "vi": "1 máy có RAM dưới 4 GiB"},
                {
                    "en": "1 on an OS no longer supported by its vendor "
                    "(not counted against)",
                    "vi": "1 máy dùng hệ điều hành đã hết hỗ trợ "
                    "(không tính là không đạt)",
                },
            ],
            "unsupported_os": True,
            "logical_cpus": 2,
            "installed_memory_bytes": 2 * GIB,
            "usable_memory_bytes": None,
            "system_disk_bytes": 256 * 10**9,
            "os": "Microsoft Windows 7 Professional 10.0",
            "os_label": "Windows 7",
            "last_seen_at": "2026-12-01T02:00:00Z",
            "last_internet_at": "2026-12-01T02:00:00Z",
        },
    )


def test_a_device_without_inventory_fails_every_check_as_unknown(
    http, registered, clock
):
    """Unknown CPU, memory and disk fail with a null value, never pass or read 0."""
    device = enroll(http, registered, "C01", role="office")

    body = http.get(f"/api/v1/devices/{device['device_id']}").json()

    assert (body["inventory"], body["compliance"]) == (
        None,
        {
            "compliant": False,
            "counts_for_lab": False,
            "failures": [
                {"reason": "cpu", "value": None, "limit": 2},
                {"reason": "memory", "value": None, "limit": 4 * GIB},
                {"reason": "disk", "value": None, "limit": 64 * 10**9},
                {"reason": "not_seen_7d", "value": None, "limit": 604800.0},
            ],
            "reasons": [
                {"en": "1 with an unknown CPU count", "vi": "1 máy chưa rõ số CPU"},
                {"en": "1 with unknown RAM", "vi": "1 máy chưa rõ dung lượng RAM"},
                {
                    "en": "1 with an unknown system disk size",
                    "vi": "1 máy chưa rõ dung lượng ổ đĩa hệ thống",
                },
                {
                    "en": "1 not seen for 7 days",
                    "vi": "1 máy không hoạt động trong 7 ngày",
                },
            ],
            "unsupported_os": False,
            "logical_cpus": None,
            "installed_memory_bytes": None,
            "usable_memory_bytes": None,
            "system_disk_bytes": None,
            "os": None,
            "os_label": "unknown",
            "last_seen_at": None,
            "last_internet_at": None,
        },
    )


def test_outages_come_from_probe_samples_with_session_seconds(http, registered, clock):
    """A backfilled morning with the Internet down 08:10-08:30 gives one outage,
    its in-session seconds, and the window's no-device time."""
    device = enroll(http, registered, "C02")
    start = clock() - timedelta(hours=2)  # 07:00 local
    probes = [
        probe_json(n, start + timedelta(minutes=5 * n), ok=not 14 <= n <= 17)
        for n in range(25)
    ]
    post(http, device, clock, probes=probes)

    body = http.get("/api/v1/schools/C02/outages").json()

    assert body == {
        "school": "C02",
        "window": {"start": "2026-11-24T02:00:00Z", "end": "2026-12-01T02:00:00Z"},
        "session_seconds": 172800.0,
        "down_seconds": 1200.0,
        "no_device_seconds": 172800.0 - 7200.0,
        "outages": [
            {
                "start": "2026-12-01T01:10:00Z",
                "end": "2026-12-01T01:30:00Z",
                "in_session_seconds": 1200.0,
                "ongoing": False,
                "clipped_at_window_start": False,
            }
        ],
    }


def test_school_devices_and_events_of_a_fresh_device(http, registered, clock):
    """Devices hide the credential hash; a fresh device has no events or outages."""
    device = enroll(http, registered, "C02")

    devices = http.get("/api/v1/schools/C02/devices").json()
    outages = http.get("/api/v1/schools/C02/outages").json()
    events = http.get(f"/api/v1/devices/{device['device_id']}/events").json()

    assert (
        [(d["id"], "credential_hash" in d) for d in devices["devices"]],
        outages["outages"],
        outages["no_device_seconds"],
        events,
    ) == (
        [(device["device_id"], False)],
        [],
        172800.0,
        {"device": device["device_id"], "events": []},
    )


def test_unknown_school_reads_are_404_json(http):
    """Full figures and outages of an unknown school: 404 naming the code."""
    answers = [http.get("/api/v1/schools/C99"), http.get("/api/v1/schools/X/outages")]

    assert [(a.status_code, a.json()) for a in answers] == [
        (
            404,
            {
                "error": "unknown_school",
                "message": "school 'C99' is not in the registry",
            },
        ),
        (
            404,
            {"error": "unknown_school", "message": "school 'X' is not in the registry"},
        ),
    ]


def test_speed_test_endpoints_need_a_live_device_credential(http, registered, clock):
    """The collector backend's endpoints answer a device and refuse anyone else."""
    device = enroll(http, registered, "C02")
    revoked = enroll(http, registered, "C02")
    registered.revoke_device_credential(revoked["device_id"], clock())
    refusal = {
        "error": "unauthorized",
        "message": "speed-test endpoints need a device credential as "
        "'Authorization: Bearer ...'",
    }

    answers = [
        http.get("/api/v1/speedtest/latency", headers=bearer(device)),
        http.get("/api/v1/speedtest/download?bytes=1000", headers=bearer(device)),
        http.get("/api/v1/speedtest/latency", headers=bearer(revoked)),
        http.get("/api/v1/speedtest/latency", headers={"Authorization": "Bearer x"}),
        http.get("/api/v1/speedtest/latency"),
    ]

    assert [(a.status_code, len(a.content)) for a in answers[:2]] + [
        (a.status_code, a.json()) for a in answers[2:]
    ] == [(204, 0), (200, 1000)] + [(401, refusal)] * 3


def test_every_school_read_of_a_silent_district_keeps_wire_times(http, clock):
    """The list's and one school's instants are the wire's UTC form."""
    one = http.get("/api/v1/schools/C03").json()["figures"]

    assert (one["at"], one["uptime"]["window"]) == (
        wire_time(clock()),
        {"start": wire_time(clock() - timedelta(days=7)), "end": wire_time(clock())},
    )
