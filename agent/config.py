"""The agent's configuration: a TOML file a district can edit, checked on load.

Every key has a default, so the agent runs without a file. A bad value stops the
agent with one line naming the key, the value and what is accepted.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SERVER_PLACEHOLDER = "{server}"
SCOPES = ("collector", "internet")


class ConfigError(ValueError):
    """The configuration file has a bad key or value."""


@dataclass(frozen=True)
class Target:
    """One connectivity probe target."""

    name: str
    url: str
    scope: str = "internet"
    expect_status: int = 204
    expect_body_contains: str | None = None


DEFAULT_TARGETS = (
    Target(
        name="collector",
        url=f"{SERVER_PLACEHOLDER}/healthz",
        scope="collector",
        expect_status=200,
        expect_body_contains="schoolmon",
    ),
    Target(name="google", url="https://connectivitycheck.gstatic.com/generate_204"),
    Target(name="cloudflare", url="https://cp.cloudflare.com/generate_204"),
)


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each kind of wait."""

    connect_seconds: float = 10.0
    read_seconds: float = 30.0
    probe_seconds: float = 10.0
    inventory_section_seconds: float = 30.0


@dataclass(frozen=True)
class OutboxLimits:
    """Bounds of the durable queue and of one report."""

    max_items: int = 200_000
    max_bytes: int = 64 * 1024 * 1024
    batch_probes: int = 1000


@dataclass(frozen=True)
class Backoff:
    """Retry delays after a failed delivery (exponential, full jitter, capped)."""

    base_seconds: float = 30.0
    cap_seconds: float = 3600.0


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent reads from its configuration file."""

    server_url: str | None = None
    state_dir: str | None = None
    interval_seconds: float = 300.0
    jitter_seconds: float = 30.0
    inventory_interval_seconds: float = 3600.0
    inventory_resend_seconds: float = 86400.0
    targets: tuple[Target, ...] = DEFAULT_TARGETS
    timeouts: Timeouts = field(default_factory=Timeouts)
    outbox: OutboxLimits = field(default_factory=OutboxLimits)
    backoff: Backoff = field(default_factory=Backoff)


_RANGES = {
    "interval_seconds": (10, 86400),
    "jitter_seconds": (0, 3600),
    "inventory_interval_seconds": (60, 7 * 86400),
    "inventory_resend_seconds": (3600, 30 * 86400),
    "connect_seconds": (0.1, 300),
    "read_seconds": (0.1, 600),
    "probe_seconds": (0.1, 300),
    "inventory_section_seconds": (1, 600),
    "max_items": (100, 10_000_000),
    "max_bytes": (1_000_000, 10_000_000_000),
    "batch_probes": (1, 100_000),
    "base_seconds": (1, 3600),
    "cap_seconds": (1, 86400),
}


def load_config(path: Path | None) -> AgentConfig:
    """Read and check a TOML file; ``None`` gives the defaults."""
    if path is None:
        return AgentConfig()
    try:
        raw = tomllib.loads(read_text_file(Path(path)))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return config_from_mapping(raw)


def read_text_file(path: Path) -> str:
    """A configuration file's text: UTF-8, with or without a byte order mark.

    Windows editors write a BOM (PowerShell 5's ``Out-File -Encoding utf8``, old
    Notepad) or UTF-16 ("Unicode" in Notepad); the first is accepted, anything that
    is not UTF-8 is refused in one line saying how to fix it.
    """
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected a TOML file")
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    not_utf8 = ConfigError(f"{path}: not UTF-8 text; save it as UTF-8")
    if b"\x00" in data:  # UTF-16 without a BOM decodes as UTF-8 full of NULs
        raise not_utf8
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8 from exc


def config_from_mapping(raw: dict[str, Any]) -> AgentConfig:
    """Build a checked configuration from parsed TOML."""
    nested = {"timeouts": Timeouts, "outbox": OutboxLimits, "backoff": Backoff}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in nested:
            values[key] = _table(key, value, nested[key])
        elif key == "targets":
            values[key] = _targets(value)
        else:
            values[key] = _scalar(key, value, AgentConfig)
    return replace(AgentConfig(), **values)


def _table(name: str, value: Any, cls: type) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{name} = {value!r}: expected a table [{name}]")
    checked = {k: _scalar(f"{name}.{k}", v, cls) for k, v in value.items()}
    return cls(**checked)


def _scalar(key: str, value: Any, cls: type) -> Any:
    short = key.rsplit(".", 1)[-1]
    known = {f.name: f for f in fields(cls)}
    if short not in known or short in ("targets", "timeouts", "outbox", "backoff"):
        accepted = ", ".join(sorted(known))
        raise ConfigError(f"unknown configuration key {key!r}; known keys: {accepted}")
    if short == "server_url":
        return check_server_url(value, key)
    if short == "state_dir":
        return _text(key, value)
    return _number(key, short, value, known[short].type)


def _number(key: str, short: str, value: Any, type_name: Any) -> float | int:
    integral = type_name in (int, "int")
    kinds = (int,) if integral else (int, float)
    low, high = _RANGES[short]
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not low <= value <= high
    ):
        kind = "a whole number" if integral else "a number"
        raise ConfigError(f"{key} = {value!r}: expected {kind} from {low} to {high}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} = {value!r}: expected a non-empty text")
    return value


def check_server_url(value: Any, key: str = "server_url") -> str:
    """Check a collector URL (http or https with a host); return it without '/'."""
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{key} = {value!r}: expected an http:// or https:// URL with a host"
        )
    return value.rstrip("/")


def _targets(value: Any) -> tuple[Target, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"targets = {value!r}: expected one or more [[targets]]")
    return tuple(_target(i, item) for i, item in enumerate(value))


def _target(index: int, item: Any) -> Target:
    where = f"targets[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} = {item!r}: expected a table with name and url")
    unknown = set(item) - {f.name for f in fields(Target)}
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{sorted(unknown)[0]}; known: "
            "name, url, scope, expect_status, expect_body_contains"
        )
    name = _text(f"{where}.name", item.get("name"))
    url = _target_url(f"{where}.url", item.get("url"))
    return Target(name=name, url=url, **_target_checks(where, item))


def _target_url(key: str, value: Any) -> str:
    if isinstance(value, str) and value.startswith(SERVER_PLACEHOLDER):
        return value
    check_server_url(value, key)
    return value


def _target_checks(where: str, item: dict[str, Any]) -> dict[str, Any]:
    scope = item.get("scope", "internet")
    if scope not in SCOPES:
        raise ConfigError(f"{where}.scope = {scope!r}: expected one of {SCOPES}")
    status = item.get("expect_status", 204)
    if isinstance(status, bool) or not isinstance(status, int):
        raise ConfigError(f"{where}.expect_status = {status!r}: expected 100 to 599")
    if not 100 <= status <= 599:
        raise ConfigError(f"{where}.expect_status = {status!r}: expected 100 to 599")
    body = item.get("expect_body_contains")
    if body is not None:
        body = _text(f"{where}.expect_body_contains", body)
    return {"scope": scope, "expect_status": status, "expect_body_contains": body}


def resolve_targets(config: AgentConfig, server_url: str | None) -> list[Target]:
    """Targets with ``{server}`` filled in; collector targets skipped without one."""
    resolved = []
    for target in config.targets:
        if SERVER_PLACEHOLDER in target.url:
            if server_url is None:
                continue
            target = replace(
                target, url=target.url.replace(SERVER_PLACEHOLDER, server_url)
            )
        resolved.append(target)
    return resolved
