"""/metrics: exact samples, promtool, well-formed unique names, silent schools."""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from schoolmon.server.config import config_from_mapping
from schoolmon.server.figures import school_figures
from schoolmon.server.metrics import (
    SCHOOL_GAUGES,
    Pacer,
    accepts_gzip,
    new_registry,
    render,
)
from schoolmon.server.policy import GIB, NONCOMPLIANT_REASONS
from schoolmon.server.storage import Storage

from tests.support.collector import enroll, probe_json, report_json, wire_time
from tests.support.waiting import wait_until

NAME = re.compile(r"^schoolmon_[a-z][a-z0-9_]*[a-z0-9]$")


def samples(text: str, family: str) -> dict[tuple[tuple[str, str], ...], Any]:
    """The samples of one family as {sorted label pairs: value} ("NaN" for NaN)."""
    for metric in text_string_to_metric_families(text):
        if metric.name == family:
            return {
                tuple(sorted(s.labels.items())): "NaN"
                if math.isnan(s.value)
                else s.value
                for s in metric.samples
            }
    raise AssertionError(f"family {family} not exported")


def of_school(text: str, family: str, school: str) -> dict[tuple, Any]:
    """One school's samples of a family, keyed by its other labels."""
    return {
        tuple(pair for pair in key if pair[0] != "school"): value
        for key, value in samples(text, family).items()
        if ("school", school) in key
    }


def scrape(storage: Any, config: Any, clock: Any) -> str:
    return render(new_registry(storage, config, clock)).decode("utf-8")


def report_once(http, registered, clock, school: str = "C02") -> dict[str, Any]:
    device = enroll(http, registered, school)
    probes = [probe_json(1, clock()), probe_json(2, clock(), scope="collector")]
    answer = http.post(
        "/api/v1/reports",
        json=report_json(clock(), probes=probes),
        headers={"Authorization": f"Bearer {device['credential']}"},
    )
    assert answer.status_code == 200, answer.text
    return device


def per_school(c01: Any, c02: Any, c03: Any) -> dict[tuple, Any]:
    return {
        (("school", "C01"),): c01,
        (("school", "C02"),): c02,
        (("school", "C03"),): c03,
    }


# 7 days of default sessions before Tuesday 1 December 2026 09:05 local.
SESSION_SECONDS_7D = 172800.0


def test_exact_school_samples_of_a_small_district(http, registered, config, clock):
    """A reporting school and two silent ones: every per-school sample exact, unknown
    figures NaN, not 0."""
    device = report_once(http, registered, clock)
    registered.add_asset_event(
        device["device_id"], "C02", "component_removed", {}, clock()
    )
    clock.advance(minutes=5)
    seen = clock().timestamp() - 300

    text = scrape(registered, config, clock)

    nan3 = per_school("NaN", "NaN", "NaN")
    assert [
        samples(text, f"schoolmon_school_{name}")
        for name in (
            "in_session",
            "last_seen_timestamp_seconds",
            "internet_up",
            "internet_uptime_ratio",
            "download_bytes_per_second",
            "upload_bytes_per_second",
            "latency_seconds",
            "connected",
            "lab_equipped",
            "clock_skew_seconds",
            "devices_unsupported_os",
            "no_device_seconds",
            "outages_7d",
            "speedtest_last_timestamp_seconds",
        )
    ] == [
        per_school(1.0, 1.0, 1.0),
        per_school(0.0, seen, 0.0),
        per_school("NaN", 1.0, "NaN"),
        per_school("NaN", 1.0, "NaN"),
        nan3,
        nan3,
        nan3,
        per_school(0.0, 0.0, 0.0),
        per_school(0.0, 0.0, 0.0),
        per_school(0.0, 0.0, 0.0),
        per_school(0.0, 0.0, 0.0),
        per_school(SESSION_SECONDS_7D, SESSION_SECONDS_7D - 300, SESSION_SECONDS_7D),
        per_school(0.0, 0.0, 0.0),
        per_school(0.0, 0.0, 0.0),
    ]
    assert (
        {k: v for k, v in samples(text, "schoolmon_school_devices").items() if v},
        len(samples(text, "schoolmon_school_devices")),
        {k: v for k, v in samples(text, "schoolmon_asset_events").items() if v},
        len(samples(text, "schoolmon_asset_events")),
        samples(text, "schoolmon_district_schools"),
    ) == (
        {
            (("role", "lab"), ("school", "C02"), ("state", "online")): 1.0,
            (("role", "lab"), ("school", "C02"), ("state", "seen_7d")): 1.0,
        },
        3 * 4 * 2,
        {(("kind", "component_removed"), ("school", "C02")): 1.0},
        15,
        {
            (("level", "preschool"),): 1.0,
            (("level", "primary"),): 1.0,
            (("level", "lower_secondary"),): 1.0,
            (("level", "upper_secondary"),): 0.0,
            (("level", "other"),): 0.0,
        },
    )


