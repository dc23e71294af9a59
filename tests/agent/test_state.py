"""State directory choice, the owner-only credential file, restore detection."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import platformdirs
import pytest
from schoolmon.agent.state import (
    Credential,
    State,
    StateError,
    resolve_state_dir,
    restored_by_answer,
)

CREDENTIAL = Credential(
    device_id="d_3f2a",
    credential="s3cr3t",
    school="C01",
    role="lab",
    server_url="http://127.0.0.1:8080",
    report_interval_seconds=300,
    token="tok",
)


def test_state_dir_precedence_option_env_config_platform():
    """--state-dir beats SCHOOLMON_STATE_DIR beats the configuration beats platform."""
    env = {"SCHOOLMON_STATE_DIR": "/env/dir"}

    chosen = [
        resolve_state_dir("/opt/dir", env, "/conf/dir"),
        resolve_state_dir(None, env, "/conf/dir"),
        resolve_state_dir(None, {}, "/conf/dir"),
        resolve_state_dir(None, {}, None, service=False),
    ]

    assert chosen == [
        Path("/opt/dir"),
        Path("/env/dir"),
        Path("/conf/dir"),
        Path(platformdirs.user_data_dir("schoolmon", appauthor=False)),
    ]


def test_service_state_dir_is_the_platforms_place_for_service_state():
    """A service keeps its state in /var/lib/schoolmon on Linux and in
    %ProgramData%\\schoolmon on Windows, not in /usr/local/share."""
    windows_env = {"PROGRAMDATA": "D:\\ProgramData"}

    chosen = [
        resolve_state_dir(None, {}, None, service=True, platform="linux"),
        resolve_state_dir(None, windows_env, None, service=True, platform="win32"),
        resolve_state_dir(None, {}, None, service=True, platform="win32"),
    ]

    assert chosen == [
        Path("/var/lib/schoolmon"),
        Path("D:\\ProgramData") / "schoolmon",
        Path("C:\\ProgramData") / "schoolmon",
    ]


@pytest.mark.parametrize(
    ("option", "env", "configured", "message"),
    [
        ("", {}, None, "--state-dir = '': expected a directory path"),
        (None, {"SCHOOLMON_STATE_DIR": " "}, None, "SCHOOLMON_STATE_DIR = ' ': "),
    ],
)
def test_empty_state_dir_is_an_error_naming_its_source(
    option, env, configured, message
):
    """An empty path never falls back to the default silently."""
    with pytest.raises(StateError) as raised:
        resolve_state_dir(option, env, configured, service=False)

    assert str(raised.value).startswith(message)


def test_check_refuses_a_file_and_a_path_under_a_file_and_creates_nothing(tmp_path):
    """check() names a state directory that is a file or lies under one."""
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")

    errors = []
    for directory in (afile, afile / "sub" / "deeper"):
        with pytest.raises(StateError) as raised:
            State(directory).check()
        errors.append(str(raised.value))
    State(tmp_path / "new" / "state").check()

    assert errors == [
        f"cannot use state directory {afile}: it is a file",
        f"cannot create state directory {afile / 'sub' / 'deeper'}: {afile} is a file",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_credential_written_owner_only_and_read_back(tmp_path):
    """The credential file is 0600, complete JSON, and reads back equal."""
    state = State(tmp_path / "state")

    state.save_credential(CREDENTIAL)

    mode = stat.S_IMODE(state.credential_path.stat().st_mode)
    assert (oct(mode), state.load_credential()) == (oct(0o600), CREDENTIAL)
    assert json.loads(state.credential_path.read_text())["device_id"] == "d_3f2a"
    assert sorted(p.name for p in state.directory.iterdir()) == ["credential.json"]


def test_replacing_the_credential_leaves_no_temporary_file(tmp_path):
    """A second save replaces the file atomically and leaves nothing behind."""
    state = State(tmp_path)
    state.save_credential(CREDENTIAL)

    state.save_credential(Credential(**{**CREDENTIAL.__dict__, "credential": "new"}))

    assert state.load_credential().credential == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credential.json"]


def test_unreadable_credential_names_the_file(tmp_path):
    """A corrupted credential file is an error naming the file."""
    state = State(tmp_path)
    state.credential_path.write_text("{not json", encoding="utf-8")

    with pytest.raises(StateError, match=f"credential file {state.credential_path}"):
        state.load_credential()


def test_no_credential_before_enrollment(tmp_path):
    """Before enrollment there is no credential, and that is not an error."""
    assert State(tmp_path).load_credential() is None


@pytest.mark.parametrize(
    ("answer", "resent", "highest", "restored"),
    [
        ({"duplicates": {"probes": 500}}, {"probe": 500}, 1000, False),
        ({"duplicates": {"probes": 3}}, {"probe": 0}, 1000, True),
        ({"duplicates": {"probes": 0, "speedtests": 1}}, {}, 10, True),
        ({"duplicates": {"probes": 0}, "last_seq": 5000}, {}, 1200, True),
        ({"duplicates": {"probes": 0}, "last_seq": 1200}, {}, 1200, False),
        ({"accepted": {"probes": 20}}, {}, 20, False),
    ],
)
def test_restore_detected_from_the_answer(answer, resent, highest, restored):
    """Duplicates never sent from this state, or a higher last_seq, mean a restore."""
    assert restored_by_answer(answer, resent, highest) is restored
