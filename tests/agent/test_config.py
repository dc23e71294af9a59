"""The agent's TOML configuration: defaults, a district's file, clear errors."""

from __future__ import annotations

import pytest
from schoolmon.agent.config import (
    AgentConfig,
    Backoff,
    ConfigError,
    OutboxLimits,
    Target,
    Timeouts,
    config_from_mapping,
    load_config,
    resolve_targets,
)

from tests.agent.conftest import FIXTURES


def test_defaults_probe_the_collector_and_public_204_checks():
    """Without a file: 300 s interval, collector healthz and two 204 checks."""
    config = load_config(None)

    assert config == AgentConfig()
    assert (config.interval_seconds, config.jitter_seconds) == (300.0, 30.0)
    assert [(t.name, t.url, t.scope, t.expect_status) for t in config.targets] == [
        ("collector", "{server}/healthz", "collector", 200),
        (
            "google",
            "https://connectivitycheck.gstatic.com/generate_204",
            "internet",
            204,
        ),
        ("cloudflare", "https://cp.cloudflare.com/generate_204", "internet", 204),
    ]


def test_district_file_overrides_keys_and_targets():
    """A district's file sets its server, interval, limits and own targets."""
    config = load_config(FIXTURES / "inventory/agent-config-district.toml")

    assert config == AgentConfig(
        server_url="https://schoolmon.sgd.example.vn",
        interval_seconds=120,
        jitter_seconds=10,
        timeouts=Timeouts(connect_seconds=5, probe_seconds=4),
        outbox=OutboxLimits(max_items=50000, batch_probes=500),
        backoff=Backoff(),
        targets=(
            Target("collector", "{server}/healthz", "collector", 200, "schoolmon"),
            Target("vnnic", "https://www.vnnic.vn/", "internet", 200, None),
        ),
    )


def test_server_placeholder_is_filled_or_target_skipped():
    """{server} takes the enrolled server URL; without one that target is skipped."""
    config = AgentConfig()

    with_server = [t.url for t in resolve_targets(config, "http://127.0.0.1:8080")]
    without = [t.name for t in resolve_targets(config, None)]

    assert with_server[0] == "http://127.0.0.1:8080/healthz"
    assert without == ["google", "cloudflare"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"interval_seconds": -5},
            "interval_seconds = -5: expected a number from 10 to 86400",
        ),
        (
            {"server_url": "ftp://x"},
            "server_url = 'ftp://x': expected an http:// or https:// URL with a host",
        ),
        (
            {"intervall_seconds": 60},
            "unknown configuration key 'intervall_seconds'; known keys: ",
        ),
        (
            {"outbox": {"max_items": "many"}},
            "outbox.max_items = 'many': expected a whole number from 100 to 10000000",
        ),
        (
            {"targets": [{"name": "x", "url": "https://a.example", "scope": "lan"}]},
            "targets[0].scope = 'lan': expected one of ('collector', 'internet')",
        ),
        (
            {
                "targets": [
                    {"name": "x", "url": "https://a.example", "expect_status": 7}
                ]
            },
            "targets[0].expect_status = 7: expected 100 to 599",
        ),
    ],
)
def test_bad_values_give_one_line_naming_key_and_value(raw, message):
    """A bad key or value is refused in one line naming it and what is accepted."""
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw)

    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_invalid_toml_names_the_file(tmp_path):
    """A file that is not TOML is reported with its path."""
    path = tmp_path / "agent.toml"
    path.write_text("interval_seconds = = 3\n", encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value).startswith(f"{path}: not valid TOML: ")


def test_utf8_file_with_byte_order_mark_is_read(tmp_path):
    """A BOM (PowerShell 5's Out-File -Encoding utf8, old Notepad) is accepted."""
    text = 'server_url = "https://schoolmon.sgd.example.vn"\ninterval_seconds = 120\n'
    path = tmp_path / "agent.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    with_bom = load_config(path)

    assert with_bom == AgentConfig(
        server_url="https://schoolmon.sgd.example.vn", interval_seconds=120
    )


@pytest.mark.parametrize(
    "encoded",
    [
        "interval_seconds = 120\n".encode("utf-16"),
        "interval_seconds = 120\n".encode("utf-16-le"),
        "# Trung tâm, café\ninterval_seconds = 120\n".encode("cp1252"),
    ],
    ids=["utf-16-with-bom", "utf-16-le", "windows-1252"],
)
def test_text_that_is_not_utf8_is_refused_saying_how_to_fix_it(tmp_path, encoded):
    """UTF-16 (Notepad's "Unicode") or a legacy code page gives one clear line."""
    path = tmp_path / "c.toml"
    path.write_bytes(encoded)

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert str(raised.value) == f"{path}: not UTF-8 text; save it as UTF-8"
