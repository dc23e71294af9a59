"""A real Prometheus scraping a real collector with a simulated district, and a real
Alertmanager posting to a webhook: the dashboards show data, the district figures of
the recording rules are the collector's own, a silent school is notified and
cleared, and the inhibitions hold."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.monitoring import grafana_models as models
from tests.support.waiting import wait_until

pytestmark = pytest.mark.prometheus


@pytest.fixture(scope="module")
def recent_asset_event(stack: Any) -> str:
    """One component removed from a PC of the showcase school, seen by Prometheus."""
    school = stack.target.district.showcase_school
    stack.target.district.asset_event(school, "component_removed")
    query = (
        'increase(schoolmon_asset_events_total{kind="component_removed", '
        f'school="{school}"}}[1h]) > 0'
    )
    wait_until(
        lambda: stack.prometheus.query(query),
        timeout=15,
        message="Prometheus never saw the component removal",
    )
    return school


def test_panels_that_should_show_data_do(stack: Any, recent_asset_event: str) -> None:
    """Every panel returns samples for the showcase school and the whole district,
    the map of schools included."""
    empty = set()
    for path in models.dashboard_files():
        model = models.load(path)
        for panel in models.panels(model):
            exprs = [
                models.substitute(target["expr"], recent_asset_event)
                for target in panel["targets"]
            ]
            if not any(stack.prometheus.query(expr) for expr in exprs):
                empty.add((model["uid"], panel["title"]))

    assert empty == set()


def _collector_schools(stack: Any) -> list[dict[str, Any]]:
    target = urlsplit(stack.target.url)
    url = f"{target.scheme}://{target.netloc}/api/v1/schools"
    return httpx.get(url, timeout=10).raise_for_status().json()["schools"]


def _expected_figures(schools: list[dict[str, Any]]) -> dict[str, Any]:
    """The district figures as the collector's own API gives them."""
    figures = [school["figures"] for school in schools]
    targets = [
        school
        for school in schools
        if school["has_informatics"] and school["level"] != "preschool"
    ]
    uptimes = [f["uptime_ratio"] for f in figures if f["uptime_ratio"] is not None]
    return {
        "job:schoolmon_schools:count": len(schools),
        "job:schoolmon_schools_in_session:sum": sum(f["in_session"] for f in figures),
        "job:schoolmon_schools_offline:sum": sum(f["offline_now"] for f in figures),
        "job:schoolmon_schools_connected:ratio": pytest.approx(
            sum(f["connected"] for f in figures) / len(schools)
        ),
        "job:schoolmon_lab_targets:count": len(targets),
        "job:schoolmon_labs_equipped:ratio": pytest.approx(
            sum(s["figures"]["lab_equipped"] for s in targets) / len(targets)
        ),
        "job:schoolmon_school_internet_uptime_ratio:avg": pytest.approx(
            sum(uptimes) / len(uptimes), rel=1e-3
        ),
        "classes": dict(Counter(f["connectivity_class"] for f in figures)),
        "offline": {s["code"]: 1.0 for s in schools if s["figures"]["offline_now"]},
    }


def _recorded_figures(api: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        name: api.values(name, "job")["schoolmon"]
        for name in (
            "job:schoolmon_schools:count",
            "job:schoolmon_schools_in_session:sum",
            "job:schoolmon_schools_offline:sum",
            "job:schoolmon_schools_connected:ratio",
            "job:schoolmon_lab_targets:count",
            "job:schoolmon_labs_equipped:ratio",
            "job:schoolmon_school_internet_uptime_ratio:avg",
        )
    }
    classes = api.values("job_class:schoolmon_school_connectivity:sum", "class")
    figures["classes"] = {name: count for name, count in classes.items() if count}
    figures["offline"] = api.values(
        "school:schoolmon_school_offline:bool == 1", "school"
    )
    return figures


def test_district_figures_of_the_records_are_the_collectors_own(stack: Any) -> None:
    """The recording rules give the district the figures the collector's API gives
    school by school: counts, shares, classes, offline schools and the mean uptime
    over the schools whose uptime is known (the never-seen school's NaN left out)."""
    never_seen = [s for s in stack.target.district.district.schools if s.offline]
    wait_until(
        lambda: (
            _recorded_figures(stack.prometheus)["offline"]
            == {s.code: 1.0 for s in never_seen}
        ),
        timeout=20,
        message="the never-seen school is not counted offline",
    )

    expected = _expected_figures(_collector_schools(stack))
    recorded = _recorded_figures(stack.prometheus)

    assert recorded == expected
    assert (len(never_seen), expected["offline"]) == (1, {never_seen[0].code: 1.0})


def _notifications(stack: Any, receiver: str, school: str, status: str) -> list[dict]:
    return [
        alert
        for alert in stack.webhook.alerts(f"/{receiver}")
        if alert["labels"].get("alertname") == "SchoolOffline"
        and alert["labels"].get("school") == school
        and alert["status"] == status
    ]