def test_school_info_carries_coordinates_only_where_the_registry_has_them(
    registered, config, clock
):
    """schoolmon_school_info has one series per school with name, level and commune;
    latitude and longitude only for a school the registry places on the map."""
    placed = {"code": "C01", "latitude": 20.91718, "longitude": 106.20722}
    registered.import_schools([placed, {"code": "C02"}, {"code": "C03"}], clock())

    text = scrape(registered, config, clock)

    assert samples(text, "schoolmon_school_info") == {
        (
            ("commune", "Cẩm Phúc"),
            ("latitude", "20.91718"),
            ("level", "primary"),
            ("longitude", "106.20722"),
            ("name", "Trường Tiểu học Cẩm Phúc"),
            ("school", "C01"),
        ): 1.0,
        (
            ("commune", "Cẩm Phúc"),
            ("level", "lower_secondary"),
            ("name", "Trường THCS Cẩm Phúc"),
            ("school", "C02"),
        ): 1.0,
        (
            ("commune", "Cẩm Điền"),
            ("level", "preschool"),
            ("name", "Trường Mầm non Cẩm Điền"),
            ("school", "C03"),
        ): 1.0,
    }


def test_silent_schools_export_every_labelled_family(registered, config, clock):
    """Schools that never reported keep a series in every labelled family: class
    unknown, lab targets from the registry, empty buckets."""
    text = scrape(registered, config, clock)

    assert [
        of_school(text, f"schoolmon_school_{name}", school)
        for school in ("C01", "C03")
        for name in ("connectivity", "lab_pcs", "lab_pcs_noncompliant")
    ] + [
        of_school(text, f"schoolmon_school_lab_pcs_by_{name}", "C01")
        for name in ("memory", "os", "age")
    ] == [
        {
            (("class", "good"),): 0.0,
            (("class", "moderate"),): 0.0,
            (("class", "poor"),): 0.0,
            (("class", "unknown"),): 1.0,
        },
        {(("state", "compliant"),): 0.0, (("state", "required"),): 18.0},
        {(("reason", r),): 0.0 for r in NONCOMPLIANT_REASONS},
        {
            (("class", "good"),): 0.0,
            (("class", "moderate"),): 0.0,
            (("class", "poor"),): 0.0,
            (("class", "unknown"),): 1.0,
        },
        {(("state", "compliant"),): 0.0, (("state", "required"),): 0.0},
        {(("reason", r),): 0.0 for r in NONCOMPLIANT_REASONS},
        {(("bucket", b),): 0.0 for b in ("lt_4gib", "4_8gib", "ge_8gib", "unknown")},
        {(("os", "unknown"),): 0.0},
        {(("bucket", b),): 0.0 for b in ("lt_5y", "5_10y", "ge_10y", "unknown")},
    ]


