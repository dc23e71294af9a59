"""Fixtures of the monitoring tests: a scrape target, a real Alertmanager with a
webhook receiver, and a real Prometheus that scrapes the target with test copies of
the shipped rules, all on loopback ports and stopped when the session ends.

The scrape target is a parameter: ``scrape_target`` yields a URL and the district
behind it. Until the real collector is used it serves
``fixtures/metrics.txt``; to run the same tests against a collector with a simulated
district, override ``scrape_target`` with one whose ``district`` offers ``silence``,
``report``, ``asset_event`` and ``showcase_school`` (see ``StaticDistrict``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.monitoring.promstack import (
    FIXTURE_METRICS,
    Exposition,
    ExpositionHandler,
    PrometheusAPI,
    ScrapeTarget,
    StaticDistrict,
    WebhookHandler,
    WebhookReceiver,
    alertmanager_args,
    alertmanager_config,
    http_server,
    new_port,
    prometheus_args,
    prometheus_config,
    require,
    rule_copies,
    running,
    start_url,
)
from tests.support.waiting import wait_until

# The shipped `for` durations (5 minutes to an hour) become this in the test copies.
TEST_FOR = "2s"


@dataclass
class MonitoringStack:
    """A running Prometheus and Alertmanager and what the test sees of them."""

    prometheus: PrometheusAPI
    alertmanager_url: str
    webhook: WebhookReceiver
    target: ScrapeTarget


@pytest.fixture(scope="session")
def scrape_target() -> Iterator[ScrapeTarget]:
    """fixtures/metrics.txt served on loopback, every reporting school fresh."""
    exposition = Exposition(FIXTURE_METRICS.read_text(encoding="utf-8"))
    district = StaticDistrict(exposition)
    district.freshen()
    with http_server(ExpositionHandler, exposition=exposition) as base_url:
        yield ScrapeTarget(f"{base_url}/metrics", district)


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, scrape_target: ScrapeTarget
) -> Iterator[MonitoringStack]:
    """Alertmanager (webhooks to the test) and Prometheus scraping the target."""
    prometheus_bin, alertmanager_bin = require("prometheus"), require("alertmanager")
    directory = tmp_path_factory.mktemp("monitoring")
    receiver = WebhookReceiver()

    with contextlib.ExitStack() as servers:
        webhook_url = servers.enter_context(
            http_server(WebhookHandler, receiver=receiver)
        )
        alertmanager_url = servers.enter_context(
            _alertmanager(alertmanager_bin, directory, webhook_url)
        )
        prometheus_url = servers.enter_context(
            _prometheus(prometheus_bin, directory, scrape_target.url, alertmanager_url)
        )
        api = PrometheusAPI(prometheus_url)
        _wait_for_first_evaluation(api)
        yield MonitoringStack(api, alertmanager_url, receiver, scrape_target)


@contextlib.contextmanager
def _alertmanager(binary: str, directory: Path, webhook_url: str) -> Iterator[str]:
    port = new_port()
    config = alertmanager_config(directory, webhook_url)
    args = alertmanager_args(binary, config, directory / "alertmanager-data", port)
    url = start_url(port)
    with running(args, f"{url}/-/ready", directory / "alertmanager.log"):
        yield url


@contextlib.contextmanager
def _prometheus(
    binary: str, directory: Path, target_url: str, alertmanager_url: str
) -> Iterator[str]:
    port = new_port()
    rules = rule_copies(directory, TEST_FOR)
    config = prometheus_config(directory, target_url, rules, alertmanager_url)
    args = prometheus_args(binary, config, directory / "prometheus-data", port)
    url = start_url(port)
    with running(args, f"{url}/-/ready", directory / "prometheus.log"):
        yield url


def _wait_for_first_evaluation(api: PrometheusAPI) -> None:
    wait_until(
        lambda: api.query('up{job="schoolmon"} == 1'),
        timeout=20,
        message="Prometheus never scraped the target successfully",
    )
    wait_until(
        lambda: api.query("job:schoolmon_schools:count"),
        timeout=20,
        message="the recording rules were never evaluated",
    )
