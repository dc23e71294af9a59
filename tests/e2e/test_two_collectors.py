"""Two collector processes on one PostgreSQL database behave as one collector.

A province runs several stateless collectors behind a load balancer. Here two real
``schoolmon-server serve`` processes share one throwaway PostgreSQL database; PCs
enroll through both at the same instant, every report is delivered to both at once
(an agent retrying through the balancer after a timeout), and a scraper reads
``/metrics`` from one process then the other while the load runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from schoolmon.server.auth import hash_secret, new_secret
from schoolmon.server.clock import utcnow
from schoolmon.server.storage import Storage

from tests.server.test_ingest_identity import SimAgent, lab_pc
from tests.support.collector import collector_process, probe_json, report_json
from tests.support.databases import query

pytestmark = pytest.mark.postgres

RAM_UPGRADE = Path(__file__).parents[1] / "fixtures/assets/inv-ram-upgrade.json"
SCHOOLS = ("C01", "C02")
PCS_PER_SCHOOL = 6
REPORTS_PER_PC = 8
SAMPLES_PER_REPORT = 3
COUNTERS = (
    "schoolmon_asset_events_total",
    "schoolmon_reports_received_total",
    "schoolmon_samples_ingested_total",
    "schoolmon_http_requests_total",
)


def school_row(code: str) -> dict[str, Any]:
    return {
        "code": code,
        "name": f"Trường {code}",
        "level": "primary",
        "commune": "Xã Một",
        "has_informatics": 1,
        "lab_pcs_required": 4,
    }


def identity(school: str, number: int) -> dict[str, Any]:
    serial = f"SN-{school}-{number:03d}"
    return {
        "machine_id": f"mid-{school}-{number:03d}",
        "smbios_uuid": None,
        "system_serial": serial,
        "board_serial": None,
        "disk_serial": f"DISK-{serial}",
        "macs": [f"B8:CA:3A:00:{int(school[1:]):02X}:{number:02X}"],
        "hostname": f"LAB-{school}-{number:02d}",
    }


@pytest.fixture
def database(postgres_url: str) -> Storage:
    """The shared database, migrated, with two schools and one token each."""
    storage = Storage(postgres_url)
    storage.import_schools([school_row(code) for code in SCHOOLS], utcnow())
    yield storage
    storage.close()


def add_token(storage: Storage, school: str) -> str:
    token = new_secret()
    storage.add_enrollment_token(hash_secret(token), school, "lab", utcnow())
    return token


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads released by one barrier; return their results."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=10)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(released, calls))


def enroll_through_both(urls: list[str], token: str, pc: dict[str, Any]) -> list[dict]:
    def call(url: str) -> Callable[[], dict]:
        body = {"token": token, "hostname": pc["hostname"], "identity": pc}
        return lambda: httpx.post(f"{url}/api/v1/enroll", json=body, timeout=30)

    answers = at_once([call(url) for url in urls])
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    return [a.json() for a in answers]


def counter_totals(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    totals = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in COUNTERS:
                totals[(sample.name, tuple(sorted(sample.labels.items())))] = (
                    sample.value
                )
    return totals


@contextlib.contextmanager
def two_collectors(url: str) -> Iterator[tuple[list[str], Scraper]]:
    """Two collector processes on the database ``url`` and a scraper reading
    their /metrics in turn; yield their URLs and the scraper (stopped on exit)."""
    with (
        collector_process(url) as (url_a, _),
        collector_process(url) as (url_b, _),
    ):
        scraper = Scraper([url_a, url_b])
        scraper.start()
        try:
            yield [url_a, url_b], scraper
        finally:
            scraper.finish()


class Scraper(threading.Thread):
    """Scrapes the collectors in turn until stopped; keeps every reading."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.urls, self.readings = urls, []
        self.done = threading.Event()

    def finish(self) -> None:
        """Stop scraping and wait for the scrape under way."""
        self.done.set()
        if self.is_alive():
            self.join(timeout=60)

    def run(self) -> None:
        turn = 0
        while not self.done.is_set():
            url = self.urls[turn % len(self.urls)]
            self.readings.append((url, counter_totals(url)))
            turn += 1


def post_report(url: str, body: dict, headers: dict) -> Callable[[], httpx.Response]:
    return lambda: httpx.post(
        f"{url}/api/v1/reports", json=body, headers=headers, timeout=30
    )


def send_reports(urls: list[str], device: dict[str, Any], first_seq: int) -> None:
    """Deliver each of a device's reports to both collectors at the same instant."""
    start = utcnow() - timedelta(minutes=5 * REPORTS_PER_PC)
    headers = {"Authorization": f"Bearer {device['credential']}"}
    for number in range(REPORTS_PER_PC):
        sent = start + timedelta(minutes=5 * number)
        seq = first_seq + number * SAMPLES_PER_REPORT
        probes = [
            probe_json(seq + k, sent, run="run-1", cycle=number, kind=kind)
            for k, kind in enumerate(("dns", "tcp", "https"))
        ]
        body = report_json(sent, probes=probes)
        answers = at_once([post_report(url, body, headers) for url in urls])
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]