def section(data: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()
    return {"status": "ok", "hash": digest, "data": data}


def lab_inventory(
    os_name: str, build: str, supported: bool, cores: int, memory: int, bios: str
) -> dict[str, Any]:
    """An inventory with the sections the lab figure reads."""
    sections = {
        "system": section({"hostname": "LAB", "bios_date": bios}),
        "cpu": section({"logical_cores": cores}),
        "memory": section({"installed_bytes": memory}),
        "disks": section({"physical": [{"index": 0, "size_bytes": 256 * 10**9}]}),
        "os": section(
            {"family": "windows", "name": os_name, "version": "10.0", "build": build}
            | {"vendor_supported": supported}
        ),
    }
    return {"hash": None, "sections": sections}


def speedtest_json(
    seq: int, at: Any, download: float | None, upload: float | None = None, **extra
) -> dict[str, Any]:
    """One speed test document (ok when it has a download figure)."""
    ok = download is not None
    return {
        "run": "run-a",
        "seq": seq,
        "wall_time": wire_time(at),
        "ok": ok,
        "reason": None if ok else "server unreachable",
        "backend": "speedtest-net",
        "download_bytes_per_second": download,
        "upload_bytes_per_second": upload,
        "latency_seconds": 0.02 + seq / 1000 if ok else None,
        "bytes_used": 10_000_000 if ok else 0,
        "flags": [],
    } | extra


def report_lab_pc(http, registered, clock, inventory, speedtests=()) -> None:
    device = enroll(http, registered, "C02")
    report = report_json(
        clock(),
        inventory=inventory,
        probes=[probe_json(1, clock())],
        speedtests=list(speedtests),
    )
    answer = http.post(
        "/api/v1/reports",
        json=report,
        headers={"Authorization": f"Bearer {device['credential']}"},
    )
    assert answer.status_code == 200, answer.text


def test_exact_samples_of_a_school_with_lab_pcs_and_speed_tests(
    http, registered, config, clock
):
    """Medians of valid session tests only, class, connected, lab PCs by reason,
    memory, OS and age, unsupported OS: every sample of C02 exact."""
    minutes = [clock() - timedelta(minutes=m) for m in range(10)]
    tests = [
        speedtest_json(1, minutes[9], 5e6, 1e6),
        speedtest_json(2, minutes[8], 3e6, 2e6),
        speedtest_json(3, minutes[7], 4e6, 1.5e6),
        speedtest_json(4, minutes[6], 9e6, 9e6, flags=["implausible_upload"]),
        speedtest_json(5, minutes[5], 1e6, 30e6),  # upload far above the download
        speedtest_json(6, minutes[4], None),
    ]
    good = lab_inventory(
        "Microsoft Windows 10 Pro", "19045", True, 4, 8 * GIB, "2023-05-01"
    )
    old = lab_inventory(
        "Microsoft Windows 7 Professional", "7601", False, 2, 2 * GIB, "2012-01-01"
    )
    report_lab_pc(http, registered, clock, good, tests)
    report_lab_pc(http, registered, clock, old)
    clock.advance(minutes=5)

    text = scrape(registered, config, clock)

    single = [
        "internet_uptime_ratio",
        "download_bytes_per_second",
        "upload_bytes_per_second",
        "latency_seconds",
        "connected",
        "lab_equipped",
        "devices_unsupported_os",
        "speedtest_last_timestamp_seconds",
    ]
    labelled = ["connectivity", "lab_pcs", "lab_pcs_noncompliant"]
    labelled += ["lab_pcs_by_memory", "lab_pcs_by_os", "lab_pcs_by_age"]
    assert [of_school(text, f"schoolmon_school_{n}", "C02") for n in single] == [
        {(): 1.0},
        {(): 4e6},
        {(): 1.5e6},
        {(): 0.022},
        {(): 1.0},
        {(): 0.0},
        {(): 1.0},
        {(): minutes[7].timestamp()},
    ]
    assert [of_school(text, f"schoolmon_school_{n}", "C02") for n in labelled] == [
        {
            (("class", "good"),): 1.0,
            (("class", "moderate"),): 0.0,
            (("class", "poor"),): 0.0,
            (("class", "unknown"),): 0.0,
        },
        {(("state", "compliant"),): 1.0, (("state", "required"),): 20.0},
        {
            (("reason", "cpu"),): 0.0,
            (("reason", "memory"),): 1.0,
            (("reason", "disk"),): 0.0,
            (("reason", "not_seen_7d"),): 0.0,
            (("reason", "no_internet"),): 0.0,
        },
        {
            (("bucket", "lt_4gib"),): 1.0,
            (("bucket", "4_8gib"),): 0.0,
            (("bucket", "ge_8gib"),): 1.0,
            (("bucket", "unknown"),): 0.0,
        },
        {
            (("os", "unknown"),): 0.0,
            (("os", "Windows 10"),): 1.0,
            (("os", "Windows 7"),): 1.0,
        },
        {
            (("bucket", "lt_5y"),): 1.0,
            (("bucket", "5_10y"),): 0.0,
            (("bucket", "ge_10y"),): 1.0,
            (("bucket", "unknown"),): 0.0,
        },
    ]


def test_promtool_finds_no_problem_in_a_real_scrape(http, registered, clock):
    """mon-no-timestamps-no-created: promtool check metrics is silent."""
    report_once(http, registered, clock)
    body = http.get("/metrics").content

    check = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60
    )

    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b"")


