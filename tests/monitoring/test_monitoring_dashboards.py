"""Static checks of the Grafana models and provisioning (case
mon-dashboard-provisioning) and of the metric names the dashboards and rules read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring import grafana_models as models
from tests.monitoring.promstack import GRAFANA_DIR, PromQLError

PINNED_UID = "schoolmon-prometheus"
BUILTIN_ANNOTATIONS = ("grafana", "-- Grafana --")

# Unit a panel must show for a query whose value is of this metric kind.
UNIT_BY_SUFFIX = [
    ("_timestamp_seconds", "dateTimeFromNow"),
    ("_bytes_per_second", "Bps"),
    ("_seconds", "s"),
    ("_ratio", "percentunit"),
    (":ratio", "percentunit"),
]


def _models() -> dict[str, dict[str, Any]]:
    return {path.name: models.load(path) for path in models.dashboard_files()}


def _datasources(node: Any) -> list[tuple[str, str]]:
    """Every datasource reference anywhere in a model, as (type, uid)."""
    found = []
    if isinstance(node, dict):
        reference = node.get("datasource")
        if isinstance(reference, dict):
            found.append((reference.get("type", ""), reference.get("uid", "")))
        elif reference is not None:
            found.append(("", str(reference)))
        for key, value in node.items():
            if key != "datasource":
                found.extend(_datasources(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_datasources(item))
    return found


def test_dashboards_are_raw_models_without_inputs_or_ds_placeholders() -> None:
    """No dashboard is an export for sharing: no __inputs, no ${DS_...} placeholder."""
    offending = []
    for path in models.dashboard_files():
        text = path.read_text(encoding="utf-8")
        if "__inputs" in models.load(path) or "${DS_" in text:
            offending.append(path.name)

    assert offending == []


def test_dashboards_have_the_expected_unique_uids_and_titles() -> None:
    """Each dashboard has its own stable uid and title."""
    found = {name: (model["uid"], model["title"]) for name, model in _models().items()}

    assert found == {
        "district-overview.json": ("schoolmon-district", "Tổng quan huyện"),
        "inventory.json": ("schoolmon-inventory", "Kiểm kê thiết bị"),
        "school.json": ("schoolmon-school", "Trường"),
    }


def test_every_datasource_reference_is_the_pinned_uid() -> None:
    """Panels, targets and variables name the provisioned data source by its uid."""
    references = set()
    for model in _models().values():
        references.update(_datasources(model))

    assert references == {("prometheus", PINNED_UID), BUILTIN_ANNOTATIONS}


def test_datasource_provisioning_pins_the_uid_the_dashboards_use() -> None:
    """The provisioned Prometheus data source carries the uid the panels reference."""
    document = yaml.safe_load(
        (GRAFANA_DIR / "datasources" / "schoolmon.yml").read_text()
    )
    (source,) = document["datasources"]

    assert (source["uid"], source["type"], document["apiVersion"]) == (
        PINNED_UID,
        "prometheus",
        1,
    )


def test_dashboard_provider_loads_a_folder_of_files() -> None:
    """The dashboard provider is a file provider pointing at one folder."""
    document = yaml.safe_load(
        (GRAFANA_DIR / "dashboards" / "schoolmon.yml").read_text()
    )
    (provider,) = document["providers"]

    assert (
        provider["type"],
        provider["folder"],
        Path(provider["options"]["path"]).name,
    ) == (
        "file",
        "schoolmon",
        "schoolmon",
    )


def test_every_panel_has_a_title_a_description_and_a_unique_id() -> None:
    """Technicians get a title and a description on every panel; ids do not clash."""
    problems = []
    for name, model in _models().items():
        ids = [panel["id"] for panel in model["panels"]]
        if len(ids) != len(set(ids)):
            problems.append(f"{name}: duplicate panel ids")
        for panel in models.panels(model):
            if not panel.get("title") or not panel.get("description"):
                problems.append(
                    f"{name}: panel {panel['id']} lacks a title or description"
                )

    assert problems == []


def _unit_for(panel: dict[str, Any], ref: str, single: bool) -> str | None:
    names = {f"Value #{ref}"} | ({"Value"} if single else set())
    for override in panel["fieldConfig"]["overrides"]:
        matcher = override["matcher"]
        if matcher["options"] in names or (
            matcher["id"] == "byFrameRefID" and matcher["options"] == ref
        ):
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    return prop["value"]
    return panel["fieldConfig"]["defaults"].get("unit")


def _expected_unit(expr: str) -> str | None:
    head = expr.split("*")[0]
    for name in sorted(models.metric_names(head)):
        for suffix, unit in UNIT_BY_SUFFIX:
            if name.endswith(suffix):
                return unit
    return None


def test_panel_units_follow_the_base_unit_of_the_metric() -> None:
    """Bytes/s show as Bps, ratios as percentunit, seconds as s, times as from-now."""
    problems = []
    for model in _models().values():
        for panel in models.panels(model):
            targets = panel["targets"]
            for target in targets:
                expected = _expected_unit(target["expr"])
                shown = _unit_for(panel, target["refId"], len(targets) == 1)
                if expected and shown != expected:
                    problems.append(f"{panel['title']} {target['refId']}: {shown}")

    assert problems == []


def test_dashboard_queries_read_only_exported_or_recorded_metrics() -> None:
    """Every metric a panel or variable reads is in the catalog or recorded by us."""
    allowed = models.catalog_names() | models.recorded_names()
    unknown = set()
    for model in _models().values():
        for query in models.queries(model):
            unknown |= models.metric_names(query.expr) - allowed

    assert unknown == set()


def test_rules_read_only_exported_metrics_and_their_own_records() -> None:
    """Rule expressions and annotation queries use catalog metrics, up, ALERTS and
    the records of schoolmon-records.yml."""
    allowed = (
        models.catalog_names() | models.recorded_names() | models.PROMETHEUS_SERIES
    )
    unknown = set()
    for rule in models.rules():
        for expr in [rule["expr"], *models.annotation_queries(rule)]:
            unknown |= models.metric_names(expr) - allowed

    assert unknown == set()


# Families the collector exports as NaN when the figure is not known (SPEC.md: a
# failed or missing measurement is never a zero).
NAN_WHEN_UNKNOWN = (
    "schoolmon_school_internet_up",
    "schoolmon_school_internet_uptime_ratio",
    "schoolmon_school_download_bytes_per_second",
    "schoolmon_school_upload_bytes_per_second",
    "schoolmon_school_latency_seconds",
)
# Expressions allowed to pass NaN on, and why.
NAN_KEPT = {
    "SchoolInternetDegraded/below_target": (
        "the alert's value is the uptime; a school with an unknown uptime is not "
        "connected either, and the annotations print 'unknown' for NaN"
    ),
}


def _unfiltered_nan_reads(expr: str) -> list[str]:
    """Reads of a NaN-able family neither filtered by `x == x` nor compared with a
    number (both drop NaN)."""
    found = []
    for name in NAN_WHEN_UNKNOWN:
        selector = rf"{name}(?:\{{[^}}]*\}})?(?![\w:])"
        text = re.sub(rf"({selector})\s*==\s*\1", " ", expr)
        text = re.sub(rf"{selector}\s*(?:==|!=|>=|<=|>|<)\s*[-\d.]", " ", text)
        found += re.findall(selector, text)
    return found


def _labelled_exprs() -> dict[str, list[str]]:
    exprs: dict[str, list[str]] = {}
    for model in _models().values():
        for query in models.queries(model):
            key = f"{query.dashboard}/{query.panel}/{query.ref}"
            exprs.setdefault(key, []).append(query.expr)
    for rule in models.rules():
        name = rule.get("record") or rule["alert"]
        problem = rule.get("labels", {}).get("problem")
        key = f"{name}/{problem}" if problem else name
        exprs.setdefault(key, []).extend(
            [rule["expr"], *models.annotation_queries(rule)]
        )
    return exprs


def test_expressions_reading_unknown_figures_leave_nan_out() -> None:
    """Every dashboard query, rule and annotation query that reads a figure the
    collector exports as NaN when unknown filters NaN out (or is a documented
    exception), so one unknown school never turns a district figure into NaN."""
    unfiltered = {
        key
        for key, exprs in _labelled_exprs().items()
        if any(_unfiltered_nan_reads(expr) for expr in exprs)
    }

    assert unfiltered == set(NAN_KEPT)


def test_nan_filter_check_tells_filtered_from_unfiltered_reads() -> None:
    """The NaN check accepts `x == x` and comparisons with a number, nothing else."""
    up = "schoolmon_school_internet_up"
    ratio = 'schoolmon_school_internet_uptime_ratio{school="$school"}'

    assert [
        _unfiltered_nan_reads(expr)
        for expr in (
            f"avg({ratio} == {ratio})",
            f"{up} == 0 and on (school) x",
            f"avg({ratio})",
            f"{up} * on (school) group_left () {up}",
            "schoolmon_school_internet_up_total",
        )
    ] == [[], [], [ratio], [up, up], []]


def test_metric_name_parser_finds_names_not_labels_functions_or_numbers() -> None:
    """The PromQL name parser keeps metric names and drops everything else."""
    expr = (
        'topk(10, sum by (school) (rate(a_total{kind="x y"}[5m] offset 1h)) '
        "* on (school) group_left (name) b:rec:sum > bool 1e6) or vector(0)"
    )

    assert models.metric_names(expr) == {"a_total", "b:rec:sum"}


def test_spec_metric_list_matches_spec_md() -> None:
    """The SPEC.md names the checks rely on are those SPEC.md lists."""
    if not models.SPEC_MD.exists():
        pytest.skip(f"{models.SPEC_MD} is not present in this checkout")

    assert models.spec_names(models.SPEC_MD.read_text(encoding="utf-8")) == set(
        models.SPEC_METRICS
    )


@pytest.mark.prometheus
def test_every_dashboard_query_is_valid_promql(stack: Any) -> None:
    """A real Prometheus accepts every query once Grafana's variables are put in."""
    school = stack.target.district.showcase_school
    errors = []
    for model in _models().values():
        for query in models.queries(model):
            try:
                stack.prometheus.query(models.substitute(query.expr, school))
            except PromQLError as error:
                errors.append(f"{query.dashboard} / {query.panel}: {error}")

    assert errors == []


