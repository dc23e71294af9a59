"""Fixtures of the monitoring tests: a real collector process with a simulated
district, a real Alertmanager with a webhook receiver, and a real Prometheus that
scrapes the collector with test copies of the shipped rules, all on loopback ports
and stopped when the session ends.

``scrape_target`` yields the collector's /metrics URL and the district behind it
(``tests/monitoring/simdistrict.py``): its ``silence``, ``report`` and
``asset_event`` change what the schools send, ``showcase_school`` is the school the
per-school panels are shown for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.monitoring.promstack import (
    PrometheusAPI,
    ScrapeTarget,
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
from tests.monitoring.simdistrict import OFFLINE_AFTER_SECONDS, collector_with_district
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
def scrape_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScrapeTarget]:
    """A collector process with the simulated district, its schools reporting."""
    directory = tmp_path_factory.mktemp("collector")
    with collector_with_district(directory) as (base_url, district):
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
    rules = rule_copies(directory, TEST_FOR, OFFLINE_AFTER_SECONDS)
    config = prometheus_config(directory, target_url, rules, alertmanager_url)
    args = prometheus_args(binary, config, directory / "prometheus-data", port)
    url = start_url(port)
    with running(args, f"{url}/-/ready", directory / "prometheus.log"):
        yield url


def _wait_for_first_evaluation(api: PrometheusAPI) -> None:
    try:
        wait_until(
            lambda: api.query('up{job="schoolmon"} == 1'),
            timeout=20,
            message="Prometheus never scraped the target successfully",
        )
    except TimeoutError as error:
        raise TimeoutError(f"{error}: {api.scrape_errors()}") from None
    wait_until(
        lambda: api.query("job:schoolmon_schools:count"),
        timeout=20,
        message="the recording rules were never evaluated",
    )
