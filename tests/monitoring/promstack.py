"""Real Prometheus and Alertmanager for the monitoring tests, on loopback ports.

The pieces: a webhook receiver (a stdlib HTTP server in a thread) that keeps what
Alertmanager posts, test copies of the shipped configuration (shorter ``for``, the
collector's shortened offline threshold, intervals of a second, the test's own
addresses) and a context manager that runs a Debian binary until the test is done.
Nothing here sleeps a fixed time.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.support.collector import free_port
from tests.support.waiting import wait_until

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
PROMETHEUS_DIR = DASHBOARDS / "prometheus"
RULE_FILES = [
    PROMETHEUS_DIR / "rules" / "schoolmon-records.yml",
    PROMETHEUS_DIR / "rules" / "schoolmon-alerts.yml",
]
ALERTMANAGER_YML = DASHBOARDS / "alertmanager" / "alertmanager.yml"
GRAFANA_DIR = DASHBOARDS / "grafana"
# The shipped rules' offline threshold (SPEC.md's 15 minutes), as written in them.
SHIPPED_OFFLINE = (re.compile(r"\btime\(\) - 900\b"), re.compile(r"\[15m\]"))

BINARIES = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "amtool": ("amtool",),
}
PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
}


def require(tool: str) -> str:
    """Path of a Debian monitoring binary, or skip the test saying how to get it."""
    for candidate in BINARIES[tool]:
        found = shutil.which(candidate)
        if found:
            return found
    pytest.skip(f"{tool} is not installed: apt-get install {PACKAGES[tool]}")


# ------------------------------------------------------------------ HTTP servers
class WebhookHandler(http.server.BaseHTTPRequestHandler):
    """Hands every POSTed JSON document to the server's ``receiver``."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length))
        self.server.receiver.record(self.path, payload)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("webhook receiver answered %s", self.requestline)


@contextlib.contextmanager
def http_server(handler: type, **attributes: Any) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port in a thread; yield the base URL."""
    server = http.server.ThreadingHTTPServer((HOST, 0), handler)
    for name, value in attributes.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------ the target
@dataclass
class ScrapeTarget:
    """What Prometheus scrapes (a URL) and how a test changes the district behind it."""

    url: str
    district: Any


# ------------------------------------------------------------------ webhook
@dataclass
class WebhookReceiver:
    """Keeps every notification Alertmanager posts, by receiver path."""

    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, payload: dict[str, Any]) -> None:
        with self.lock:
            self.posts.append((path, payload))

    def alerts(self, path: str) -> list[dict[str, Any]]:
        """Every alert posted to ``path``, in order, each as Alertmanager sent it."""
        with self.lock:
            return [
                a for p, payload in self.posts if p == path for a in payload["alerts"]
            ]


# ------------------------------------------------------------------ test copies
def rule_copies(
    directory: Path, for_duration: str, offline_after_seconds: float | None = None
) -> list[Path]:
    """Copies of the shipped rule files with every ``for`` set to ``for_duration``
    and, when given, the 900 s / 15 m offline threshold set to the collector's."""
    copies = []
    for source in RULE_FILES:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        for group in document["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = for_duration
                if offline_after_seconds is not None:
                    rule["expr"] = offline_threshold(
                        rule["expr"], offline_after_seconds
                    )
        copy = directory / source.name
        copy.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        copies.append(copy)
    return copies


def offline_threshold(expr: str, seconds: float) -> str:
    """``expr`` with the shipped offline threshold replaced by ``seconds``."""
    after, window = SHIPPED_OFFLINE
    expr = after.sub(f"time() - {seconds:g}", expr)
    return window.sub(f"[{seconds:g}s]", expr)


def prometheus_config(
    directory: Path, target_url: str, rule_files: list[Path], alertmanager: str | None
) -> Path:
    """The shipped prometheus.yml aimed at the test's target, rules and Alertmanager."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(path) for path in rule_files]
    targets = [urlsplit(alertmanager).netloc] if alertmanager else []
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = targets

    target = urlsplit(target_url)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "schoolmon"]
    job.update(scrape_interval="1s", scrape_timeout="1s", scheme=target.scheme)
    job["metrics_path"] = target.path or "/metrics"
    job["static_configs"][0]["targets"] = [target.netloc]

    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def alertmanager_config(directory: Path, webhook_url: str) -> Path:
    """The shipped alertmanager.yml with second-long timings and every receiver
    replaced by a webhook to ``webhook_url``/<receiver name> (no e-mail leaves)."""
    config = yaml.safe_load(ALERTMANAGER_YML.read_text())
    config["global"] = {"resolve_timeout": config["global"]["resolve_timeout"]}
    for route in _routes(config["route"]):
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = "1s"
    config["receivers"] = [
        _webhook_receiver(r["name"], webhook_url) for r in config["receivers"]
    ]

    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _webhook_receiver(name: str, webhook_url: str) -> dict[str, Any]:
    hook = {"url": f"{webhook_url}/{name}", "send_resolved": True}
    return {"name": name, "webhook_configs": [hook]}


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _routes(child)


# ------------------------------------------------------------------ processes
@contextlib.contextmanager
def running(args: list[str], ready_url: str, log_path: Path) -> Iterator[None]:
    """Run ``args`` until the block ends; wait (bounded) for ``ready_url`` to answer."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, ready_url, log_path)
        logger.info("started %s (pid %d)", args[0], process.pid)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(process: subprocess.Popen, url: str, log_path: Path) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited: {_tail(log_path)}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=20, interval=0.1, message=f"{url} not ready")
    except TimeoutError as error:
        raise TimeoutError(f"{error}: {_tail(log_path)}") from None


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-2000:]


def prometheus_args(binary: str, config: Path, data: Path, port: int) -> list[str]:
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={HOST}:{port}",
        "--log.level=warn",
    ]


def alertmanager_args(binary: str, config: Path, data: Path, port: int) -> list[str]:
    return [
        binary,
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address={HOST}:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]


def start_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def new_port() -> int:
    return free_port()


# ------------------------------------------------------------------ Prometheus API
class PromQLError(Exception):
    """Prometheus refused or failed a query; the message is Prometheus' own."""


class PrometheusAPI:
    """The few calls of Prometheus' HTTP API the tests need."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant query; return its result list or raise PromQLError."""
        answer = httpx.post(
            f"{self.base_url}/api/v1/query", data={"query": expr}, timeout=10
        ).json()
        if answer["status"] != "success":
            raise PromQLError(f"{answer['errorType']}: {answer['error']} in {expr}")
        result = answer["data"]["result"]
        return result if isinstance(result, list) else [{"value": result}]

    def values(self, expr: str, label: str) -> dict[str, float]:
        """The query's samples as {value of ``label``: sample value}."""
        return {
            s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(expr)
        }

    def scrape_errors(self) -> list[str]:
        """Prometheus' last scrape error of each active target (empty when fine)."""
        answer = httpx.get(f"{self.base_url}/api/v1/targets", timeout=10).json()
        return [
            f"{target['scrapeUrl']}: {target['lastError']}"
            for target in answer["data"]["activeTargets"]
            if target["lastError"]
        ]

    def alerts(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.base_url}/api/v1/alerts", timeout=10).json()
        return answer["data"]["alerts"]
