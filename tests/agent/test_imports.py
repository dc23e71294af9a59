"""What the agent's own process loads: the real command in a child Python process.

The test process itself may hold any module, so each check runs the agent in a fresh
interpreter against the loopback collector and reads that interpreter's
``sys.modules``. ``-W error`` turns any warning the imports emit into a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from schoolmon.agent._requests import detection_optional
from schoolmon.agent.cli import main

# Modules a normal cycle must not load: character detection (requests' text
# guessing), the collector's stack, the speed-test tool, and what only some
# commands need (psutil for the inventory and Windows' boot id, platformdirs for a
# default state directory, logging.handlers for `run`'s log file).
HEAVY = (
    "chardet",
    "charset_normalizer",
    "pydantic",
    "fastapi",
    "schoolmon.server",
    "speedtest",
    "schoolmon.agent.speedtest",
    "psutil",
    "platformdirs",
    "logging.handlers",
)

RUN_COMMAND = """\
import json, sys
from schoolmon.agent._requests import detection_optional
from schoolmon.agent.cli import main
try:
    main(sys.argv[2:], prog_name="schoolmon-agent")
except SystemExit as stop:
    code = stop.code
loaded = sorted(name for name, module in sys.modules.items() if module is not None)
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({"exit": code, "modules": loaded}, out)
"""

ENROLL = """\
import json, sys
from schoolmon.agent._requests import requests
from schoolmon.agent.transport import EnrollError, Transport
session = requests.Session()
session.trust_env = False
try:
    result = Transport(session, sys.argv[1]).enroll("tok", "PC", {}, "0.1.0")
except EnrollError as exc:
    result = {"error": str(exc)}
result["charset_normalizer"] = sys.modules.get("charset_normalizer") is not None
print(json.dumps(result))
"""


def child(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_PROXY": "127.0.0.1"}
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=120,
    )


def heavy_after(tmp_path, *command: str) -> tuple[int, set[str]]:
    """Run one agent command in a fresh interpreter; its exit code and heavy modules."""
    out = tmp_path / "modules.json"
    done = child(RUN_COMMAND, str(out), *command)
    assert done.stderr == ""
    seen = json.loads(out.read_text(encoding="utf-8"))
    return seen["exit"], set(seen["modules"]) & set(HEAVY)


def test_once_loads_no_character_detection_and_psutil_only_for_the_inventory(
    tmp_path, collector
):
    """The first `once` collects the inventory (psutil); a normal cycle after it
    loads none of the heavy modules on Linux (Windows reads its boot id with
    psutil); no command loads charset_normalizer, pydantic or speedtest-cli."""
    config = tmp_path / "agent.toml"
    config.write_text(
        "jitter_seconds = 0\n[[targets]]\n"
        'name = "collector"\nurl = "{server}/healthz"\nscope = "collector"\n',
        encoding="utf-8",
    )
    common = ["--config", str(config), "--state-dir", str(tmp_path / "state")]
    enrolled = CliRunner().invoke(
        main, ["enroll", "--server", collector.url, "--token", "t", *common]
    )
    assert enrolled.exit_code == 0, enrolled.output

    first = heavy_after(tmp_path, "once", *common)
    normal = heavy_after(tmp_path, "once", *common)

    boot_id_needs = set() if sys.platform.startswith("linux") else {"psutil"}
    assert first == (0, {"psutil"})
    assert normal == (0, boot_id_needs)
    assert [report["inventory"] is not None for report in collector.reports] == [
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            (
                201,
                {},
                json.dumps(
                    {
                        "device_id": "d_0001",
                        "credential": "s",
                        "school": "Trường Tiểu học Phù Đổng",
                    },
                    ensure_ascii=False,
                ).encode("utf-8"),
            ),
            {
                "device_id": "d_0001",
                "credential": "s",
                "school": "Trường Tiểu học Phù Đổng",
                "charset_normalizer": False,
            },
        ),
        (
            (
                403,
                {"Content-Type": "application/octet-stream"},
                "Mã trường không hợp lệ".encode(),
            ),
            {
                "error": "enrollment refused (403): Mã trường không hợp lệ",
                "charset_normalizer": False,
            },
        ),
    ],
    ids=["json-answer-utf8", "undeclared-text-utf8"],
)
def test_answers_decode_as_utf8_without_character_detection(collector, reply, expected):
    """In the agent's process requests has no character detection: the
    collector's JSON (no charset) still decodes as UTF-8, and a text answer of
    undeclared encoding falls back to UTF-8, without a warning."""
    collector.enroll_reply = reply

    done = child(ENROLL, collector.url)

    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == expected


@pytest.mark.parametrize(
    ("version", "optional"),
    [
        ("2.31.0", False),
        ("2.32.0", True),
        ("2.32.0rc1", True),
        ("2.34.2", True),
        ("3.0.0", True),
        ("1.99", False),
        ("", False),
        ("dev", False),
    ],
)
def test_character_detection_is_left_out_only_where_requests_allows_it(
    version, optional
):
    """requests 2.31 (still accepted by the project) needs chardet or
    charset_normalizer to import; 2.32 and later do without, and an unknown or
    unreadable version is treated as needing one."""
    assert detection_optional(version) is optional
