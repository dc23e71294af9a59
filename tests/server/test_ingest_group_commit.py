"""Group commit: reports of concurrent requests share a transaction, and each is
answered only once that transaction is committed; a report that fails to store
fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from schoolmon.server.ingest import IngestResult, ReportWriter, ingest_report
from schoolmon.server.schemas import Report
from schoolmon.server.storage import StorageError

from tests.support.collector import enroll, probe_json, report_json
from tests.support.databases import query

pytestmark = pytest.mark.databases("sqlite", "postgresql")
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)


def counter(storage, name: str, labels: str) -> int | None:
    rows = query(
        storage,
        "SELECT value FROM counters WHERE name = ? AND labels = ?",
        [name, labels],
    )
    return rows[0][0] if rows else None


def stored_probes(storage) -> list[tuple[str, int]]:
    return query(storage, "SELECT device, seq FROM probe_samples ORDER BY 1, 2")


def probes_report(now: datetime, seqs: range) -> dict[str, Any]:
    probes = [probe_json(seq, now - timedelta(seconds=60 - seq)) for seq in seqs]
    return report_json(now, probes=probes)


def test_concurrent_reports_are_each_answered_and_stored_once(
    collector_url, http, registered, clock
):
    """Eight devices send three reports each at once: every answer counts its own
    samples, every sample is stored, each report is counted once."""
    devices = [enroll(http, registered, "C02") for _ in range(8)]

    def send(device: dict[str, Any]) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {device['credential']}"}
        with httpx.Client(base_url=collector_url, timeout=10) as client:
            return [
                client.post(
                    "/api/v1/reports",
                    json=probes_report(clock(), range(3 * n, 3 * n + 3)),
                    headers=headers,
                ).json()
                for n in range(3)
            ]

    with ThreadPoolExecutor(len(devices)) as pool:
        answers = [a for answers in pool.map(send, devices) for a in answers]

    assert [a["accepted"] for a in answers] == [
        {"probes": 3, "speedtests": 0, "inventory": 0}
    ] * 24
    assert stored_probes(registered) == sorted(
        (d["device_id"], seq) for d in devices for seq in range(9)
    )
    assert (
        counter(registered, "reports_received", '{"result":"accepted"}'),
        counter(registered, "samples_ingested", '{"kind":"probe","outcome":"stored"}'),
    ) == (24, 72)


def lab_device(storage, clock, device_id: str) -> dict[str, Any]:
    row = {
        "id": device_id,
        "school": "C02",
        "role": "lab",
        "credential_hash": f"hash-of-{device_id}",
        "enrolled_at": clock(),
    }
    storage.add_device(row)
    return storage.device(device_id)


async def store_together(
    writer: ReportWriter, storage, items: list[tuple[dict[str, Any], Report]], now
) -> list[IngestResult | BaseException]:
    """Hand every report to the writer while this thread holds the write lock,
    so that they wait together and are written in shared transactions."""
    with storage.transaction():
        tasks = [asyncio.create_task(writer.store(d, r, now)) for d, r in items]
        await asyncio.sleep(0)  # every task hands its report over
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_a_report_that_fails_to_store_fails_alone(registered, config, clock):
    """A report of a device missing from the database (its samples break the
    foreign key) gets its error; the reports beside it are stored and counted."""
    good = [lab_device(registered, clock, f"d_good{n}") for n in range(4)]
    missing = {"id": "d_missing", "school": "C02", "role": "lab", "last_seq": None}
    missing |= {"last_skew_seconds": None, "identity": None}
    devices = [*good[:2], missing, *good[2:]]
    report = Report.model_validate(probes_report(clock(), range(2)))
    writer = ReportWriter(registered, config)
    try:
        outcomes = asyncio.run(
            store_together(writer, registered, [(d, report) for d in devices], clock())
        )
    finally:
        writer.close()

    assert [isinstance(o, INTEGRITY_ERRORS) for o in outcomes] == [
        False,
        False,
        True,
        False,
        False,
    ]
    assert all(isinstance(o, IngestResult) for o in (*outcomes[:2], *outcomes[3:]))
    assert [o.accepted["probes"] for o in outcomes if isinstance(o, IngestResult)] == [
        2
    ] * 4
    assert stored_probes(registered) == [(d["id"], s) for d in good for s in (0, 1)]
    assert counter(registered, "reports_received", '{"result":"accepted"}') == 4


def test_savepoint_undoes_its_part_only(registered, clock):
    """The part that raised is undone; the transaction keeps what came before."""
    with registered.transaction():
        lab_device(registered, clock, "d_kept")
        with pytest.raises(ValueError), registered.savepoint():
            lab_device(registered, clock, "d_undone")
            raise ValueError("this part fails")

    assert [d["id"] for d in registered.devices()] == ["d_kept"]


def test_savepoint_needs_a_write_transaction(registered):
    """Outside a write transaction there is nothing to be a part of."""
    with (
        pytest.raises(StorageError, match="needs a write transaction"),
        registered.savepoint(),
    ):
        pass


def test_a_report_alone_is_stored_and_counted_in_its_own_transaction(
    registered, config, clock
):
    """ingest_report (no writer thread) stores and counts exactly like a batch."""
    device = lab_device(registered, clock, "d_alone")
    report = Report.model_validate(probes_report(clock(), range(3)))

    result = ingest_report(registered, device, report, clock(), config)

    assert (result.device_id, result.accepted["probes"]) == ("d_alone", 3)
    assert stored_probes(registered) == [("d_alone", s) for s in range(3)]
    assert counter(registered, "reports_received", '{"result":"accepted"}') == 1
