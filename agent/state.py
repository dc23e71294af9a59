"""The agent's state directory: where it lives, and the credential kept in it.

The state directory holds the credential (owner-only file) and the outbox. It can be
put on a persistent path (``--state-dir``, ``SCHOOLMON_STATE_DIR`` or ``state_dir`` in
the configuration) on PCs whose system disk is restored at every reboot.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

APP_NAME = "schoolmon"
ENV_STATE_DIR = "SCHOOLMON_STATE_DIR"
CREDENTIAL_FILE = "credential.json"
OUTBOX_FILE = "outbox.sqlite3"


class StateError(RuntimeError):
    """The state directory or a file in it cannot be used."""


@dataclass(frozen=True)
class Credential:
    """What enrollment gave this device."""

    device_id: str
    credential: str
    school: str | None
    role: str | None
    server_url: str
    report_interval_seconds: float | None = None
    token: str | None = None
    revoked_at: str | None = None


def is_service_account() -> bool:
    """Tell whether the agent runs as root / an administrator (a system service)."""
    if sys.platform == "win32":
        import ctypes

        return bool(ctypes.windll.shell32.IsUserAnAdmin())
    return os.geteuid() == 0


def resolve_state_dir(
    option: str | None,
    environ: Mapping[str, str],
    configured: str | None,
    service: bool | None = None,
    platform: str = sys.platform,
) -> Path:
    """Pick the state directory: option, then environment, then configuration,
    then the platform's default (``default_state_dir``)."""
    sources = (
        ("--state-dir", option),
        (ENV_STATE_DIR, environ.get(ENV_STATE_DIR)),
        ("state_dir", configured),
    )
    for source, chosen in sources:
        if chosen is None:
            continue
        if not chosen.strip():
            raise StateError(
                f"{source} = {chosen!r}: expected a directory path, got an empty one"
            )
        return Path(chosen).expanduser()
    if service is None:
        service = is_service_account()
    return default_state_dir(service, environ, platform)


def default_state_dir(service: bool, environ: Mapping[str, str], platform: str) -> Path:
    """Where a service keeps its state (/var/lib/schoolmon on Linux,
    %ProgramData%\\schoolmon on Windows), else the user's data directory."""
    import platformdirs  # only for the defaults that need it, not on every start

    if not service:
        return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    if platform == "win32":
        program_data = environ.get("PROGRAMDATA") or r"C:\ProgramData"
        return Path(program_data) / APP_NAME
    if platform == "darwin":
        return Path(platformdirs.site_data_dir(APP_NAME, appauthor=False))
    return Path("/var/lib") / APP_NAME


class State:
    """The files of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def credential_path(self) -> Path:
        return self.directory / CREDENTIAL_FILE

    @property
    def outbox_path(self) -> Path:
        return self.directory / OUTBOX_FILE

    def check(self) -> None:
        """Fail unless the directory exists or could be created; create nothing."""
        if self.directory.exists():
            if not self.directory.is_dir():
                raise StateError(
                    f"cannot use state directory {self.directory}: it is a file"
                )
            return
        ancestor = self.directory.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise StateError(
                f"cannot create state directory {self.directory}: {ancestor} is a file"
            )

    def ensure(self) -> None:
        """Create the directory (owner-only where the platform allows) if missing."""
        self.check()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(
                f"cannot create state directory {self.directory}: {exc.strerror or exc}"
            ) from exc

    def load_credential(self) -> Credential | None:
        """The stored credential, or None before enrollment."""
        path = self.credential_path
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return Credential(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise StateError(f"credential file {path} is unreadable: {exc}") from exc

    def save_credential(self, credential: Credential) -> None:
        """Write the credential atomically, readable by the owner only (0600)."""
        self.ensure()
        write_private_atomically(self.credential_path, asdict(credential))
        logger.info("credential stored for device %s", credential.device_id)


def write_private_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON to ``path`` through a 0600 temporary file, fsync and rename."""
    text = json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(temporary, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restored_by_answer(
    answer: Mapping[str, Any], resent: Mapping[str, int], highest_seq: int
) -> bool:
    """Tell from a report's answer whether this state directory was restored.

    Two signs: the collector reports as duplicates more samples than this state has
    ever sent before (``resent`` counts, per kind, items of the batch that had an
    earlier attempt), or it reports a ``last_seq`` above any seq this state issued.
    """
    duplicates = answer.get("duplicates") or {}
    for kind, plural in (("probe", "probes"), ("speedtest", "speedtests")):
        if int(duplicates.get(plural) or 0) > resent.get(kind, 0):
            return True
    last_seq = answer.get("last_seq")
    return isinstance(last_seq, int) and last_seq > highest_seq
