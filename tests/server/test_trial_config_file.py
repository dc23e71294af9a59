"""The collector's TOML file as Windows editors save it: BOM, other code pages,
folders given by mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from schoolmon.server.config import ConfigError, load_config

SETTINGS = '[server]\nport = 9000\n[sessions]\ntimezone = "Asia/Bangkok"\n'


def test_utf8_bom_is_accepted(tmp_path: Path):
    """Notepad and PowerShell 5 write a BOM: the file reads as without it."""
    path = tmp_path / "collector.toml"
    path.write_bytes(b"\xef\xbb\xbf" + SETTINGS.encode("utf-8"))

    config = load_config(path)

    assert (config.server.port, config.sessions.timezone) == (9000, "Asia/Bangkok")


@pytest.mark.parametrize(
    ("content", "line", "byte"),
    [
        ("# Cấu hình máy chủ\n" + SETTINGS, 1, "0xE1"),
        (SETTINGS + "# ghi chú: Phòng máy\n", 5, "0xFA"),
    ],
)
def test_legacy_code_page_is_one_line_naming_file_line_and_byte(
    tmp_path: Path, content: str, line: int, byte: str
):
    """A cp1258 file is refused naming the line and the byte, asking for UTF-8."""
    path = tmp_path / "collector.toml"
    path.write_bytes(content.encode("cp1258", errors="replace"))

    with pytest.raises(ConfigError) as error:
        load_config(path)

    assert str(error.value) == (
        f"{path} line {line}: byte {byte} is not UTF-8 text; save it as UTF-8"
    )


def test_folder_given_as_the_file_is_named(tmp_path: Path):
    """--config pointing at a folder is one sentence, not a traceback."""
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)

    assert str(error.value) == f"configuration file {str(tmp_path)!r}: Is a directory"


def test_long_bad_value_is_quoted_cut_short(tmp_path: Path):
    """A pasted paragraph as a time zone is quoted as its first 80 characters."""
    path = tmp_path / "collector.toml"
    path.write_text(f'[sessions]\ntimezone = "{"Asia/" * 100}"\n', encoding="utf-8")

    with pytest.raises(ConfigError) as error:
        load_config(path)

    quoted = repr("Asia/" * 100)[:80] + "…"
    assert str(error.value) == (
        f"{path}: sessions.timezone = {quoted}: time zone {quoted} is "
        "unknown; use an IANA name such as Asia/Ho_Chi_Minh"
    )
