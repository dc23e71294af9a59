"""schoolmon-server report, schools list and summary: the province report matches the
API's figures cell by cell for a simulated district; bad input is one line."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest
from click.testing import CliRunner
from schoolmon.server import simulate
from schoolmon.server.api import create_app
from schoolmon.server.cli import main
from schoolmon.server.clock import parse_wire
from schoolmon.server.config import load_config
from schoolmon.server.registry import import_registry
from schoolmon.server.reporting import (
    CLASS_LABELS,
    LEVEL_LABELS,
    NO,
    NOT_APPLICABLE,
    YES,
)

from tests.support.collector import (
    collector_in_thread,
    enroll,
    probe_json,
    report_json,
    wire_time,
)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
UNKNOWN_WHY = "uptime unknown (no session time measured); no valid speed test in 7 days"


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# The report against the API, for a simulated district ---------------------------------


@pytest.fixture
def district_config(tmp_path: Path) -> Path:
    """Agents of the simulated district probe every 15 minutes."""
    path = tmp_path / "collector.toml"
    path.write_text("[server]\nreport_interval_seconds = 900\n", encoding="utf-8")
    return path


def simulate_district(storage, clock, config_file: Path, db_path: Path) -> dict:
    """Six schools of the sample registry, three days of history and one live cycle,
    sent over HTTP to a real collector; returns the API's full figures by code."""
    import_registry(storage, simulate.DEFAULT_REGISTRY, clock())
    options = simulate.SimOptions(
        seed=11, schools=6, days_history=3, offline_share=0.2, workers=4
    )
    schools = sorted(
        simulate.load_registry(simulate.DEFAULT_REGISTRY), key=lambda s: s.code
    )
    tokens = simulate.tokens_from_db(db_path, schools[:6], clock)
    app = create_app(load_config(config_file), storage, clock)
    with collector_in_thread(app) as url:
        summary = simulate.run(url, tokens, options, schools=schools[:6], clock=clock)
        assert summary.reports_failed == 0, summary.line()
        listed = httpx.get(f"{url}/api/v1/schools").json()["schools"]
        return {
            s["code"]: httpx.get(f"{url}/api/v1/schools/{s['code']}").json()
            for s in listed
        }


def expected_row(school: dict[str, Any]) -> list[Any]:
    """The report line the API's figures of a school call for (vi, display units)."""
    f, lab = school["figures"], school["figures"]["lab"]
    conn = f["connectivity"]

    def scaled(value: float | None, factor: float) -> float | None:
        return None if value is None else value * factor

    verdict = {None: NOT_APPLICABLE, True: YES, False: NO}
    last_seen = f["last_seen"] and parse_wire(f["last_seen"]).astimezone(HCM)
    return [
        school["code"],
        school["name"],
        LEVEL_LABELS[school["level"]].vi,
        school["commune"],
        verdict[f["connected"]].vi,
        f["connected_why"]["vi"],
        f["uptime_ratio"],
        scaled(conn["median_download_bytes_per_second"], 8 / 1e6),
        scaled(conn["median_upload_bytes_per_second"], 8 / 1e6),
        scaled(conn["median_latency_seconds"], 1000),
        CLASS_LABELS[f["connectivity_class"]].vi,
        lab["compliant"],
        lab["required"],
        verdict[lab["equipped"]].vi,
        lab["why"]["vi"],
        *(
            f["devices"][role]["seen_7d"]
            for role in ("lab", "office", "teacher", "other")
        ),
        f["devices_unsupported_os"],
        sum(f["asset_events"].values()),
        last_seen and last_seen.replace(tzinfo=None, microsecond=0).isoformat(),
    ]


def rounded(row: list[Any]) -> list[Any]:
    """Floats to 9 decimals: XLSX keeps 15 significant digits, not all 17."""
    return [round(v, 9) if isinstance(v, float) else v for v in row]


def sheet_rows(path: Path) -> tuple[list[list[Any]], list[Any]]:
    """The Schools sheet's rows (datetimes to the second) and the district totals."""
    book = openpyxl.load_workbook(path)
    rows = []
    for row in book["Trường"].iter_rows(min_row=2, values_only=True):
        *cells, seen = row
        if isinstance(seen, datetime):
            seen = (seen + timedelta(microseconds=500_000)).replace(microsecond=0)
        rows.append([*cells, seen and seen.isoformat()])
    totals = list(next(book["Tổng hợp"].iter_rows(min_row=2, values_only=True)))
    return rows, totals


