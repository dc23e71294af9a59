"""The ``schoolmon-agent`` command line (the only place that prints)."""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from schoolmon.agent import __version__
from schoolmon.agent._requests import requests
from schoolmon.agent.config import (
    AgentConfig,
    ConfigError,
    check_server_url,
    load_config,
)
from schoolmon.agent.inventory import collect, inventory_document, iso_utc
from schoolmon.agent.inventory.normalize import identity_signals
from schoolmon.agent.outbox import Outbox
from schoolmon.agent.probes import Prober, boot_id
from schoolmon.agent.service import (
    Agent,
    revoked_message,
    run_speedtest_safely,
    speedtest_settings,
)
from schoolmon.agent.state import Credential, State, StateError, resolve_state_dir
from schoolmon.agent.transport import EnrollError, Transport

logger = logging.getLogger(__name__)


STATE_DIR_HELP = (
    "Directory for the credential and the outbox (also SCHOOLMON_STATE_DIR, or "
    "state_dir in the configuration). Default: /var/lib/schoolmon as root on Linux, "
    "%ProgramData%\\schoolmon for a Windows service, else the user's data directory."
)
CONFIG_HELP = (
    "Agent configuration file (TOML, UTF-8); without it the built-in defaults apply."
)


class Context:
    """What every command needs: configuration and state directory."""

    def __init__(self, config_path: str | None, state_dir: str | None) -> None:
        if config_path is not None and not config_path.strip():
            raise ConfigError(f"--config = {config_path!r}: expected a file path")
        self.config: AgentConfig = load_config(
            Path(config_path) if config_path is not None else None
        )
        directory = resolve_state_dir(state_dir, os.environ, self.config.state_dir)
        self.state = State(directory)
        self.state.check()

    def outbox(self) -> Outbox:
        self.state.ensure()
        limits = self.config.outbox
        return Outbox(self.state.outbox_path, limits.max_items, limits.max_bytes)

    def require_credential(self) -> Credential:
        credential = self.state.load_credential()
        if credential is None:
            raise StateError(
                f"not enrolled (no credential in {self.state.directory}); run "
                "schoolmon-agent enroll --server URL --token TOKEN"
            )
        return credential


def common(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config and --state-dir, build the Context, turn errors into one line."""

    @click.option("--config", "config_path", type=click.Path(), help=CONFIG_HELP)
    @click.option("--state-dir", type=click.Path(), help=STATE_DIR_HELP)
    @functools.wraps(command)
    def wrapper(config_path: str | None, state_dir: str | None, **kwargs: Any) -> Any:
        try:
            return command(Context(config_path, state_dir), **kwargs)
        except (ConfigError, StateError, EnrollError) as exc:
            raise click.ClickException(str(exc)) from exc
        except (OSError, sqlite3.Error) as exc:
            raise click.ClickException(_os_error(exc)) from exc

    return wrapper


def _os_error(exc: OSError | sqlite3.Error) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


@click.group()
@click.version_option(__version__, prog_name="schoolmon-agent")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
def main(verbose: bool) -> None:
    """schoolmon agent: inventory and connectivity of this PC."""
    _setup_logging(logging.INFO if verbose else logging.WARNING)


def _setup_logging(level: int) -> None:
    if sys.stderr is not None:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@main.command()
@click.option("--server", required=True, help="Collector URL, e.g. https://host:8443")
@click.option("--token", required=True, help="The school's enrollment token.")
@common
def enroll(ctx: Context, server: str, token: str) -> None:
    """Enroll this PC with the collector and store its credential."""
    server = check_server_url(server, "--server")
    sections = collect(
        ["system", "disks", "network"], ctx.config.timeouts.probe_seconds
    )
    identity = identity_signals(sections)
    transport = Transport(requests.Session(), server, timeouts=ctx.config.timeouts)
    answer = transport.enroll(token, identity["hostname"], identity, __version__)
    credential = Credential(
        device_id=answer["device_id"],
        credential=answer["credential"],
        school=answer.get("school"),
        role=answer.get("role"),
        server_url=server,
        report_interval_seconds=answer.get("report_interval_seconds"),
        token=token,
    )
    ctx.state.save_credential(credential)
    click.echo(
        f"enrolled as device {credential.device_id} of school {credential.school}"
    )


@main.command()
@common
def inventory(ctx: Context) -> None:
    """Print this machine's inventory as JSON."""
    sections = collect(timeout=ctx.config.timeouts.inventory_section_seconds)
    _print_json(inventory_document(sections))


def _agent(
    ctx: Context, outbox: Outbox, credential: Credential | None, **kw: Any
) -> Agent:
    session = requests.Session()
    transport = None
    if credential is not None:
        transport = Transport(
            session, credential.server_url, credential.credential, ctx.config.timeouts
        )
    section_timeout = ctx.config.timeouts.inventory_section_seconds
    return Agent(
        ctx.config,
        ctx.state,
        outbox,
        transport,
        Prober(requests.Session(), ctx.config.timeouts.probe_seconds),
        lambda: collect(timeout=section_timeout),
        wall=time.time,
        monotonic=time.monotonic,
        boot_id=boot_id(),
        credential=credential,
        **kw,
    )


@main.command()
@click.option(
    "--dry-run", is_flag=True, help="Print the report; send and store nothing."
)
@common
def once(ctx: Context, dry_run: bool) -> None:
    """Run one cycle; exit 0 only if the report was delivered."""
    if dry_run:
        _print_json(_dry_run_report(ctx))
        return
    credential = ctx.require_credential()
    with ctx.outbox() as outbox:
        agent = _agent(ctx, outbox, credential, sleep=time.sleep)
        outcome = agent.cycle()
        if not outcome.delivered:
            raise click.ClickException(_not_delivered(agent, outbox))
    click.echo(f"delivered: cycle {outcome.cycle}, {outcome.samples} probe samples")


def _not_delivered(agent: Agent, outbox: Outbox) -> str:
    """One line: why the report did not go, and that nothing was lost."""
    kept = f"{outbox.stats()['outbox_items']} items kept in the outbox"
    if agent.revoked:
        return f"{agent.last_error}; {kept}"
    error = agent.last_error or "no delivery attempted"
    if not error.startswith("collector unreachable"):
        error = f"report not delivered: {error}"
    return f"{error}; {kept}, will retry"


def _dry_run_report(ctx: Context) -> dict[str, Any]:
    """The report one cycle would send, with the health of the real outbox."""
    credential = ctx.state.load_credential()
    with Outbox(":memory:") as outbox:
        agent = _agent(ctx, outbox, None, sleep=time.sleep)
        if credential is not None:
            agent.credential = credential
        agent.cycle()
        items = outbox.next_batch(ctx.config.outbox.batch_probes)
        report = agent.make_report(items)
    stored, _ = _stored_outbox(ctx.state)
    report["health"].update(stored)
    return report


def _stored_outbox(state: State) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stats and status facts of the state's outbox, read without changing it."""
    if not state.outbox_path.exists():
        empty = {"outbox_items": 0, "outbox_bytes": 0, "set_aside_total": 0}
        return empty | {"dropped_total": {"probes": 0}}, {}
    with Outbox.read_only(state.outbox_path) as outbox:
        facts = {
            "last_delivery": outbox.get_meta("last_delivery_at"),
            "last_error": outbox.get_meta("last_error"),
        }
        return outbox.stats(), facts


@main.command()
@common
def run(ctx: Context) -> None:
    """Run the service loop until SIGTERM or SIGINT."""
    credential = ctx.require_credential()
    _log_to_file(ctx.state)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with ctx.outbox() as outbox:
        _agent(ctx, outbox, credential, sleep=stop.wait).run(stop)


def _log_to_file(state: State) -> None:
    import logging.handlers  # only the service loop logs to a file

    state.ensure()
    handler = logging.handlers.RotatingFileHandler(
        state.directory / "agent.log",
        maxBytes=1_000_000,
        backupCount=3,
        encoding="utf-8",
    )
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level, logging.INFO))


