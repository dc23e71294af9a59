"""A revoked and a forgotten credential, with the real collector app on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from schoolmon.agent.cli import main
from schoolmon.agent.service import revoked_message
from schoolmon.server.api import create_app
from schoolmon.server.auth import hash_secret, new_secret

from tests.netlab.matchers import Between, IsoUtc
from tests.support.collector import collector_in_thread


@pytest.fixture
def real_collector(registered, config, clock) -> Iterator[str]:
    """The collector app over the three-school registry, served by uvicorn."""
    with collector_in_thread(create_app(config, registered, clock)) as url:
        yield url


@pytest.fixture
def agent(tmp_path, real_collector, registered, clock):
    """`schoolmon-agent` with a state directory, enrolled in school C01."""
    config = tmp_path / "agent.toml"
    config.write_text(
        "jitter_seconds = 0\n[[targets]]\n"
        'name = "collector"\nurl = "{server}/healthz"\nscope = "collector"\n'
        'expect_status = 200\nexpect_body_contains = "schoolmon"\n',
        encoding="utf-8",
    )
    common = ["--config", str(config), "--state-dir", str(tmp_path / "state")]

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(main, [*args, *common], catch_exceptions=False)

    token = new_secret()
    registered.add_enrollment_token(hash_secret(token), "C01", "lab", clock())
    enrolled = invoke("enroll", "--server", real_collector, "--token", token)
    assert enrolled.exit_code == 0, enrolled.stderr
    return invoke


def devices(url: str) -> list[str]:
    answer = httpx.get(f"{url}/api/v1/schools/C01/devices", timeout=10)
    return [device["id"] for device in answer.json()["devices"]]


def credential_file(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "state/credential.json").read_text("utf-8"))


def test_revoked_pc_stops_sending_says_why_and_does_not_re_enroll(
    tmp_path, agent, real_collector, registered, clock
):
    """After the technician revokes the PC, `once` fails naming the revocation, the
    reports stay queued, no new device appears, and `status` says whom to ask."""
    delivered = agent("once")
    device_id = credential_file(tmp_path)["device_id"]
    registered.revoke_device_credential(device_id, clock())

    refused = agent("once")
    again = agent("once")
    status = json.loads(agent("status", "--json").stdout)

    revoked_at = credential_file(tmp_path)["revoked_at"]
    says = revoked_message(revoked_at)
    assert (delivered.exit_code, refused.exit_code, again.exit_code) == (0, 1, 1)
    assert refused.stderr == f"Error: {says}; 3 items kept in the outbox\n"
    assert again.stderr == f"Error: {says}; 6 items kept in the outbox\n"
    assert devices(real_collector) == [device_id]
    assert status == {
        "school": "C01",
        "device_id": device_id,
        "server": real_collector,
        "revoked_at": IsoUtc(),
        "state_dir": str(tmp_path / "state"),
        "last_delivery": IsoUtc(),
        "last_error": says,
        "last_error_at": IsoUtc(),
        "outbox_items": 6,
        "outbox_bytes": Between(500, 50_000_000),
        "dropped_total": {"probes": 0},
        "set_aside_total": 0,
    }


def test_a_credential_the_collector_forgot_is_replaced_and_once_delivers(
    tmp_path, agent, real_collector
):
    """An unknown credential (restored collector database) is replaced by enrolling
    again with the stored token, and the same `once` delivers with the new one."""
    stored = credential_file(tmp_path)
    forgotten = stored | {"credential": new_secret()}
    (tmp_path / "state/credential.json").write_text(json.dumps(forgotten), "utf-8")

    once = agent("once")

    renewed = credential_file(tmp_path)
    assert (once.exit_code, once.stdout) == (
        0,
        "delivered: cycle 1, 3 probe samples\n",
    )
    assert renewed == stored | {
        "credential": renewed["credential"],
        "device_id": renewed["device_id"],
    }
    assert renewed["credential"] not in (stored["credential"], forgotten["credential"])
    assert renewed["device_id"] in devices(real_collector)