def test_xlsx_report_matches_the_api_for_a_simulated_district(
    storage, clock, db_path, tmp_path, district_config
):
    """Every cell of the Schools sheet and the district totals equal what the API
    shows for the same instant, for reporting, silent and offline schools."""
    api = simulate_district(storage, clock, district_config, db_path)
    out = tmp_path / "report.xlsx"

    done = run(
        "report", "--format", "xlsx", "--lang", "vi", "--out", str(out),
        "--at", wire_time(clock()), "--db", str(db_path),
        "--config", str(district_config),
    )  # fmt: skip

    rows, totals = sheet_rows(out)
    targets = [
        s for s in api.values()
        if s["level"] in ("primary", "lower_secondary")
        and s["figures"]["lab_equipped"] is not None
    ]  # fmt: skip
    connected = sum(1 for s in api.values() if s["figures"]["connected"])
    equipped = sum(1 for s in targets if s["figures"]["lab_equipped"])
    assert (done.exit_code, done.stdout) == (0, "")
    assert [rounded(r) for r in rows] == [
        rounded(expected_row(api[code])) for code in sorted(api)
    ]
    assert totals[1:] == [
        len(api),
        connected,
        connected / len(api),
        len(targets),
        equipped,
        equipped / len(targets),
    ]
    # The simulated schools reported: their figures are real, not all unknown.
    assert sum(1 for s in api.values() if s["figures"]["uptime_ratio"] is not None) >= 4


# The report's forms and its bad input -------------------------------------------------


@pytest.fixture
def reported(http, registered, clock) -> dict[str, Any]:
    """C02 has one lab PC that reported at 09:00; the clock stands at 09:05."""
    device = enroll(http, registered, "C02")
    answer = http.post(
        "/api/v1/reports",
        json=report_json(clock(), probes=[probe_json(1, clock())]),
        headers={"Authorization": f"Bearer {device['credential']}"},
    )
    assert answer.status_code == 200, answer.text
    clock.advance(minutes=5)
    return device


def test_csv_report_goes_to_standard_output(reported, db_path, clock):
    """English CSV on stdout: BOM, header, one line per school, commas."""
    done = run("report", "--format", "csv", "--lang", "en", "--at", wire_time(clock()),
               "--db", str(db_path))  # fmt: skip

    text = done.stdout_bytes.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert (done.exit_code, text[0], [r[:7] for r in rows], [r[-1] for r in rows]) == (
        0,
        "\ufeff",
        [
            [
                "School code",
                "School name",
                "Level",
                "Commune",
                "Connected",
                "Connected: why",
                "Internet uptime",
            ],
            [
                "C01",
                "Trường Tiểu học Cẩm Phúc",
                "Primary",
                "Cẩm Phúc",
                "No",
                UNKNOWN_WHY,
                "",
            ],
            [
                "C02",
                "Trường THCS Cẩm Phúc",
                "Lower secondary",
                "Cẩm Phúc",
                "No",
                "uptime 100.0 % >= 95.0 %; no valid speed test in 7 days",
                "100.0%",
            ],
            [
                "C03",
                "Trường Mầm non Cẩm Điền",
                "Preschool",
                "Cẩm Điền",
                "No",
                UNKNOWN_WHY,
                "",
            ],
        ],  # fmt: skip
        ["Last report", "", "2026-12-01 09:00", ""],
    )


def test_json_report_to_a_file_has_the_period_and_every_school(
    reported, db_path, clock, tmp_path
):
    """JSON in base units: period of 7 days ending --at, one entry per school."""
    out = tmp_path / "report.json"

    done = run("report", "--format", "json", "--lang", "vi", "--out", str(out),
               "--at", wire_time(clock()), "--db", str(db_path))  # fmt: skip

    document = json.loads(out.read_text(encoding="utf-8"))
    c02 = document["schools"][1]
    assert (
        done.exit_code,
        document["period"],
        [s["code"] for s in document["schools"]],
        {k: c02[k] for k in ("uptime_ratio", "connectivity_class", "lab_pcs_compliant",
                             "lab_pcs_required", "pcs_by_role", "last_seen_at")},
    ) == (
        0,
        {"start": "2026-11-24T02:05:00Z", "end": "2026-12-01T02:05:00Z"},
        ["C01", "C02", "C03"],
        {
            "uptime_ratio": 1.0,
            "connectivity_class": "unknown",
            "lab_pcs_compliant": 0,
            "lab_pcs_required": 20,
            "pcs_by_role": {"lab": 1, "office": 0, "teacher": 0, "other": 0},
            "last_seen_at": "2026-12-01T02:00:00Z",
        },
    )  # fmt: skip


def test_bad_report_input_is_one_line_and_a_non_zero_exit(
    registered, db_path, tmp_path
):
    """Unknown format or language, a bad instant, an unwritable file: one line each."""
    db = ["--db", str(db_path)]
    results = [
        run("report", "--format", "pdf", *db),
        run("report", "--format", "csv", "--lang", "fr", *db),
        run("report", "--format", "csv", "--at", "yesterday", *db),
        run("report", "--format", "csv", "--out", str(tmp_path / "no" / "r.csv"), *db),
    ]

    assert [(r.exit_code, r.stderr) for r in results] == [
        (1, "Error: report format 'pdf' is unknown; accepted: csv, xlsx, json\n"),
        (1, "Error: report language 'fr' is unknown; accepted: vi, en\n"),
        (
            1,
            "Error: --at 'yesterday' is not an instant; give ISO 8601 such as "
            "2026-12-01T10:00:00Z\n",
        ),
        (
            1,
            f"Error: cannot write {tmp_path / 'no' / 'r.csv'}: "
            "No such file or directory\n",
        ),
    ]


