"""The collector's configuration: a TOML file read into typed, frozen settings.

Every threshold of SPEC.md "Headline figures" has its default here; a district changes
them in the file. Unknown keys and bad values are refused with a message that names the
key, the value and what would be accepted.

Example (every key optional)::

    [server]
    host = "0.0.0.0"
    port = 8400
    db = "/var/lib/schoolmon/schoolmon.sqlite3"

    [policy]
    offline_after_minutes = 15

    [sessions]
    timezone = "Asia/Ho_Chi_Minh"
    holidays = [2026-01-01, "2026-02-14..2026-02-22"]

    [sessions.timetable]   # a listed day replaces that day's default periods
    sat = ["07:00-11:30"]

    [lab.pcs_required]
    primary = 18

    [retention]            # raw probe samples: uptime window + 1 day by default
    probe_samples_days = 8
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

LEVELS = ("preschool", "primary", "lower_secondary", "upper_secondary", "other")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_PERIODS = ("07:00-11:30", "13:30-17:00")
GIB = 1024**3


class ConfigError(ValueError):
    """The configuration file cannot be used; the message says why and what fits."""


@dataclass(frozen=True)
class Period:
    """One session period of a day in local time, from ``start`` up to ``end``."""

    start: time
    end: time


@dataclass(frozen=True)
class HolidayRange:
    """Days without session, ``first`` to ``last`` inclusive (local dates)."""

    first: date
    last: date

    def __contains__(self, day: date) -> bool:
        return self.first <= day <= self.last


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Settings):
    """Where the collector listens and how it treats agents."""

    host: str = "127.0.0.1"
    port: int = Field(8400, ge=1, le=65535)
    db: str | None = None
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    report_interval_seconds: int = Field(300, ge=10, le=86400)
    report_jitter_seconds: int = Field(30, ge=0)

    @model_validator(mode="after")
    def _jitter_below_interval(self) -> ServerSettings:
        if self.report_jitter_seconds >= self.report_interval_seconds:
            raise ValueError(
                f"report_jitter_seconds {self.report_jitter_seconds} must be below "
                f"report_interval_seconds {self.report_interval_seconds}"
            )
        return self


class PolicySettings(_Settings):
    """Thresholds of the headline figures (SPEC.md)."""

    offline_after_minutes: float = Field(15, gt=0)
    uptime_window_days: int = Field(7, ge=1, le=90)
    good_download_mbps: float = Field(20, gt=0)
    good_download_kbps_per_student: float = Field(50, ge=0)
    per_student_above_students: int = Field(400, ge=0)
    moderate_download_mbps: float = Field(1, gt=0)
    connected_uptime_ratio: float = Field(0.95, ge=0, le=1)

    @property
    def offline_after(self) -> timedelta:
        return timedelta(minutes=self.offline_after_minutes)

    @property
    def uptime_window(self) -> timedelta:
        return timedelta(days=self.uptime_window_days)

    @property
    def good_download_bytes_per_second(self) -> float:
        return self.good_download_mbps * 1e6 / 8

    @property
    def good_download_bytes_per_second_per_student(self) -> float:
        return self.good_download_kbps_per_student * 1e3 / 8

    @property
    def moderate_download_bytes_per_second(self) -> float:
        return self.moderate_download_mbps * 1e6 / 8

    def good_threshold_for(self, students: int | None) -> float:
        """Download rate (bytes/s) a school of ``students`` needs for class good."""
        base = self.good_download_bytes_per_second
        if students is None or students <= self.per_student_above_students:
            return base
        return max(base, students * self.good_download_bytes_per_second_per_student)


class LabSettings(_Settings):
    """Minimum specification of a lab PC and the default number of lab PCs."""

    min_logical_cpus: int = Field(2, ge=1)
    min_memory_gib: float = Field(4, gt=0)
    min_system_disk_gb: float = Field(64, gt=0)
    pcs_required: dict[str, int] = Field(
        default_factory=lambda: {"primary": 18, "lower_secondary": 23}
    )

    @field_validator("pcs_required")
    @classmethod
    def _known_levels(cls, value: dict[str, int]) -> dict[str, int]:
        for level, count in value.items():
            if level not in LEVELS:
                raise ValueError(
                    f"level {_shown(level)} is unknown; accepted: {', '.join(LEVELS)}"
                )
            if count < 0:
                raise ValueError(f"{level} = {count}: a count of 0 or more")
        return {"primary": 18, "lower_secondary": 23} | value

    @property
    def min_memory_bytes(self) -> int:
        return int(self.min_memory_gib * GIB)

    @property
    def min_system_disk_bytes(self) -> int:
        return int(self.min_system_disk_gb * 1e9)


class SessionSettings(_Settings):
    """When schools are expected to be open: time zone, timetable, holidays."""

    timezone: str = "Asia/Ho_Chi_Minh"
    timetable: dict[str, tuple[Period, ...]] = Field(
        default_factory=lambda: _timetable({})
    )
    holidays: tuple[HolidayRange, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        check_timezone(value)
        return value

    @field_validator("timetable", mode="before")
    @classmethod
    def _parse_timetable(cls, value: Any) -> dict[str, tuple[Period, ...]]:
        if not isinstance(value, dict):
            raise ValueError('a table of days, e.g. mon = ["07:00-11:30"]')
        return _timetable(value)

    @field_validator("holidays", mode="before")
    @classmethod
    def _parse_holidays(cls, value: Any) -> tuple[HolidayRange, ...]:
        if not isinstance(value, list | tuple):
            raise ValueError("a list of dates or date ranges")
        return tuple(_parse_holiday(item) for item in value)

    def periods_on(self, weekday: int) -> tuple[Period, ...]:
        """Session periods of a weekday (0 = Monday)."""
        return self.timetable[WEEKDAYS[weekday]]

    def is_holiday(self, day: date) -> bool:
        return any(day in holiday for holiday in self.holidays)


class MetricsSettings(_Settings):
    """What /metrics exports, and how fresh.

    ``refresh_seconds``: while the collector serves, its figures are computed in the
    background every that many seconds and a scrape serves the latest; the
    exposition is at most that old (plus one computation). Keep it at or below
    Prometheus's scrape interval.
    """

    per_device_max: int = Field(2000, ge=0)
    refresh_seconds: float = Field(10.0, gt=0, le=3600)


class SpeedtestSettings(_Settings):
    """How often schools run speed tests and how much data they may spend."""

    slots_per_day: int = Field(3, ge=0, le=24)
    monthly_budget_bytes: int = Field(5_000_000_000, ge=0)


class RetentionSettings(_Settings):
    """How long raw probe samples are kept and how the collector prunes them.

    Samples placed more than ``probe_samples_days`` ago are deleted and their probe
    cycles rolled up into runs (storage.py "Retention"); None keeps them for the
    uptime window plus one day. ``every_minutes`` paces the collector's job,
    ``batch_rows`` bounds each of its write transactions.
    """

    enabled: bool = True
    probe_samples_days: int | None = Field(None, ge=1, le=3650)
    every_minutes: float = Field(60, gt=0, le=1440)
    batch_rows: int = Field(2000, ge=10, le=100_000)

    def probe_samples_window(self, policy: PolicySettings) -> timedelta:
        """How far back raw samples and unrolled probe cycles are kept."""
        days = self.probe_samples_days
        return timedelta(days=policy.uptime_window_days + 1 if days is None else days)


class Config(_Settings):
    """The whole collector configuration."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    lab: LabSettings = Field(default_factory=LabSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    speedtest: SpeedtestSettings = Field(default_factory=SpeedtestSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @model_validator(mode="after")
    def _retention_beyond_window(self) -> Config:
        days, window = self.retention.probe_samples_days, self.policy.uptime_window_days
        if days is not None and days <= window:
            raise ValueError(
                f"retention.probe_samples_days = {days} must be above "
                f"policy.uptime_window_days = {window}: the live figures read the "
                f"window's probe cycles unrolled (give {window + 1} or more)"
            )
        return self