def live_one(storage: Storage, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Of two enrollments of one PC, the answer whose credential is the stored one
    (the later enrollment replaces the earlier credential)."""
    assert answers[0]["device_id"] == answers[1]["device_id"]
    stored = storage.device(answers[0]["device_id"])["credential_hash"]
    live = [a for a in answers if hash_secret(a["credential"]) == stored]
    assert len(live) == 1, answers
    return live[0]


def enroll_all(storage: Storage, urls: list[str]) -> list[dict[str, Any]]:
    devices = []
    for school in SCHOOLS:
        token = add_token(storage, school)
        for number in range(PCS_PER_SCHOOL):
            answers = enroll_through_both(urls, token, identity(school, number))
            devices.append(live_one(storage, answers))
    return devices


def stored_samples(storage: Storage) -> tuple[int, int]:
    row = storage.db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT device || '/' || run || '/' || seq) "
        "FROM probe_samples"
    ).fetchone()
    return tuple(row)


def test_two_collectors_on_one_database_lose_and_double_nothing(database, postgres_url):
    with two_collectors(postgres_url) as (urls, scraper):
        devices = enroll_all(database, urls)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda d: send_reports(urls, d, 1), devices))
        scraper.finish()
        final = [counter_totals(url) for url in urls]

    expected = len(devices) * REPORTS_PER_PC * SAMPLES_PER_REPORT
    assert stored_samples(database) == (expected, expected)
    assert len(database.devices()) == len(SCHOOLS) * PCS_PER_SCHOOL
    assert_counters(final, reports=2 * len(devices) * REPORTS_PER_PC, samples=expected)
    assert_never_backwards(scraper.readings)


def assert_counters(finals: list[dict], reports: int, samples: int) -> None:
    """Each process answers with the same, database-wide totals."""
    probe = ("schoolmon_samples_ingested_total", (("kind", "probe"),))
    for totals in finals:
        assert totals[(probe[0], (*probe[1], ("outcome", "stored")))] == samples
        assert totals[(probe[0], (*probe[1], ("outcome", "duplicate")))] == samples
        accepted = ("schoolmon_reports_received_total", (("result", "accepted"),))
        assert totals[accepted] == reports


def assert_never_backwards(readings: list[tuple[str, dict]]) -> None:
    """Scrapes alternate between the processes; no counter ever decreases."""
    assert len(readings) >= 4
    assert {url for url, _ in readings} == {url for url, _ in readings[:2]}
    previous: dict[tuple[str, tuple], float] = {}
    for url, totals in readings:
        for key, value in totals.items():
            assert value >= previous.get(key, 0), (url, key, value, previous[key])
        assert set(previous) <= set(totals), (url, set(previous) - set(totals))
        previous = totals


def upgraded_pcs(count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``count`` lab PCs, each before and after its RAM upgrade (case
    inv-ram-upgrade), told apart by their MAC and disk serial."""
    case = json.loads(RAM_UPGRADE.read_text())
    pcs = []
    for number in range(count):
        before = lab_pc(**case["before"])
        before["network"]["adapters"][0]["mac"] = f"1C:6F:65:AA:02:{number:02X}"
        before["disks"]["physical"][0]["serial"] = f"WD-WCC2EAB2{number:04d}"
        after = copy.deepcopy(before) | {"memory": case["after"]["memory"]}
        pcs.append((before, after))
    return pcs


def upgrade_through_both(urls: list[str], token: str, pc: tuple[dict, dict]) -> str:
    """Enroll a PC and send its inventory through the first collector, then send
    the upgraded inventory to both at the same instant; return its device id."""
    before, after = pc
    with httpx.Client(base_url=urls[0], timeout=30) as http:
        agent = SimAgent(http, before)
        assert agent.enroll(token).status_code == 201
        assert agent.send(agent.report(utcnow())).status_code == 200
        agent.sections = after
        body = agent.report(utcnow())
    headers = {"Authorization": f"Bearer {agent.credential}"}
    answers = at_once([post_report(url, body, headers) for url in urls])
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    return agent.device_id


def test_asset_events_are_recorded_once_and_never_counted_backwards(
    database, postgres_url
):
    """The same upgraded inventory reaches both processes at once: one event per
    PC, and ``asset_events_total`` from either process is what the database holds."""
    with two_collectors(postgres_url) as (urls, scraper):
        token = add_token(database, "C01")
        devices = [upgrade_through_both(urls, token, pc) for pc in upgraded_pcs(4)]
        scraper.finish()
        final = [counter_totals(url) for url in urls]

    changed = query(
        database,
        "SELECT device, COUNT(*) FROM asset_events "
        "WHERE kind = 'component_changed' GROUP BY device ORDER BY device",
    )
    stored = query(
        database, "SELECT school, kind, COUNT(*) FROM asset_events GROUP BY 1, 2"
    )
    exported = {
        (key, value)
        for totals in final
        for key, value in totals.items()
        if key[0] == "schoolmon_asset_events_total" and value
    }
    assert changed == [(device, 1) for device in sorted(devices)]
    assert exported == {
        (
            ("schoolmon_asset_events_total", (("kind", kind), ("school", school))),
            count,
        )
        for school, kind, count in stored
    }
    assert_never_backwards(scraper.readings)