def _exposed_names(url: str) -> set[str]:
    text = httpx.get(url, timeout=30).raise_for_status().text
    return {
        sample.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _names_read() -> set[str]:
    """Every metric name a dashboard, a rule or an annotation query reads."""
    exprs = [q.expr for model in _models().values() for q in models.queries(model)]
    for rule in models.rules():
        exprs += [rule["expr"], *models.annotation_queries(rule)]
    return {name for expr in exprs for name in models.metric_names(expr)}


def test_every_metric_the_dashboards_and_rules_read_is_in_the_collectors_scrape(
    scrape_target: Any,
) -> None:
    """A metric renamed in the collector breaks this: every name the dashboards and
    rules read, less the records and Prometheus' own series, is in a real scrape of
    the collector serving the simulated district."""
    read = _names_read() - models.recorded_names() - models.PROMETHEUS_SERIES
    exposed = _exposed_names(scrape_target.url)

    assert (sorted(read - exposed), len(read) > 20) == ([], True)


def test_every_catalog_metric_is_in_the_collectors_scrape(scrape_target: Any) -> None:
    """Every name of SPEC.md's list and design.md's catalog (counters with their
    _total) is in a real scrape of the collector."""
    exposed = _exposed_names(scrape_target.url)
    catalog = {
        name if name in exposed or name.endswith("_total") else f"{name}_total"
        for name in models.catalog_names()
    }

    assert sorted(catalog - exposed) == []
