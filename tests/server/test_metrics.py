"""/metrics: exact samples, promtool, well-formed unique names, silent schools."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from schoolmon.server.config import config_from_mapping
from schoolmon.server.metrics import new_registry, render
from schoolmon.server.storage import Storage

from tests.support.collector import enroll, probe_json, report_json

NAME = re.compile(r"^schoolmon_[a-z][a-z0-9_]*[a-z0-9]$")


def samples(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one family as {sorted label pairs: value}."""
    for metric in text_string_to_metric_families(text):
        if metric.name == family:
            return {tuple(sorted(s.labels.items())): s.value for s in metric.samples}
    raise AssertionError(f"family {family} not exported")


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


def test_exact_school_samples_of_a_small_district(http, registered, config, clock):
    """A reporting school, two silent ones, asset events: every sample exact."""
    device = report_once(http, registered, clock)
    registered.add_asset_event(
        device["device_id"], "C02", "component_removed", {}, clock()
    )
    clock.advance(minutes=5)
    seen = clock().timestamp() - 300

    text = scrape(registered, config, clock)

    def per_school(c01, c02, c03):
        return {
            (("school", "C01"),): c01,
            (("school", "C02"),): c02,
            (("school", "C03"),): c03,
        }

    assert (
        samples(text, "schoolmon_school_in_session"),
        samples(text, "schoolmon_school_last_seen_timestamp_seconds"),
        samples(text, "schoolmon_school_internet_up"),
        samples(text, "schoolmon_school_clock_skew_seconds"),
        {k: v for k, v in samples(text, "schoolmon_school_devices").items() if v},
        {k: v for k, v in samples(text, "schoolmon_asset_events").items() if v},
        len(samples(text, "schoolmon_asset_events")),
        samples(text, "schoolmon_district_schools"),
    ) == (
        per_school(1.0, 1.0, 1.0),
        per_school(0.0, seen, 0.0),
        per_school(0.0, 1.0, 0.0),
        per_school(0.0, 0.0, 0.0),
        {
            (("role", "lab"), ("school", "C02"), ("state", "online")): 1.0,
            (("role", "lab"), ("school", "C02"), ("state", "seen_7d")): 1.0,
        },
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
        (("name", "offline_after_seconds"),): 900.0,
        (("name", "uptime_window_seconds"),): 604800.0,
        (("name", "uptime_ratio"),): 0.95,
        (("name", "good_download_bytes_per_second"),): 2.5e6,
        (("name", "good_download_bytes_per_second_per_student"),): 6250.0,
        (("name", "per_student_above_students"),): 400.0,
        (("name", "moderate_download_bytes_per_second"),): 125000.0,
        (("name", "lab_min_logical_cpus"),): 2.0,
        (("name", "lab_min_memory_bytes"),): 4294967296.0,
        (("name", "lab_min_system_disk_bytes"),): 64e9,
        (("name", "lab_pcs_required_lower_secondary"),): 23.0,
        (("name", "lab_pcs_required_primary"),): 18.0,
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
