"""The shipped rules, Prometheus and Alertmanager configuration through Debian's own
tools (promtool, amtool), and the cross-checks between rules and routing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.monitoring import grafana_models as models
from tests.monitoring.promstack import (
    ALERTMANAGER_YML,
    PROMETHEUS_DIR,
    RULE_FILES,
    require,
    rule_copies,
)

pytestmark = pytest.mark.prometheus

SPEC_ALERTS = {
    "SchoolOffline",
    "SchoolInternetDegraded",
    "SchoolLabUnderEquipped",
    "AssetComponentRemoved",
    "DeviceIdentityConflict",
    "AgentClockSkew",
    "ManySchoolsOffline",
    "CollectorDown",
}
ANNOTATIONS = {"summary", "description", "summary_en", "description_en"}
PROMTOOL_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))

# Receiver each alert (with the `problem` label where it has one) is routed to.
ROUTES = {
    ("CollectorDown", "scrape_failed"): "technician-urgent",
    ("CollectorDown", "no_target"): "technician-urgent",
    ("ManySchoolsOffline", None): "technician-urgent",
    ("SchoolOffline", None): "technician-urgent",
    ("AssetComponentRemoved", None): "technician-urgent",
    ("SchoolInternetDegraded", "internet_down"): "technician-email",
    ("DeviceIdentityConflict", None): "technician-email",
    ("SchoolInternetDegraded", "below_target"): "office-hours",
    ("SchoolLabUnderEquipped", None): "office-hours",
    ("AgentClockSkew", None): "office-hours",
}


def _run(args: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def _tested_alerts() -> list[dict[str, str]]:
    """The label sets the promtool tests expect, each with its alertname."""
    found = []
    for path in PROMTOOL_TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    found.append(
                        {"alertname": case["alertname"], **alert["exp_labels"]}
                    )
    return found


def test_shipped_rule_files_pass_promtool_check() -> None:
    """promtool accepts both rule files and counts every rule."""
    result = _run([require("promtool"), "check", "rules", *map(str, RULE_FILES)])

    assert (
        result.returncode,
        re.findall(r"SUCCESS: \d+ rules found", result.stdout),
    ) == (
        0,
        ["SUCCESS: 18 rules found", "SUCCESS: 10 rules found"],
    ), result.stdout + result.stderr


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda path: path.stem)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    """The promtool unit tests of the alerts pass against the shipped rules."""
    result = _run([require("promtool"), "test", "rules", str(test_file)])

    assert (result.returncode, "SUCCESS" in result.stdout) == (0, True), (
        result.stdout + result.stderr
    )


def test_shipped_prometheus_config_passes_promtool_check() -> None:
    """The example prometheus.yml and the rule files it names are valid."""
    config = PROMETHEUS_DIR / "prometheus.yml"
    result = _run([require("promtool"), "check", "config", str(config)])

    assert (result.returncode, "SUCCESS: 2 rule files found" in result.stdout) == (
        0,
        True,
    ), result.stdout + result.stderr


def test_collector_exposition_of_the_district_passes_promtool_check_metrics(
    scrape_target: Any,
) -> None:
    """The real collector's /metrics for the simulated district, NaN figures of the
    never-seen school included, has no lint findings."""
    exposition = httpx.get(scrape_target.url, timeout=30).raise_for_status().text
    result = _run([require("promtool"), "check", "metrics"], stdin=exposition)

    assert (result.returncode, result.stdout, result.stderr, "NaN" in exposition) == (
        0,
        "",
        "",
        True,
    )


def test_every_spec_alert_has_severity_and_bilingual_annotations() -> None:
    """Each SPEC.md alert exists, with severity and Vietnamese and English texts."""
    alerts: dict[str, list[tuple[str, set[str]]]] = {}
    for rule in models.rules():
        if "alert" in rule:
            entry = (rule["labels"].get("severity"), set(rule["annotations"]))
            alerts.setdefault(rule["alert"], []).append(entry)

    assert set(alerts) == SPEC_ALERTS
    assert {
        (severity in {"critical", "warning", "info"}, annotations == ANNOTATIONS)
        for entries in alerts.values()
        for severity, annotations in entries
    } == {(True, True)}


def test_every_alert_fires_in_some_promtool_test() -> None:
    """No alert goes without a unit test in which it fires."""
    assert {labels["alertname"] for labels in _tested_alerts()} == SPEC_ALERTS


def test_test_copies_change_only_for_and_the_offline_threshold(
    tmp_path: Path,
) -> None:
    """The test copies of the rules differ from the shipped ones only in `for` and
    in the 900 s / 15 m offline threshold, each place of which is replaced."""

    def rules_of(path: Path) -> list[dict[str, Any]]:
        groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        return [r for g in groups for r in g["rules"]]

    def shipped_threshold(rule: dict[str, Any]) -> dict[str, Any]:
        expr = rule["expr"].replace("time() - 6", "time() - 900")
        return {k: v for k, v in rule.items() if k != "for"} | {
            "expr": expr.replace("[6s]", "[15m]")
        }

    copies = [rules_of(p) for p in rule_copies(tmp_path, "2s", 6)]
    shipped = [rules_of(p) for p in RULE_FILES]
    exprs = "".join(r["expr"] for rules in copies for r in rules)

    assert [[shipped_threshold(r) for r in rules] for rules in copies] == [
        [{k: v for k, v in r.items() if k != "for"} for r in rules] for rules in shipped
    ]
    assert {r.get("for") for rules in copies for r in rules} == {"2s", None}
    assert (exprs.count("900"), exprs.count("15m"), exprs.count("time() - 6")) == (
        0,
        0,
        3,
    )


def test_alertmanager_config_passes_amtool_check() -> None:
    """amtool accepts the example alertmanager.yml."""
    result = _run([require("amtool"), "check-config", str(ALERTMANAGER_YML)])

    assert (result.returncode, "SUCCESS" in result.stdout) == (0, True), result.stdout
    assert re.findall(r" - (\d+ \w+(?: \w+)?)\n", result.stdout) == [
        "4 inhibit rules",
        "3 receivers",
        "0 templates",
    ]


@pytest.mark.parametrize(
    ("alert", "receiver"), sorted(ROUTES.items(), key=str), ids=str
)
def test_alert_routes_to_its_receiver(
    alert: tuple[str, str | None], receiver: str
) -> None:
    """amtool routes each alert, with the labels the rules give it, to its receiver."""
    alertname, problem = alert
    (labels, *_) = [
        labels
        for labels in _tested_alerts()
        if labels["alertname"] == alertname and labels.get("problem") == problem
    ]
    pairs = [f"{key}={value}" for key, value in labels.items()]
    result = _run(
        [
            require("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_YML}",
            *pairs,
        ]
    )

    assert (result.returncode, result.stdout.strip()) == (0, receiver)


def test_office_hours_are_vietnam_time_on_weekdays() -> None:
    """The office-hours interval is Monday to Friday, office times, Asia/Ho_Chi_Minh."""
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())

    assert config["time_intervals"] == [
        {
            "name": "office-hours",
            "time_intervals": [
                {
                    "weekdays": ["monday:friday"],
                    "times": [
                        {"start_time": "07:30", "end_time": "11:30"},
                        {"start_time": "13:30", "end_time": "17:00"},
                    ],
                    "location": "Asia/Ho_Chi_Minh",
                }
            ],
        }
    ]


def _matches(matchers: list[str], labels: dict[str, str]) -> bool:
    for matcher in matchers:
        name, operator, value = re.fullmatch(r'(\w+)(=~|=)"(.*)"', matcher).groups()
        actual = labels.get(name, "")
        if operator == "=" and actual != value:
            return False
        if operator == "=~" and not re.fullmatch(value, actual):
            return False
    return True


def test_inhibitions_compare_labels_both_alerts_carry() -> None:
    """Every `equal` label of an inhibit rule is on every source and target alert
    as the promtool tests see them, and each rule has both sides."""
    tested = _tested_alerts()
    problems = []
    for rule in yaml.safe_load(ALERTMANAGER_YML.read_text())["inhibit_rules"]:
        sources = [
            labels for labels in tested if _matches(rule["source_matchers"], labels)
        ]
        targets = [
            labels for labels in tested if _matches(rule["target_matchers"], labels)
        ]
        if not sources or not targets:
            problems.append(
                f"{rule['source_matchers']}: a side matches no tested alert"
            )
        for labels in sources + targets:
            missing = set(rule["equal"]) - set(labels)
            if missing:
                problems.append(f"{labels['alertname']} lacks {sorted(missing)}")

    assert problems == []
