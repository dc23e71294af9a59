"""schoolmon-server's command line: registry import, tokens, list, serve (on SQLite
and, where a test takes ``db_target``, on PostgreSQL)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from schoolmon.server.auth import hash_secret
from schoolmon.server.cli import main
from schoolmon.server.storage import Storage

from tests.support.collector import collector_process

pytestmark = pytest.mark.databases("sqlite", "postgresql")

FIXTURES = Path(__file__).parent.parent / "fixtures" / "registry"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_import_then_list_then_token(db_target: str):
    """Import prints a summary, list shows the schools, token prints only a token."""
    imported = run(
        "schools",
        "import",
        str(FIXTURES / "excel_bom_semicolon_crlf.csv"),
        "--db",
        db_target,
    )
    listed = run("schools", "list", "--db", db_target)
    token = run("schools", "token", "C02", "--role", "office", "--db", db_target)

    storage = Storage(db_target)
    stored = storage.enrollment_token(hash_secret(token.stdout.strip()))
    storage.close()
    assert (
        (imported.exit_code, imported.stdout),
        (listed.exit_code, listed.stdout),
        (token.exit_code, len(token.stdout), token.stdout.count("\n")),
        (stored["school"], stored["role"], stored["revoked_at"]),
    ) == (
        (0, "3 added, 0 updated, 0 unchanged, 0 deactivated\n"),
        (
            0,
            "C01\tprimary\tCẩm Phúc\tTrường Tiểu học Cẩm Phúc\n"
            "C02\tlower_secondary\tCẩm Phúc\tTrường THCS Cẩm Phúc\n"
            "C03\tpreschool\tCẩm Điền\tTrường Mầm non Cẩm Điền\n",
        ),
        (0, 44, 1),
        ("C02", "office", None),
    )


def test_bad_registry_lists_every_line_exits_non_zero_and_keeps_the_registry(
    db_path: Path,
):
    """reg-bad-rows from the command line: stderr lists lines, exit 1, no change."""
    env = {"SCHOOLMON_DB": str(db_path)}
    run("schools", "import", str(FIXTURES / "reimport_original.csv"), env=env)

    bad = run("schools", "import", str(FIXTURES / "bad_rows.csv"), env=env)
    listed = run("schools", "list", env=env)

    path = FIXTURES / "bad_rows.csv"
    assert (bad.exit_code, bad.stdout, bad.stderr.splitlines(), listed.stdout) == (
        1,
        "",
        [
            f"{path} line 3, column code: 'C01' is already on line 2; each school "
            "code once",
            f"{path} line 4, column level: 'kindergarden' is not a school level; "
            "accepted: preschool, primary, lower_secondary, upper_secondary, other "
            "(or mầm non, tiểu học, THCS, THPT)",
            f"{path} line 5, column name: the name is empty; a name is required",
        ],
        "C01\tprimary\tCẩm Phúc\tTrường Tiểu học Cẩm Phúc\n"
        "C02\tlower_secondary\tCẩm Phúc\tTrường THCS Cẩm Phúc\n"
        "C03\tpreschool\tCẩm Điền\tTrường Mầm non Cẩm Điền\n",
    )


def test_reimport_reports_the_removed_school(db_path: Path):
    """A school missing from the new file is named as kept inactive."""
    run(
        "schools",
        "import",
        str(FIXTURES / "reimport_original.csv"),
        "--db",
        str(db_path),
    )

    again = run(
        "schools",
        "import",
        str(FIXTURES / "reimport_renamed_and_removed.csv"),
        "--db",
        str(db_path),
    )

    assert (again.exit_code, again.stdout) == (
        0,
        "0 added, 1 updated, 1 unchanged, 1 deactivated\n"
        "school C03 is not in the file: marked inactive, data kept\n",
    )


def test_bad_input_is_one_line_on_stderr_and_a_non_zero_exit(db_path: Path, tmp_path):
    """Unknown school, bad config, unreachable PostgreSQL, unknown URL scheme: one
    clear line each."""
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nprot = 1\n", encoding="utf-8")
    Storage(db_path).close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = f"postgresql://schoolmon:s3cret@127.0.0.1:{port}/schoolmon"

    results = [
        run("schools", "token", "C99", "--db", str(db_path)),
        run("schools", "list", "--db", str(db_path), "--config", str(config)),
        run("schools", "list", "--db", unreachable),
        run("schools", "list", "--db", "sqlite:///var/lib/schoolmon.sqlite3"),
        run("schools", "token", "C01", "--role", "admin", "--db", str(db_path)),
    ]

    assert [(r.exit_code, r.stderr.count("\n"), r.stderr) for r in results[:4]] + [
        results[4].exit_code
    ] == [
        (1, 1, "Error: school 'C99' is not in the registry; see 'schools list'\n"),
        (
            1,
            1,
            f"Error: {config}: unknown key 'server.prot'; accepted keys here: "
            "host, port, db, max_body_bytes, report_interval_seconds, "
            "report_jitter_seconds\n",
        ),
        (
            1,
            1,
            f"Error: database 'postgresql://schoolmon:***@127.0.0.1:{port}/schoolmon': "
            f'connection failed: connection to server at "127.0.0.1", port {port} '
            "failed: Connection refused\n",
        ),
        (
            1,
            1,
            "Error: database 'sqlite:///var/lib/schoolmon.sqlite3': unknown URL "
            "scheme; give a SQLite file path or a postgresql:// URL\n",
        ),
        2,
    ]


def test_serve_runs_a_collector_process_that_answers(db_target: str):
    """python -m schoolmon.server serve answers, stops, and keeps its counts."""
    run(
        "schools",
        "import",
        str(FIXTURES / "reimport_original.csv"),
        "--db",
        db_target,
    )

    with collector_process(db_target) as (url, process):
        health = httpx.get(f"{url}/healthz").json()
        metrics = httpx.get(f"{url}/metrics").text

    storage = Storage(db_target)
    scrapes = [
        row["value"]
        for row in storage.counters()
        if row["name"] == "http_requests" and row["labels"]["route"] == "/metrics"
    ]
    storage.close()
    assert (
        health,
        'schoolmon_school_info{commune="Cẩm Điền",level="preschool",'
        'name="Trường Mầm non Cẩm Điền",school="C03"} 1.0' in metrics,
        process.returncode is not None,
        scrapes,
    ) == ({"status": "ok", "service": "schoolmon"}, True, True, [1])


def test_revoked_token_and_revoked_device_are_refused_by_the_collector(
    db_path: Path, tmp_path: Path
):
    """A revoked enrollment token no longer enrolls; a revoked device gets 401."""
    env = {"SCHOOLMON_DB": str(db_path)}
    run("schools", "import", str(FIXTURES / "excel_bom_semicolon_crlf.csv"), env=env)
    token = run("schools", "token", "C01", env=env).stdout.strip()
    with collector_process(db_path) as (url, _process):
        enrolled = httpx.post(
            f"{url}/api/v1/enroll", json={"token": token, "identity": {}}
        ).json()
        revoked_device = run("devices", "revoke", enrolled["device_id"], env=env)
        again = run("devices", "revoke", enrolled["device_id"], env=env)
        revoked_token = run("schools", "revoke-token", token, env=env)
        unknown = run("schools", "revoke-token", "not-a-token", env=env)
        report = httpx.post(
            f"{url}/api/v1/reports",
            json={"schema": 1},
            headers={"Authorization": f"Bearer {enrolled['credential']}"},
        )
        enroll = httpx.post(
            f"{url}/api/v1/enroll", json={"token": token, "identity": {}}
        )

    assert (
        (revoked_device.exit_code, revoked_device.stdout),
        (again.exit_code, again.stderr),
        (revoked_token.exit_code, revoked_token.stdout),
        (unknown.exit_code, unknown.stderr),
        (report.status_code, report.json()["error"]),
        (enroll.status_code, enroll.json()["error"]),
    ) == (
        (0, f"device {enrolled['device_id']} revoked\n"),
        (1, f"Error: device {enrolled['device_id']!r} is already revoked\n"),
        (0, "enrollment token revoked\n"),
        (1, "Error: no live enrollment token matches; nothing revoked\n"),
        (401, "revoked_credential"),
        (401, "revoked_token"),
    )
