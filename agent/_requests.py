"""``requests``, imported without a character-detection library.

requests imports ``chardet`` or ``charset_normalizer`` (2.3 MiB of the agent's memory
and about 5 ms of its start-up, bench/README.md) only to guess the encoding of a text
answer that names none (``Response.apparent_encoding``). The agent never needs that
guess: the collector answers ``application/json``, which requests decodes as UTF-8
(RFC 8259) from the header alone, and probes decode their bodies themselves. Since
requests 2.32 both libraries are optional: without them ``apparent_encoding`` is
``"utf-8"`` and the import warns once with a ``RequestsDependencyWarning``, which is
silenced here.

A ``None`` entry in ``sys.modules`` makes an import raise ``ModuleNotFoundError``
(the import system's documented behaviour), so requests finds neither library. This
is done only when requests is not imported yet (in a process that already holds
requests, a test run say, nothing changes) and only when the installed requests is
2.32 or later: 2.31, which the project still accepts, fails to import without one.
Agent modules import requests from here.
"""

from __future__ import annotations

import re
import sys
import warnings
from importlib import metadata

CHARACTER_DETECTION = ("chardet", "charset_normalizer")
OPTIONAL_SINCE = (2, 32)
_MISSING_WARNING = "Unable to find acceptable character detection dependency"


def detection_optional(version: str) -> bool:
    """Whether requests ``version`` imports without a character-detection library."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return bool(match) and (int(match[1]), int(match[2])) >= OPTIONAL_SINCE


def _installed_version() -> str:
    try:
        return metadata.version("requests")
    except metadata.PackageNotFoundError:
        return ""


if "requests" not in sys.modules and detection_optional(_installed_version()):
    for _name in CHARACTER_DETECTION:
        sys.modules.setdefault(_name, None)

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=_MISSING_WARNING)
    import requests

__all__ = ["requests"]