def test_silent_school_in_session_is_notified_until_it_reports(stack: Any) -> None:
    """A school silent in session reaches the technician's webhook as SchoolOffline
    with its code and name, and is resolved when the school reports again."""
    district = stack.target.district
    school = district.showcase_school
    (info,) = stack.prometheus.query(f'schoolmon_school_info{{school="{school}"}}')
    labels = info["metric"]

    district.silence(school)
    (firing, *_) = wait_until(
        lambda: _notifications(stack, "technician-urgent", school, "firing"),
        timeout=30,
        message=f"no SchoolOffline notification for {school}",
    )
    district.report(school)
    (resolved, *_) = wait_until(
        lambda: _notifications(stack, "technician-urgent", school, "resolved"),
        timeout=30,
        message=f"SchoolOffline for {school} was never resolved",
    )

    expected = {
        "alertname": "SchoolOffline",
        "severity": "warning",
        "school": school,
        "name": labels["name"],
        "commune": labels["commune"],
        "job": "schoolmon",
        "instance": labels["instance"],
    }
    assert (firing["labels"], resolved["labels"]) == (expected, expected)
    assert firing["annotations"]["summary"] == (
        f"Trường {school} ({labels['name']}) mất liên lạc trong giờ học"
    )


# Each case: a source alert, targets it must suppress, targets it must leave alone.
# Every case has its own `job`, so cases and the scraped district do not meet.
INHIBITIONS = {
    "collector-down": (
        {
            "alertname": "CollectorDown",
            "severity": "critical",
            "problem": "scrape_failed",
        },
        [{"alertname": "SchoolOffline", "severity": "warning", "school": "Z01"}],
        [
            {
                "alertname": "SchoolOffline",
                "severity": "warning",
                "school": "Z01",
                "job": "other",
            }
        ],
    ),
    "many-schools-offline": (
        {"alertname": "ManySchoolsOffline", "severity": "critical"},
        [
            {"alertname": "SchoolOffline", "severity": "warning", "school": "Z02"},
            {
                "alertname": "SchoolInternetDegraded",
                "severity": "warning",
                "problem": "internet_down",
                "school": "Z03",
            },
        ],
        [
            {
                "alertname": "SchoolInternetDegraded",
                "severity": "info",
                "problem": "below_target",
                "school": "Z03",
            }
        ],
    ),
    "school-offline": (
        {"alertname": "SchoolOffline", "severity": "warning", "school": "Z04"},
        [
            {
                "alertname": "SchoolInternetDegraded",
                "severity": "info",
                "problem": "below_target",
                "school": "Z04",
            }
        ],
        [
            {
                "alertname": "SchoolInternetDegraded",
                "severity": "info",
                "problem": "below_target",
                "school": "Z05",
            }
        ],
    ),
}


def _post(
    url: str, alerts: list[dict[str, str]], starts: datetime, ends: datetime
) -> None:
    body = [
        {"labels": labels, "startsAt": starts.isoformat(), "endsAt": ends.isoformat()}
        for labels in alerts
    ]
    httpx.post(f"{url}/api/v2/alerts", json=body, timeout=10).raise_for_status()


def _listed(url: str, job: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{url}/api/v2/alerts", params={"filter": f'job=~"{job}.*"'}, timeout=10
    )
    return answer.raise_for_status().json()


@pytest.mark.parametrize("case", sorted(INHIBITIONS))
def test_alertmanager_inhibits_what_the_source_alert_explains(
    stack: Any, case: str
) -> None:
    """The real Alertmanager suppresses exactly the targets the source explains."""
    source, suppressed, untouched = INHIBITIONS[case]
    job = f"inhibit-{case}"
    alerts = [{"job": job, **labels} for labels in [source, *suppressed, *untouched]]
    alerts = [
        {**a, "job": a["job"] if a["job"] != "other" else f"{job}-other"}
        for a in alerts
    ]
    url = stack.alertmanager_url

    started = datetime.now(UTC)
    _post(url, alerts, started, started + timedelta(minutes=5))
    try:
        listed = wait_until(
            lambda: _settled(url, job, len(alerts), len(suppressed)),
            timeout=15,
            message=f"Alertmanager did not inhibit the targets of {case}",
        )
    finally:
        _post(url, alerts, started, datetime.now(UTC))

    (source_fp,) = [a["fingerprint"] for a in listed if a["labels"] == alerts[0]]
    states = {
        _key(a["labels"]): (a["status"]["state"], a["status"]["inhibitedBy"])
        for a in listed
    }
    assert states == {
        _key(alerts[0]): ("active", []),
        **{
            _key(a): ("suppressed", [source_fp])
            for a in alerts[1 : 1 + len(suppressed)]
        },
        **{_key(a): ("active", []) for a in alerts[1 + len(suppressed) :]},
    }


def _settled(
    url: str, job: str, count: int, suppressed: int
) -> list[dict[str, Any]] | None:
    listed = _listed(url, job)
    states = [a["status"]["state"] for a in listed]
    if len(listed) == count and states.count("suppressed") >= suppressed:
        return listed
    return None


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))
