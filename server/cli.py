"""``schoolmon-server``: run the collector, manage the school registry, write the
province report and print a district summary."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import platformdirs
import requests
from schoolmon.server.auth import ROLES, hash_secret
from schoolmon.server.clock import parse_wire, to_wire, utcnow
from schoolmon.server.config import LEVELS, Config, ConfigError, load_config
from schoolmon.server.figures import (
    detail_json,
    district_report,
    figures_for,
    school_figures,
    summary_json,
)
from schoolmon.server.policy import LAB_LEVELS
from schoolmon.server.registry import (
    RegistryError,
    import_registry,
    issue_enrollment_tokens,
    school_level,
)
from schoolmon.server.reporting import FORMATS, LANGS, render
from schoolmon.server.retention import prune as prune_storage
from schoolmon.server.simulate import simulate_command
from schoolmon.server.storage import Storage, StorageError

logger = logging.getLogger(__name__)


def default_db_path() -> Path:
    """The SQLite file used when neither --db, SCHOOLMON_DB nor the config names one."""
    return Path(platformdirs.user_data_dir("schoolmon")) / "schoolmon.sqlite3"


class Context:
    """Configuration and database of one command, opened on first use."""

    def __init__(self, config_path: str | None, db: str | None) -> None:
        self.config = _load(config_path)
        self.default_db = not (db or self.config.server.db)
        self.db = db or self.config.server.db or str(default_db_path())
        self._storage: Storage | None = None

    def storage(self, create: bool = False) -> Storage:
        """The database; only a command that may start one (``create``) makes the
        file, and missing folders only on the default path. A URL goes to Storage as
        it is (postgresql://; any other scheme is refused there in one line)."""
        if self._storage is None:
            try:
                if "://" not in self.db:
                    path = Path(self.db).expanduser()
                    _check_db_path(path, create, self.default_db)
                self._storage = Storage(self.db)
            except StorageError as error:
                raise click.ClickException(str(error)) from error
            except OSError as error:
                # Only the checks above touch the file system; sqlite's own failures
                # arrive as StorageError.
                raise click.ClickException(
                    f"database {self.db}: {error.strerror}"
                ) from error
        return self._storage

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()


def _check_db_path(path: Path, create: bool, make_folders: bool) -> None:
    """Refuse, in one sentence, a database path this command cannot use."""
    if path.is_file():
        return
    if path.exists():
        raise click.ClickException(f"database {path} is not a file")
    if not create:
        raise click.ClickException(
            f"database {path} does not exist; give --db the collector's database "
            "(a new one is made by 'schoolmon-server schools import FILE')"
        )
    if make_folders:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        state = "is not a folder" if path.parent.exists() else "does not exist"
        raise click.ClickException(
            f"cannot create database {path}: {path.parent} {state}"
        )


def _load(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


def server_command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command --db and --config and hand it an opened Context."""

    @click.option(
        "--db",
        envvar="SCHOOLMON_DB",
        help="SQLite file (or postgresql:// URL); also SCHOOLMON_DB.",
    )
    @click.option(
        "--config", "config_path", type=click.Path(), help="Collector TOML file."
    )
    @functools.wraps(function)
    def wrapper(db: str | None, config_path: str | None, **kwargs: Any) -> Any:
        context = Context(config_path, db)
        try:
            return function(context, **kwargs)
        finally:
            context.close()

    return wrapper


@click.group()
@click.version_option(package_name="schoolmon", prog_name="schoolmon-server")
@click.option("-v", "--verbose", is_flag=True, help="Log detail (DEBUG).")
def main(verbose: bool) -> None:
    """schoolmon collector: stores agents' reports and serves the figures."""
    # Commands print their own results; their logs only speak up when something is
    # wrong, unless -v. The service (serve) logs one INFO line per report.
    serving = click.get_current_context().invoked_subcommand == "serve"
    quiet = logging.INFO if serving else logging.WARNING
    logging.basicConfig(
        level=logging.DEBUG if verbose else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command()
@click.option("--host", help="Address to listen on (default from the config).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on.")
@server_command
def serve(context: Context, host: str | None, port: int | None) -> None:
    """Run the collector."""
    import uvicorn
    from schoolmon.server.api import create_app

    settings = context.config.server
    storage = context.storage(create=True)
    app = create_app(context.config, storage, utcnow)
    logger.info("collector serving %s", storage.name)
    # The collector logs each report itself; uvicorn's access log would add a second
    # line per request (agents probe /healthz every cycle) for nothing.
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        access_log=False,
    )


@main.group()
def schools() -> None:
    """The school registry."""


@schools.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@server_command
def schools_import(context: Context, file: str) -> None:
    """Import FILE.csv as the whole registry (all or nothing).

    Columns schoolmon does not use (notes, phone numbers) are ignored and named.
    """
    warnings: list[str] = []
    try:
        summary = import_registry(
            context.storage(create=True), file, utcnow(), on_warning=warnings.append
        )
    except RegistryError as error:
        for problem in error.problems:
            click.echo(problem, err=True)
        sys.exit(1)
    click.echo(
        f"{len(summary.added)} added, {len(summary.updated)} updated, "
        f"{len(summary.unchanged)} unchanged, {len(summary.deactivated)} deactivated"
    )
    for code in summary.deactivated:
        click.echo(f"school {code} is not in the file: marked inactive, data kept")
    for warning in warnings:
        click.echo(f"warning: {warning}")


@schools.command("token")
@click.argument("code")
@click.option("--role", type=click.Choice(ROLES), default="lab", show_default=True)
@server_command
def schools_token(context: Context, code: str, role: str) -> None:
    """Print a new enrollment token for school CODE (alone on standard output)."""
    try:
        tokens = issue_enrollment_tokens(context.storage(), [(code, role)], utcnow())
    except RegistryError as error:
        raise click.ClickException(str(error)) from error
    click.echo(tokens[(code, role)])


@schools.command("revoke-token")
@click.argument("token")
@server_command
def schools_revoke_token(context: Context, token: str) -> None:
    """Revoke an enrollment TOKEN (PCs enrolled with it keep their credentials)."""
    if not context.storage().revoke_enrollment_token(hash_secret(token), utcnow()):
        raise click.ClickException("no live enrollment token matches; nothing revoked")
    click.echo("enrollment token revoked")


@main.group()
def devices() -> None:
    """Enrolled devices."""


@devices.command("revoke")
@click.argument("device_id")
@server_command
def devices_revoke(context: Context, device_id: str) -> None:
    """Revoke DEVICE_ID's credential: its reports are refused (401) from now on."""
    storage = context.storage()
    if storage.device(device_id) is None:
        raise click.ClickException(f"device {device_id!r} is not enrolled")
    if not storage.revoke_device_credential(device_id, utcnow()):
        raise click.ClickException(f"device {device_id!r} is already revoked")
    logger.info("credential of device %s revoked", device_id)
    click.echo(f"device {device_id} revoked")


@schools.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="Show inactive too.")
@click.option(
    "--level",
    help=f"Only schools of this level ({', '.join(LEVELS)}; or mầm non, tiểu học, "
    "THCS, THPT).",
)
@click.option("--codes-only", is_flag=True, help="Print only the school codes.")
@server_command
def schools_list(
    context: Context, include_inactive: bool, level: str | None, codes_only: bool
) -> None:
    """List registered schools: code, level, commune, name (tab-separated)."""
    if level is not None:
        try:
            level = school_level(level)
        except ValueError as error:
            raise click.ClickException(f"--level {error}") from None
    for school in context.storage().schools(active_only=not include_inactive):
        if level is not None and school["level"] != level:
            continue
        fields = [school["code"], school["level"], school["commune"], school["name"]]
        if include_inactive:
            fields.append("active" if school["active"] else "inactive")
        click.echo(school["code"] if codes_only else "\t".join(fields))


def _check_choice(what: str, value: str, accepted: Iterable[str]) -> None:
    accepted = tuple(accepted)
    if value not in accepted:
        raise click.ClickException(
            f"{what} {value!r} is unknown; accepted: {', '.join(accepted)}"
        )


def _instant(value: str | None) -> datetime:
    if value is None:
        return utcnow()
    try:
        return parse_wire(value)
    except ValueError:
        raise click.ClickException(
            f"--at {value!r} is not an instant; give ISO 8601 such as "
            "2026-12-01T10:00:00Z"
        ) from None


# The province report ------------------------------------------------------------------


@main.command()
@click.option(
    "--format", "fmt", default="xlsx", show_default=True, help="csv, xlsx or json."
)
@click.option("--lang", default="vi", show_default=True, help="vi or en.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="File to write (default: standard output).",
)
@click.option(
    "--at", "at", help="End of the reporting period, ISO 8601 (default: now)."
)
@server_command
def report(
    context: Context, fmt: str, lang: str, out: str | None, at: str | None
) -> None:
    """Write the province report of the last 7 days (by default) of every school."""
    _check_choice("report format", fmt, FORMATS)
    _check_choice("report language", lang, LANGS)
    stdout = sys.stdout.buffer
    if out is None and fmt == "xlsx" and stdout.isatty():
        raise click.ClickException(
            "an XLSX report is binary and standard output is a terminal; "
            "give --out FILE.xlsx"
        )

    now = _instant(at)
    content = render(district_report(context.storage(), context.config, now), fmt, lang)
    if out is None:
        stdout.write(content)
        stdout.flush()
        return
    try:
        Path(out).write_bytes(content)
    except OSError as error:
        raise click.ClickException(f"cannot write {out}: {error.strerror}") from error
    logger.info("report written to %s", out)


# Retention ------------------------------------------------------------------------


@main.command()
@click.option("--at", "at", help="Prune as of this instant, ISO 8601 (default: now).")
@server_command
def prune(context: Context, at: str | None) -> None:
    """Delete raw probe samples older than the retention window (rolling their
    probe cycles up first), as the collector does every hour."""
    result = prune_storage(context.storage(), context.config, _instant(at))
    click.echo(
        f"before {to_wire(result.before)}: {result.samples_deleted} probe samples "
        f"deleted, {result.cycles_rolled_up} probe cycles rolled up "
        f"({result.runs_written} runs written)"
    )


# A district summary for people --------------------------------------------------------


@main.command()
@click.option("--url", help="Collector base URL (instead of reading the database).")
@click.option(
    "--db",
    help="SQLite file or postgresql:// URL (or SCHOOLMON_DB, or the configuration).",
)
@click.option("--config", "config_path", type=click.Path(), help="Collector TOML file.")
@click.option("--school", "code", help="Show this school and its devices.")
@click.option("--at", "at", help="Figures as of this instant, ISO 8601 (with --db).")
def summary(
    url: str | None,
    db: str | None,
    config_path: str | None,
    code: str | None,
    at: str | None,
) -> None:
    """Print a short summary of the district (or of one school) for people."""
    if url and (db or at):
        raise click.ClickException(
            "--url reads the collector's figures now: give --db with --at"
        )
    zone = ZoneInfo(_load(config_path).sessions.timezone)
    source = _ApiSource(url) if url else _DbSource(config_path, db, _instant(at))
    try:
        if code is None:
            _print_district(source.schools())
        else:
            _print_school(*source.school(code), zone)
    finally:
        source.close()


class _ApiSource:
    """Figures from a running collector's HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()

    def schools(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/schools")["schools"]

    def school(self, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        detail = self._get(f"/api/v1/schools/{code}")
        return detail, self._get(f"/api/v1/schools/{code}/devices")["devices"]

    def close(self) -> None:
        self.session.close()

    def _get(self, path: str) -> dict[str, Any]:
        try:
            answer = self.session.get(self.url + path, timeout=30)
            body = answer.json()
        except requests.RequestException as error:
            raise click.ClickException(
                f"cannot reach the collector at {self.url}: {error}"
            ) from None
        except ValueError:
            raise click.ClickException(
                f"{self.url}{path} did not answer JSON ({answer.status_code})"
            ) from None
        if answer.status_code != 200:
            raise click.ClickException(
                body.get("message", f"HTTP {answer.status_code}")
            )
        return body


class _DbSource:
    """Figures computed from the database, as the API would show them."""

    def __init__(self, config_path: str | None, db: str | None, now: datetime) -> None:
        self.context = Context(config_path, db or os.environ.get("SCHOOLMON_DB"))
        self.now = now

    def schools(self) -> list[dict[str, Any]]:
        figures = school_figures(self.context.storage(), self.context.config, self.now)
        return [f.info | {"figures": summary_json(f)} for f in figures.values()]

    def school(self, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        storage = self.context.storage()
        figures = figures_for(storage, self.context.config, self.now, code)
        if figures is None:
            raise click.ClickException(f"school {code!r} is not in the registry")
        devices = [_wire_row(d) for d in storage.devices(code)]
        return figures.info | {"figures": detail_json(figures)}, devices

    def close(self) -> None:
        self.context.close()


def _wire_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: to_wire(v) if isinstance(v, datetime) else v for k, v in row.items()}


def _print_district(schools: list[dict[str, Any]]) -> None:
    figures = [s["figures"] for s in schools]
    offline = [s["code"] for s in schools if s["figures"]["offline_now"]]
    targets = [
        s
        for s in schools
        if s["level"] in LAB_LEVELS and s["figures"]["lab_equipped"] is not None
    ]
    equipped = sum(1 for s in targets if s["figures"]["lab_equipped"])
    connected = sum(1 for f in figures if f["connected"])
    in_session = sum(1 for f in figures if f["in_session"])
    click.echo(f"Schools: {len(schools)} ({in_session} in session now)")
    click.echo(
        f"Offline now: {len(offline)}" + (f" ({', '.join(offline)})" if offline else "")
    )
    click.echo(
        f"Connected: {connected} of {len(schools)}{_share(connected, len(schools))}"
    )
    click.echo(
        f"Equipped lab: {equipped} of {len(targets)} schools with a lab target"
        f"{_share(equipped, len(targets))}"
    )


def _share(part: int, whole: int) -> str:
    return f" ({100 * part / whole:.1f} %)" if whole else ""


def _print_school(
    school: dict[str, Any], devices: list[dict[str, Any]], zone: ZoneInfo
) -> None:
    f = school["figures"]
    ratio = f["uptime_ratio"]
    where = f"{school['level']}, {school['commune']}"
    click.echo(f"School {school['code']} {school['name']} ({where})")
    click.echo(
        f"In session: {_yes(f['in_session'])}; offline now: {_yes(f['offline_now'])}; "
        f"last seen: {_local_time(f['last_seen'], zone)}"
    )
    click.echo(
        f"Internet now: {_up(f['internet_up'])}; uptime 7 d: "
        f"{'unknown' if ratio is None else f'{100 * ratio:.1f} %'}; "
        f"class: {f['connectivity_class']}; connected: {_yes(f['connected'])} "
        f"({f['connected_why']['en']})"
    )
    click.echo(f"Equipped lab: {f['lab']['why']['en']}")
    click.echo(f"Devices: {len(devices)}")
    for device in devices:
        click.echo(
            f"  {device['id']}  {device['role']:<7}  {device['hostname'] or '-'}  "
            f"last seen {_local_time(device['last_seen_at'], zone)}"
        )


def _local_time(wire: str | None, zone: ZoneInfo) -> str:
    """A wire instant as people of the district read it: local time to the second
    and the zone's name."""
    if wire is None:
        return "never"
    local = parse_wire(wire).astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {zone.key}"


def _yes(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "no"


def _up(value: bool | None) -> str:
    return "unknown" if value is None else "up" if value else "down"


main.add_command(simulate_command)
