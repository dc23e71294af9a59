"""``schoolmon-server``: run the collector and manage the school registry."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import platformdirs
from schoolmon.server.auth import ROLES, hash_secret, new_secret
from schoolmon.server.clock import utcnow
from schoolmon.server.config import Config, ConfigError, load_config
from schoolmon.server.registry import RegistryError, import_registry
from schoolmon.server.storage import Storage, StorageError

logger = logging.getLogger(__name__)


def default_db_path() -> Path:
    """The SQLite file used when neither --db, SCHOOLMON_DB nor the config names one."""
    return Path(platformdirs.user_data_dir("schoolmon")) / "schoolmon.sqlite3"


class Context:
    """Configuration and database of one command, opened on first use."""

    def __init__(self, config_path: str | None, db: str | None) -> None:
        self.config = _load(config_path)
        self.db = db or self.config.server.db or str(default_db_path())
        self._storage: Storage | None = None

    def storage(self) -> Storage:
        if self._storage is None:
            if "://" not in self.db:
                Path(self.db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            try:
                self._storage = Storage(self.db)
            except StorageError as error:
                raise click.ClickException(str(error)) from error
        return self._storage

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()


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
@click.option("-v", "--verbose", is_flag=True, help="Log detail (DEBUG).")
def main(verbose: bool) -> None:
    """schoolmon collector: stores agents' reports and serves the figures."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
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
    app = create_app(context.config, context.storage(), utcnow)
    logger.info("collector serving %s", context.db)
    uvicorn.run(app, host=host or settings.host, port=port or settings.port)


@main.group()
def schools() -> None:
    """The school registry."""


@schools.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@server_command
def schools_import(context: Context, file: str) -> None:
    """Import FILE.csv as the whole registry (all or nothing)."""
    try:
        summary = import_registry(context.storage(), file, utcnow())
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


@schools.command("token")
@click.argument("code")
@click.option("--role", type=click.Choice(ROLES), default="lab", show_default=True)
@server_command
def schools_token(context: Context, code: str, role: str) -> None:
    """Print a new enrollment token for school CODE (alone on standard output)."""
    storage = context.storage()
    school = storage.school(code)
    if school is None or not school["active"]:
        state = "is not in the registry" if school is None else "is inactive"
        raise click.ClickException(f"school {code!r} {state}; see 'schools list'")
    token = new_secret()
    storage.add_enrollment_token(hash_secret(token), code, role, utcnow())
    logger.info("enrollment token created for school %s, role %s", code, role)
    click.echo(token)


@schools.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="Show inactive too.")
@server_command
def schools_list(context: Context, include_inactive: bool) -> None:
    """List registered schools: code, level, commune, name (tab-separated)."""
    for school in context.storage().schools(active_only=not include_inactive):
        fields = [school["code"], school["level"], school["commune"], school["name"]]
        if include_inactive:
            fields.append("active" if school["active"] else "inactive")
        click.echo("\t".join(fields))
