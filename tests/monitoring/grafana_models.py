"""Read the shipped Grafana models and PromQL: queries, variables, metric names.

Metric names are taken from PromQL by removing what is not a metric name (strings,
label matchers, ranges, grouping label lists, numbers, function calls, keywords);
whether the PromQL itself is valid is left to a real Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.monitoring.promstack import GRAFANA_DIR, REPO, RULE_FILES

DESIGN_MD = REPO / "docs" / "design.md"
SPEC_MD = REPO.parent / "shared" / "SPEC.md"

# SPEC.md "Metric names" (checked against SPEC.md itself where it is present).
SPEC_METRICS = frozenset(
    {
        "schoolmon_school_info",
        "schoolmon_school_in_session",
        "schoolmon_school_last_seen_timestamp_seconds",
        "schoolmon_school_devices",
        "schoolmon_school_internet_up",
        "schoolmon_school_internet_uptime_ratio",
        "schoolmon_school_download_bytes_per_second",
        "schoolmon_school_upload_bytes_per_second",
        "schoolmon_school_latency_seconds",
        "schoolmon_school_connectivity",
        "schoolmon_school_connected",
        "schoolmon_school_lab_equipped",
        "schoolmon_school_lab_pcs",
        "schoolmon_asset_events_total",
        "schoolmon_device_last_seen_timestamp_seconds",
        "schoolmon_device_info",
    }
)
# Series Prometheus itself writes.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})

KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "Inf",
        "NaN",
    }
)
# Values put in for Grafana's variables when a query is sent to Prometheus.
GRAFANA_MACROS = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "1h",
    "__range_s": "3600",
}


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel (or of a template variable) of a dashboard."""

    dashboard: str
    panel: str
    ref: str
    expr: str


def dashboard_files() -> list[Path]:
    return sorted((GRAFANA_DIR / "json").glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included; rows themselves left out."""
    for panel in model.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(model: dict[str, Any]) -> list[PanelQuery]:
    """Every PromQL query of the dashboard: panel targets and query variables."""
    found = []
    for panel in panels(model):
        for target in panel.get("targets", []):
            found.append(
                PanelQuery(
                    model["uid"], panel["title"], target["refId"], target["expr"]
                )
            )
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            expr = variable_expr(variable["definition"])
            found.append(PanelQuery(model["uid"], f"${variable['name']}", "var", expr))
    return found


def variable_expr(definition: str) -> str:
    """The PromQL inside label_values(...) or query_result(...)."""
    match = re.fullmatch(r"label_values\((.+),\s*\w+\)", definition.strip())
    if match:
        return match[1]
    match = re.fullmatch(r"query_result\((.+)\)", definition.strip())
    if match:
        return match[1]
    raise ValueError(
        f"variable query {definition!r} is neither label_values nor query_result"
    )


def substitute(expr: str, school: str) -> str:
    """``expr`` with Grafana's variables and macros replaced by real values."""
    values = dict(GRAFANA_MACROS, school=school)

    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr}")
        return values[name]

    return re.sub(r"\$\{(?P<braced>\w+)\}|\$(?P<plain>\w+)", replace, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    grouping = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(grouping, " ", text)
    text = re.sub(r"(?<![\w:])\d[\w.]*", " ", text)

    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if match[0] not in KEYWORDS and not following.startswith("("):
            names.add(match[0])
    return names


def rule_documents() -> dict[str, dict[str, Any]]:
    return {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in RULE_FILES
    }


def rules() -> Iterator[dict[str, Any]]:
    for document in rule_documents().values():
        for group in document["groups"]:
            yield from group["rules"]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def annotation_queries(rule: dict[str, Any]) -> list[str]:
    """PromQL run by the annotation templates (query "..." and printf "...")."""
    found = []
    for text in rule.get("annotations", {}).values():
        for literal in re.findall(r'(?:query|printf) "((?:[^"\\]|\\.)*)"', text):
            found.append(literal.replace('\\"', '"').replace("%q", '"x"'))
    return found


def catalog_names() -> set[str]:
    """Metric names of design.md's catalog plus SPEC.md's."""
    text = DESIGN_MD.read_text(encoding="utf-8")
    section = text.split("## Metric catalog", 1)[1]
    return (
        set(re.findall(r"^\| `(schoolmon_[a-z0-9_]+)`", section, re.M)) | SPEC_METRICS
    )


def spec_names(spec_text: str) -> set[str]:
    """Metric names listed under SPEC.md's "Metric names" heading."""
    section = spec_text.split("## Metric names", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(schoolmon_[a-z0-9_]+)", section))
