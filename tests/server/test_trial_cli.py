"""schoolmon-server as a new user meets it: mistyped database paths, registry sheets
with notes columns, Vietnamese level words and local times in the summary."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from schoolmon.server.cli import main
from schoolmon.server.storage import Storage

from tests.support.collector import enroll, probe_json, report_json, wire_time

FIXTURES = Path(__file__).parent.parent / "fixtures" / "registry"
NEW_DB_HINT = (
    "give --db the collector's database (a new one is made by 'schoolmon-server "
    "schools import FILE')"
)


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


READ_ONLY_COMMANDS = [
    ("report", "--format", "csv"),
    ("report", "--format", "json", "--out", "r.json"),
    ("summary",),
    ("summary", "--school", "C01"),
    ("schools", "list"),
    ("schools", "token", "C01"),
    ("schools", "revoke-token", "abc"),
    ("devices", "revoke", "d_0123456789abcdef"),
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_command_on_a_missing_database_refuses_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
):
    """A mistyped --db is one line naming it; no folder, no empty database."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "nonexistent" / "x.sqlite3"

    done = run(*command, "--db", str(db))

    assert (done.exit_code, done.stdout, done.stderr, tree(tmp_path)) == (
        1,
        "",
        f"Error: database {db} does not exist; {NEW_DB_HINT}\n",
        [],
    )


@pytest.mark.parametrize(
    ("make", "db", "message"),
    [
        (
            lambda root: (root / "afile").write_text("not a folder"),
            "afile/x.sqlite3",
            "cannot create database {root}/afile/x.sqlite3: {root}/afile is not a "
            "folder",
        ),
        (
            lambda root: None,
            "missing/x.sqlite3",
            "cannot create database {root}/missing/x.sqlite3: {root}/missing does "
            "not exist",
        ),
        (
            lambda root: (root / "folder.sqlite3").mkdir(),
            "folder.sqlite3",
            "database {root}/folder.sqlite3 is not a file",
        ),
        (
            lambda root: (root / "notes.sqlite3").write_text("ghi chú\n"),
            "notes.sqlite3",
            "database '{root}/notes.sqlite3': file is not a database",
        ),
    ],
    ids=["parent is a file", "parent missing", "a folder", "not SQLite"],
)
@pytest.mark.parametrize(
    "command",
    [("serve",), ("schools", "import", str(FIXTURES / "reimport_original.csv"))],
    ids=["serve", "import"],
)
def test_unusable_database_path_is_one_line(
    tmp_path: Path, command: tuple[str, ...], make: Any, db: str, message: str
):
    """serve and import on a path they cannot use: one line naming it, no traceback."""
    make(tmp_path)
    before = tree(tmp_path)

    done = run(*command, "--db", str(tmp_path / db))

    assert (done.exit_code, done.stderr, tree(tmp_path)) == (
        1,
        "Error: " + message.format(root=tmp_path) + "\n",
        before,
    )


def test_import_creates_the_database_file_in_an_existing_folder(tmp_path: Path):
    """The registry import is how a district starts: it makes the file."""
    db = tmp_path / "schoolmon.sqlite3"

    done = run("schools", "import", str(FIXTURES / "reimport_original.csv"),
               "--db", str(db))  # fmt: skip

    assert (done.exit_code, done.stdout, tree(tmp_path)) == (
        0,
        "3 added, 0 updated, 0 unchanged, 0 deactivated\n",
        ["schoolmon.sqlite3"],
    )


def test_default_database_folder_is_created_by_import_only(tmp_path: Path):
    """Without --db, import makes the data folder; list before it does not."""
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "SCHOOLMON_DB": ""}
    default = tmp_path / "data" / "schoolmon" / "schoolmon.sqlite3"

    listed_before = run("schools", "list", env=env)
    before = tree(tmp_path)
    imported = run("schools", "import", str(FIXTURES / "reimport_original.csv"),
                   env=env)  # fmt: skip
    listed_after = run("schools", "list", "--codes-only", env=env)

    assert (
        (listed_before.exit_code, listed_before.stderr),
        before,
        imported.exit_code,
        (listed_after.exit_code, listed_after.stdout),
        default.is_file(),
    ) == (
        (1, f"Error: database {default} does not exist; {NEW_DB_HINT}\n"),
        [],
        0,
        (0, "C01\nC02\nC03\n"),
        True,
    )