@main.command()
@click.option(
    "--backend",
    type=click.Choice(["speedtest-net", "collector"]),
    default="speedtest-net",
    show_default=True,
)
@common
def speedtest(ctx: Context, backend: str) -> None:
    """Run a speed test now and print the result as JSON."""
    settings = speedtest_settings(ctx.state, ctx.state.load_credential())
    result = run_speedtest_safely(backend, settings)
    _print_json(result)
    if not result.get("ok"):
        raise click.ClickException(f"speed test failed: {result.get('reason')}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@common
def status(ctx: Context, as_json: bool) -> None:
    """Show enrollment, last delivery, the last error and the outbox."""
    credential = ctx.state.load_credential()
    stats, stored = _stored_outbox(ctx.state)
    facts = _status_facts(ctx.state, credential, stored) | stats
    if as_json:
        _print_json(facts)
        return
    for key, value in _status_lines(facts).items():
        click.echo(f"{key}: {value}")


def _status_facts(
    state: State, credential: Credential | None, stored: dict[str, Any]
) -> dict[str, Any]:
    last = stored.get("last_delivery")
    error = stored.get("last_error") or {}
    revoked_at = credential.revoked_at if credential else None
    return {
        "school": credential.school if credential else None,
        "device_id": credential.device_id if credential else None,
        "server": credential.server_url if credential else None,
        "revoked_at": revoked_at,
        "state_dir": str(state.directory),
        "last_delivery": iso_utc(last) if last else None,
        "last_error": revoked_message(revoked_at)
        if revoked_at
        else error.get("message"),
        "last_error_at": iso_utc(error["at"]) if error.get("at") else None,
    }


def _status_lines(facts: dict[str, Any]) -> dict[str, str]:
    enrolled = facts["device_id"] is not None
    error = facts["last_error"]
    if error and facts["last_error_at"] and not facts["revoked_at"]:
        error = f"{error} (at {facts['last_error_at']})"
    return {
        "school": facts["school"] or "(not enrolled)",
        "device id": facts["device_id"] or "(not enrolled)",
        "server": facts["server"] or "(not enrolled)",
        "credential": _credential_state(enrolled, facts["revoked_at"]),
        "state dir": facts["state_dir"],
        "last delivery": facts["last_delivery"] or "never",
        "last error": error or "none",
        "outbox": f"{facts['outbox_items']} items, {facts['outbox_bytes']} bytes",
        "set aside": str(facts["set_aside_total"]),
        "dropped": ", ".join(f"{k} {v}" for k, v in facts["dropped_total"].items()),
    }


def _credential_state(enrolled: bool, revoked_at: str | None) -> str:
    if not enrolled:
        return "none: run schoolmon-agent enroll --server URL --token TOKEN"
    if revoked_at:
        return f"revoked by the district on {revoked_at}: ask the district technician"
    return "in use"