def test_every_family_is_unique_well_formed_without_timestamps_or_created(
    http, registered, clock
):
    """mon-name-clash: unique names, schoolmon_ prefix, _total only on counters."""
    report_once(http, registered, clock)
    families = list(text_string_to_metric_families(http.get("/metrics").text))
    names = [f.name for f in families]
    sample_names = {s.name for f in families for s in f.samples}

    problems = [n for n in names if not NAME.match(n)]
    problems += [n for n in names if names.count(n) > 1]
    problems += [n for n in sample_names if n.endswith("_created")]
    problems += [
        f.name for f in families if f.type != "counter" and f.name.endswith("_total")
    ]
    problems += [f"{n}_total" for n in names if f"{n}_total" in names]
    problems += [s.name for f in families for s in f.samples if s.timestamp is not None]
    expected_counters = {
        "schoolmon_asset_events",
        "schoolmon_reports_received",
        "schoolmon_samples_ingested",
        "schoolmon_http_requests",
    }
    counters = {f.name for f in families if f.type == "counter"}
    assert (problems, counters) == ([], expected_counters)


def test_silent_school_keeps_its_last_seen_series(http, registered, config, clock):
    """mon-silent-school-still-exported: the 07:30 value stays hours later."""
    clock.set(clock().replace(hour=0, minute=30))  # 07:30 local
    report_once(http, registered, clock, school="C01")
    seen = clock().timestamp()
    clock.advance(hours=5)

    text = scrape(registered, config, clock)

    assert samples(text, "schoolmon_school_last_seen_timestamp_seconds") == {
        (("school", "C01"),): seen,
        (("school", "C02"),): 0.0,
        (("school", "C03"),): 0.0,
    }


def test_utf8_labels_are_byte_exact(http, registered, clock):
    """inv-unicode: school names reach the labels with the same UTF-8 bytes."""
    body = http.get("/metrics").content

    assert [
        'name="Trường THCS Cẩm Phúc"'.encode() in body,
        'commune="Cẩm Điền"'.encode() in body,
    ] == [True, True]


def test_own_counters_never_go_backwards_across_restart(
    http, registered, config, clock, db_path
):
    """Counters live in the database: a reopened collector exports the same."""
    report_once(http, registered, clock)
    before = scrape(registered, config, clock)

    reopened = Storage(db_path)
    after = scrape(reopened, config, clock)
    reopened.close()

    families = ("schoolmon_reports_received", "schoolmon_samples_ingested")
    assert (
        [samples(after, f) for f in families]
        == [samples(before, f) for f in families]
        == [
            {(("result", "accepted"),): 1.0, (("result", "rejected"),): 0.0},
            {
                (("kind", "inventory"), ("outcome", "duplicate")): 0.0,
                (("kind", "inventory"), ("outcome", "stored")): 0.0,
                (("kind", "probe"), ("outcome", "duplicate")): 0.0,
                (("kind", "probe"), ("outcome", "stored")): 2.0,
                (("kind", "speedtest"), ("outcome", "duplicate")): 0.0,
                (("kind", "speedtest"), ("outcome", "stored")): 0.0,
            },
        ]
    )