def test_registry_with_notes_and_phone_columns_imports_and_names_them(tmp_path: Path):
    """Unknown columns are ignored, each named once in the import summary."""
    db = tmp_path / "schoolmon.sqlite3"
    path = FIXTURES / "notes_and_phone_columns.csv"

    done = run("schools", "import", str(path), "--db", str(db))
    storage = Storage(db)
    schools = [(s["code"], s["level"], s["students"]) for s in storage.schools(False)]
    storage.close()

    assert (done.exit_code, done.stdout, done.stderr, schools) == (
        0,
        "2 added, 0 updated, 0 unchanged, 0 deactivated\n"
        f"warning: {path} line 1: column 'ghi chú' is not used by schoolmon; "
        "ignored\n"
        f"warning: {path} line 1: column 'điện thoại' is not used by schoolmon; "
        "ignored\n"
        f"warning: {path} line 1: a column without a name is ignored\n",
        "",
        [("C01", "primary", 420), ("C02", "lower_secondary", 610)],
    )


@pytest.mark.parametrize(
    ("word", "listed"),
    [
        ("THCS", "C02\n"),
        ("thcs", "C02\n"),
        ("Mầm non", "C03\n"),
        ("mầm non", "C03\n"),
        (unicodedata.normalize("NFD", "Mầm Non"), "C03\n"),
        ("Tiểu học", "C01\n"),
        ("primary", "C01\n"),
        ("THPT", ""),
    ],
)
def test_schools_list_accepts_the_level_words_of_the_registry(
    registered, db_path: Path, word: str, listed: str
):
    """--level takes what the registry import takes, NFD spellings included."""
    done = run("schools", "list", "--codes-only", "--level", word,
               "--db", str(db_path))  # fmt: skip

    assert (done.exit_code, done.stdout, done.stderr) == (0, listed, "")


def test_summary_shows_times_in_the_configured_zone(
    http, registered, clock, db_path: Path, tmp_path: Path
):
    """Last-seen times read as the district's local time, to the second, zone named."""
    device = enroll(http, registered, "C02")
    report_at = clock().replace(microsecond=391577)
    http.post(
        "/api/v1/reports",
        json=report_json(report_at, probes=[probe_json(1, report_at)]),
        headers={"Authorization": f"Bearer {device['credential']}"},
    ).raise_for_status()
    config = tmp_path / "collector.toml"
    config.write_text('[sessions]\ntimezone = "Asia/Bangkok"\n', encoding="utf-8")
    at = wire_time(clock())

    default_zone = run("summary", "--db", str(db_path), "--at", at, "--school", "C02")
    bangkok = run("summary", "--db", str(db_path), "--at", at, "--school", "C02",
                  "--config", str(config))  # fmt: skip

    assert [
        [line for line in done.stdout.splitlines() if "last seen" in line]
        for done in (default_zone, bangkok)
    ] == [
        [
            "In session: yes; offline now: no; last seen: 2026-12-01 09:00:00 "
            "Asia/Ho_Chi_Minh",
            f"  {device['device_id']}  lab      LAB-PC01  last seen 2026-12-01 "
            "09:00:00 Asia/Ho_Chi_Minh",
        ],
        [
            "In session: yes; offline now: no; last seen: 2026-12-01 09:00:00 "
            "Asia/Bangkok",
            f"  {device['device_id']}  lab      LAB-PC01  last seen 2026-12-01 "
            "09:00:00 Asia/Bangkok",
        ],
    ]


def test_default_folder_that_cannot_be_made_is_one_line(tmp_path: Path):
    """A data folder under a file: import says so in one line, no traceback."""
    (tmp_path / "afile").write_text("not a folder", encoding="utf-8")
    env = {"XDG_DATA_HOME": str(tmp_path / "afile" / "data"), "SCHOOLMON_DB": ""}
    default = tmp_path / "afile" / "data" / "schoolmon" / "schoolmon.sqlite3"

    done = run("schools", "import", str(FIXTURES / "reimport_original.csv"), env=env)

    assert (done.exit_code, done.stderr, tree(tmp_path)) == (
        1,
        f"Error: database {default}: Not a directory\n",
        ["afile"],
    )
