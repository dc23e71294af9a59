"""A real Prometheus scraping the target and a real Alertmanager posting to a webhook:
the dashboards show data, the district figures come out right, a silent school is
notified and cleared, and the inhibitions hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.monitoring import grafana_models as models
from tests.monitoring.promstack import StaticDistrict
from tests.support.waiting import wait_until

pytestmark = pytest.mark.prometheus

# Panels allowed to show nothing, and why.
EXPECTED_EMPTY = {
    ("schoolmon-district", "Bản đồ trường"): (
        "needs latitude/longitude labels on schoolmon_school_info, not exported yet"
    ),
}


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
    """Every panel but the documented exceptions returns samples for the showcase
    school and the whole district."""
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

    assert empty == set(EXPECTED_EMPTY)


def test_district_figures_come_out_of_the_recording_rules(stack: Any) -> None:
    """The records give the fixture district's headline figures."""
    if not isinstance(stack.target.district, StaticDistrict):
        pytest.skip("the expected figures are those of fixtures/metrics.txt")
    api = stack.prometheus
    wait_until(
        lambda: (
            api.values("job:schoolmon_schools_offline:sum", "job") == {"schoolmon": 1}
        ),
        timeout=15,
        message="the never-seen school C05 is not counted offline",
    )

    figures = {
        name: api.values(name, "job")["schoolmon"]
        for name in (
            "job:schoolmon_schools:count",
            "job:schoolmon_schools_in_session:sum",
            "job:schoolmon_schools_offline:sum",
            "job:schoolmon_schools_connected:ratio",
            "job:schoolmon_lab_targets:count",
            "job:schoolmon_labs_equipped:ratio",
        )
    }
    classes = api.values("job_class:schoolmon_school_connectivity:sum", "class")
    offline = api.values("school:schoolmon_school_offline:bool == 1", "school")

    assert figures == {
        "job:schoolmon_schools:count": 6,
        "job:schoolmon_schools_in_session:sum": 6,
        "job:schoolmon_schools_offline:sum": 1,
        "job:schoolmon_schools_connected:ratio": pytest.approx(4 / 6),
        "job:schoolmon_lab_targets:count": 5,
        "job:schoolmon_labs_equipped:ratio": pytest.approx(2 / 5),
    }
    assert classes == {"good": 2, "moderate": 2, "poor": 1, "unknown": 1}
    assert offline == {"C05": 1}


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