def load_config(path: str | Path | None) -> Config:
    """Read the TOML file at ``path`` (None: all defaults); raise ConfigError."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = tomllib.loads(_read_text(path))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    return config_from_mapping(raw, source=str(path))


def _read_text(path: Path) -> str:
    """The file as text; a UTF-8 BOM (Windows editors write one) is dropped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise ConfigError(f"configuration file {str(path)!r} does not exist") from error
    except OSError as error:
        raise ConfigError(
            f"configuration file {str(path)!r}: {error.strerror}"
        ) from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path} line {line}: byte 0x{data[error.start]:02X} is not UTF-8 text; "
            "save it as UTF-8"
        ) from None


def config_from_mapping(raw: dict[str, Any], source: str = "configuration") -> Config:
    """Build a Config from a parsed TOML table; raise ConfigError naming the fault."""
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        problems = [_describe(item) for item in error.errors()]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def check_timezone(name: str) -> ZoneInfo:
    """Return the zone called ``name`` or raise ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"time zone {_shown(name)} is unknown; "
            "use an IANA name such as Asia/Ho_Chi_Minh"
        ) from error


def _describe(item: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in item["loc"])
    if not key:  # a check across sections: its message names the keys
        return item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        accepted = _accepted_keys(item["loc"])
        return f"unknown key {_shown(key)}; accepted keys here: {accepted}"
    message = item["msg"].removeprefix("Value error, ")
    return f"{key} = {_shown(item.get('input'))}: {message}"


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "\u2026"


def _accepted_keys(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return ", ".join(model.model_fields)


def _timetable(days: dict[str, Any]) -> dict[str, tuple[Period, ...]]:
    table = {day: _parse_periods(DEFAULT_PERIODS) for day in WEEKDAYS[:6]}
    table["sun"] = ()
    for day, periods in days.items():
        if day not in WEEKDAYS:
            raise ValueError(
                f"day {_shown(day)} is unknown; accepted: {', '.join(WEEKDAYS)}"
            )
        table[day] = _parse_periods(periods)
    return table


def _parse_periods(periods: Any) -> tuple[Period, ...]:
    if not isinstance(periods, list | tuple):
        raise ValueError(
            f'{_shown(periods)} is not a list of periods like "07:00-11:30"'
        )
    parsed = tuple(_parse_period(text) for text in periods)
    return tuple(sorted(parsed, key=lambda period: period.start))


def _parse_period(text: Any) -> Period:
    try:
        start_text, end_text = str(text).split("-")
        period = Period(time.fromisoformat(start_text.strip()), _end(end_text.strip()))
    except ValueError:
        raise ValueError(
            f'period {_shown(text)} is not understood; accepted: "HH:MM-HH:MM"'
        ) from None
    if period.end <= period.start and period.end != time(0):
        raise ValueError(f"period {_shown(text)} ends before it starts")
    return period


def _end(text: str) -> time:
    return time(0) if text in ("24:00", "24:00:00") else time.fromisoformat(text)


def _parse_holiday(item: Any) -> HolidayRange:
    if isinstance(item, date):
        return HolidayRange(item, item)
    accepted = "accepted: YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"
    try:
        first_text, _, last_text = str(item).partition("..")
        first = date.fromisoformat(first_text.strip())
        last = date.fromisoformat(last_text.strip()) if last_text else first
    except ValueError:
        raise ValueError(f"holiday {_shown(item)} is not a date; {accepted}") from None
    if last < first:
        raise ValueError(
            f"holiday range {_shown(item)} ends before it starts; {accepted}"
        )
    return HolidayRange(first, last)