def test_per_device_series_only_while_the_fleet_is_small(http, registered, clock):
    """Over metrics.per_device_max devices the per-device families are left out."""
    device = report_once(http, registered, clock)
    small = config_from_mapping({"metrics": {"per_device_max": 1}})
    large = config_from_mapping({"metrics": {"per_device_max": 0}})

    text = scrape(registered, small, clock)
    names = {
        f.name for f in text_string_to_metric_families(scrape(registered, large, clock))
    }

    assert (
        samples(text, "schoolmon_device_info"),
        samples(text, "schoolmon_device_last_seen_timestamp_seconds"),
        {n for n in names if n.startswith("schoolmon_device_")},
    ) == (
        {
            (
                ("device", device["device_id"]),
                ("hostname", "LAB-PC01"),
                ("os", "unknown"),
                ("role", "lab"),
                ("school", "C02"),
            ): 1.0
        },
        {(("device", device["device_id"]), ("school", "C02")): clock().timestamp()},
        set(),
    )


def test_policy_thresholds_in_force(registered, config, clock):
    """Each threshold is exported in base units."""
    text = scrape(registered, config, clock)

    assert samples(text, "schoolmon_policy_threshold") == {
        (("name", "good_download_bytes_per_second"),): 2.5e6,
        (("name", "good_download_bytes_per_second_per_student"),): 6250.0,
        (("name", "lab_pcs_required_lower_secondary"),): 23.0,
        (("name", "lab_pcs_required_primary"),): 18.0,
        (("name", "min_logical_cpus"),): 2.0,
        (("name", "min_memory_bytes"),): 4294967296.0,
        (("name", "min_system_disk_bytes"),): 64e9,
        (("name", "moderate_download_bytes_per_second"),): 125000.0,
        (("name", "offline_after_seconds"),): 900.0,
        (("name", "per_student_above_students"),): 400.0,
        (("name", "preschool_min_devices"),): 1.0,
        (("name", "probe_interval_seconds"),): 300.0,
        (("name", "uptime_ratio"),): 0.95,
        (("name", "usable_memory_tolerance_bytes"),): 536870912.0,
        (("name", "window_seconds"),): 604800.0,
    }


def test_http_requests_are_counted_by_route_and_written_at_each_scrape(
    http, registered, db_path
):
    """Requests are counted per route template; a scrape writes them to disk."""
    http.get("/healthz")
    http.get("/api/v1/schools/C01")
    http.get("/api/v1/schools/C99")
    text = http.get("/metrics").text

    reopened = Storage(db_path)
    stored = {
        tuple(sorted(row["labels"].items())): row["value"]
        for row in reopened.counters()
        if row["name"] == "http_requests"
    }
    reopened.close()
    assert (
        samples(text, "schoolmon_http_requests")
        == stored
        == {
            (("method", "GET"), ("route", "/healthz"), ("status", "200")): 1,
            (
                ("method", "GET"),
                ("route", "/api/v1/schools/{code}"),
                ("status", "200"),
            ): 1,
            (
                ("method", "GET"),
                ("route", "/api/v1/schools/{code}"),
                ("status", "404"),
            ): 1,
        }
    )


def _plain(value: float) -> Any:
    return "NaN" if math.isnan(value) else value