def test_xlsx_to_a_terminal_is_refused(registered, db_path):
    """Binary XLSX on a terminal: one line asking for --out, nothing written."""
    primary, replica = pty.openpty()
    command = [sys.executable, "-m", "schoolmon.server", "report", "--format", "xlsx",
               "--db", str(db_path)]  # fmt: skip
    done = subprocess.run(
        command, stdout=replica, stderr=subprocess.PIPE, timeout=60, env=os.environ
    )
    os.close(replica)
    written = os.read(primary, 4096) if done.returncode == 0 else b""
    os.close(primary)

    assert (done.returncode, done.stderr.decode(), written) == (
        1,
        "Error: an XLSX report is binary and standard output is a terminal; "
        "give --out FILE.xlsx\n",
        b"",
    )


# schools list and summary -------------------------------------------------------------


def test_schools_list_by_level_and_codes_only(registered, db_path):
    """--level filters, --codes-only prints codes; an unknown level is one line."""
    db = ["--db", str(db_path)]
    results = [
        run("schools", "list", "--level", "primary", *db),
        run("schools", "list", "--codes-only", *db),
        run("schools", "list", "--level", "college", *db),
    ]

    assert [(r.exit_code, r.stdout, r.stderr) for r in results] == [
        (0, "C01\tprimary\tCẩm Phúc\tTrường Tiểu học Cẩm Phúc\n", ""),
        (0, "C01\nC02\nC03\n", ""),
        (
            1,
            "",
            "Error: --level 'college' is not a school level; accepted: preschool, "
            "primary, lower_secondary, upper_secondary, other (or mầm non, tiểu học, "
            "THCS, THPT)\n",
        ),
    ]


def test_summary_from_the_api_and_from_the_database_agree(
    reported, collector_url, db_path, clock
):
    """The district summary reads the same from a running collector and from its
    database at the same instant."""
    from_api = run("summary", "--url", collector_url)
    from_db = run("summary", "--db", str(db_path), "--at", wire_time(clock()))

    expected = (
        "Schools: 3 (3 in session now)\n"
        "Offline now: 2 (C01, C03)\n"
        "Connected: 0 of 3 (0.0 %)\n"
        "Equipped lab: 0 of 2 schools with a lab target (0.0 %)\n"
    )
    assert [(r.exit_code, r.stdout) for r in (from_api, from_db)] == [(0, expected)] * 2


def test_summary_of_one_school_lists_its_devices(
    reported, collector_url, db_path, clock
):
    """--school shows the school's figures and each device with its last report."""
    from_api = run("summary", "--url", collector_url, "--school", "C02")
    from_db = run("summary", "--db", str(db_path), "--at", wire_time(clock()),
                  "--school", "C02")  # fmt: skip

    expected = (
        "School C02 Trường THCS Cẩm Phúc (lower_secondary, Cẩm Phúc)\n"
        "In session: yes; offline now: no; last seen: 2026-12-01 09:00:00 "
        "Asia/Ho_Chi_Minh\n"
        "Internet now: up; uptime 7 d: 100.0 %; class: unknown; connected: no "
        "(uptime 100.0 % >= 95.0 %; no valid speed test in 7 days)\n"
        "Equipped lab: 0 of 20 required lab PCs compliant: 1 with an unknown CPU "
        "count, 1 with unknown RAM, 1 with an unknown system disk size\n"
        "Devices: 1\n"
        f"  {reported['device_id']}  lab      LAB-PC01  "
        "last seen 2026-12-01 09:00:00 Asia/Ho_Chi_Minh\n"
    )
    assert [(r.exit_code, r.stdout) for r in (from_api, from_db)] == [(0, expected)] * 2


def test_bad_summary_input_is_one_line(registered, db_path):
    """Unknown school, unreachable collector, --url with --db: one line each."""
    results = [
        run("summary", "--db", str(db_path), "--school", "C99"),
        run("summary", "--url", "http://127.0.0.1:9", "--school", "C01"),
        run("summary", "--url", "http://127.0.0.1:9", "--db", str(db_path)),
    ]

    unreachable = "Error: cannot reach the collector at http://127.0.0.1:9: "
    assert [
        (r.exit_code, r.stderr.count("\n"), r.stderr.startswith(unreachable))
        for r in results
    ] + [results[0].stderr, results[2].stderr] == [
        (1, 1, False),
        (1, 1, True),
        (1, 1, False),
        "Error: school 'C99' is not in the registry\n",
        "Error: --url reads the collector's figures now: give --db with --at\n",
    ]