def test_whole_exposition_parses_and_agrees_with_the_figures(
    http, registered, config, clock
):
    """The text written without prometheus_client's families parses whole, and every
    one-value-per-school family holds the figures' values."""
    report_once(http, registered, clock)

    text = http.get("/metrics").text
    families = list(text_string_to_metric_families(text))
    figures = school_figures(registered, config, clock())

    exported = {
        name: samples(text, f"schoolmon_{name}") for name, _, _ in SCHOOL_GAUGES
    }
    expected = {
        name: {(("school", code),): _plain(value(f)) for code, f in figures.items()}
        for name, _, value in SCHOOL_GAUGES
    }
    # info, 14 gauges, 7 labelled, asset events, district, thresholds, 3 per
    # device, 3 own counters
    assert (len(families), exported) == (31, expected)


def test_running_exporter_serves_kept_figures_with_fresh_counters(registered, clock):
    """While the refresher runs, a scrape serves the figures it kept (until the next
    refresh) beside the counters, asset events included, as they are now; stopped,
    it computes again."""
    config = config_from_mapping({"metrics": {"refresh_seconds": 3600}})
    exporter = new_registry(registered, config, clock)
    exporter.start()
    wait_until(lambda: exporter.kept_at, message="the refresher kept no figures")
    clock.advance(hours=12)  # out of session
    registered.bump_counters([("reports_received", {"result": "accepted"}, 3)])
    registered.add_device(
        {"id": "d_1", "school": "C01", "role": "lab", "credential_hash": "h"}
        | {"enrolled_at": clock()}
    )
    registered.add_asset_event("d_1", "C01", "component_removed", {}, clock())
    removed = (("kind", "component_removed"), ("school", "C01"))

    def seen(text: str) -> tuple[Any, Any, Any]:
        return (
            samples(text, "schoolmon_school_in_session")[(("school", "C01"),)],
            samples(text, "schoolmon_reports_received")[(("result", "accepted"),)],
            samples(text, "schoolmon_asset_events")[removed],
        )

    kept = seen(render(exporter).decode())
    whole_gzip = gzip.decompress(render(exporter, gzipped=True)) == render(exporter)
    exporter.refresh()
    refreshed = seen(render(exporter).decode())
    exporter.stop()
    clock.advance(hours=12)  # in session again
    stopped = seen(render(exporter).decode())

    assert (kept, whole_gzip, refreshed, stopped) == (
        (1.0, 3.0, 1.0),
        True,
        (0.0, 3.0, 1.0),
        (1.0, 3.0, 1.0),
    )


def test_scrape_is_gzip_when_the_client_accepts_it(http, registered, clock):
    """A client accepting gzip gets the same exposition gzip-compressed; one
    refusing it gets plain text."""
    report_once(http, registered, clock)

    def fetch(accept: str) -> tuple[str | None, str, str]:
        answer = http.get("/metrics", headers={"Accept-Encoding": accept})
        return (
            answer.headers.get("content-encoding"),
            answer.headers["vary"],
            answer.text.split("# HELP schoolmon_reports_received_total")[0],
        )

    zipped, plain = fetch("gzip, deflate"), fetch("identity, gzip;q=0")

    assert (zipped[:2], plain[:2], zipped[2] == plain[2]) == (
        ("gzip", "Accept-Encoding"),
        (None, "Accept-Encoding"),
        True,
    )


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        ("gzip", True),
        ("deflate, GZIP;q=0.5", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=nonsense", False),
        ("identity", False),
        ("*", False),
        (None, False),
    ],
)
def test_accept_encoding_is_read_with_its_quality(header, gzipped):
    """gzip is chosen only when the header names it with a quality above 0."""
    assert accepts_gzip(header) is gzipped


def test_pacer_rests_as_long_as_it_worked_after_each_slice():
    """A background refresh at half the CPU sleeps after every 10 ms of work as long
    as it worked, and not before a slice is full."""
    now, slept = [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    pacer = Pacer(0.5, 0.01, timer=lambda: now[0], sleep=sleep)
    for work in (0.004, 0.004, 0.004, 0.02, 0.001):
        now[0] += work
        pacer()

    assert slept == [0.012, 0.02]
