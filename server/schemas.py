"""The wire format of design.md, version 1, as pydantic models.

Envelopes (report, inventory, section envelope, probe sample, speed test, health)
forbid unknown fields, so a typo is a 422 and not silently lost data. The ``data`` of a
section is checked against the shape design.md gives for its name, but extra keys inside
``data`` are kept: a newer agent may know more about a PC than this collector does.
Lists and strings are bounded so one report cannot exhaust the collector.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

MAX_PROBES = 5000
MAX_SPEEDTESTS = 100
MAX_SECTIONS = 32
SectionStatus = Literal["ok", "timeout", "error", "unsupported"]
SpeedtestReason = Literal[
    "server unreachable",
    "test service refused",
    "rate limited",
    "timeout",
    "no console",
    "error",
]
InstructionKind = Literal["run_speedtest", "send_full_inventory", "replace_credential"]
QUOTED_MAX_CHARS = 80
MAX_INT_DIGITS = 100


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("an instant needs its zone, e.g. 2026-12-03T01:05:00Z")
    return value.astimezone(UTC)


WireTime = Annotated[datetime, AfterValidator(_utc)]
Name = Annotated[str, StringConstraints(max_length=256)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=4000)]
Seconds = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


# Identity and enrollment ------------------------------------------------------------


class IdentitySignals(_Data):
    """Hardware signals that tell one PC from another (design.md)."""

    machine_id: Name | None = None
    smbios_uuid: Name | None = None
    system_serial: Name | None = None
    board_serial: Name | None = None
    disk_serial: Name | None = None
    macs: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=64
    )
    hostname: Name | None = None

    @model_validator(mode="after")
    def _few_extra_signals(self) -> IdentitySignals:
        if len(self.model_extra or {}) > 16:
            raise ValueError("at most 16 extra identity signals")
        return self


class EnrollRequest(_Envelope):
    """``POST /api/v1/enroll`` body."""

    token: Token
    hostname: Name | None = None
    identity: IdentitySignals = Field(default_factory=IdentitySignals)
    agent_version: Annotated[str, StringConstraints(max_length=64)] | None = None


class EnrollAnswer(_Envelope):
    """``POST /api/v1/enroll`` answer (201)."""

    device_id: str
    credential: str
    school: str
    role: str
    report_interval_seconds: int


# Inventory sections -----------------------------------------------------------------


class SystemData(_Data):
    hostname: Name | None = None
    manufacturer: Name | None = None
    model: Name | None = None
    serial: Name | None = None
    uuid: Name | None = None
    board: Name | None = None
    board_serial: Name | None = None
    bios_version: Name | None = None
    bios_date: Name | None = None
    virtual: bool | None = None
    machine_id: Name | None = None
    boot_time: WireTime | None = None


class CpuData(_Data):
    model: Name | None = None
    physical_cores: Count | None = None
    logical_cores: Count | None = None
    max_frequency_mhz: Seconds | None = None
    architecture: Name | None = None


class MemoryModule(_Data):
    slot: Name | None = None
    size_bytes: Count | None = None
    manufacturer: Name | None = None
    part_number: Name | None = None
    serial: Name | None = None
    speed_mhz: Seconds | None = None


class MemoryData(_Data):
    installed_bytes: Count | None = None
    usable_bytes: Count | None = None
    modules: list[MemoryModule] | None = Field(None, max_length=64)


class PhysicalDisk(_Data):
    index: Count | None = None
    model: Name | None = None
    serial: Name | None = None
    size_bytes: Count | None = None
    media: Name | None = None
    removable: bool | None = None
    interface: Name | None = None


class Volume(_Data):
    device: Name | None = None
    mount: Name | None = None
    filesystem: Name | None = None
    size_bytes: Count | None = None
    free_bytes: Count | None = None
    system: bool | None = None


class DisksData(_Data):
    physical: list[PhysicalDisk] | None = Field(None, max_length=64)
    volumes: list[Volume] | None = Field(None, max_length=256)


class Adapter(_Data):
    name: Name | None = None
    mac: Name | None = None
    kind: (
        Literal["ethernet", "wifi", "virtual", "bluetooth", "loopback", "vpn", "usb"]
        | None
    ) = None
    addresses: list[Name] | None = Field(None, max_length=64)
    speed_bps: Seconds | None = None
    up: bool | None = None
    bus: Name | None = None


class NetworkData(_Data):
    adapters: list[Adapter] | None = Field(None, max_length=128)


class OsData(_Data):
    family: Literal["windows", "linux", "other"] | None = None
    name: Name | None = None
    version: Name | None = None
    build: Name | None = None
    architecture: Name | None = None
    install_date: Name | None = None
    vendor_supported: bool | None = None
    languages: list[Name] | None = Field(None, max_length=64)


class Program(_Data):
    name: Name | None = None
    version: Name | None = None
    publisher: Name | None = None
    install_date: Name | None = None


class SoftwareData(_Data):
    source: Name | None = None
    programs: list[Program] | None = Field(None, max_length=20000)


class BatteryData(_Data):
    present: bool | None = None
    percent: Seconds | None = None
    plugged: bool | None = None
    cycle_count: Count | None = None
    design_capacity_wh: Seconds | None = None
    full_capacity_wh: Seconds | None = None


class Monitor(_Data):
    manufacturer: Name | None = None
    model: Name | None = None
    serial: Name | None = None
    year: int | None = None


class MonitorsData(_Data):
    monitors: list[Monitor] | None = Field(None, max_length=32)


SECTION_MODELS: dict[str, type[_Data]] = {
    "system": SystemData,
    "cpu": CpuData,
    "memory": MemoryData,
    "disks": DisksData,
    "network": NetworkData,
    "os": OsData,
    "software": SoftwareData,
    "battery": BatteryData,
    "monitors": MonitorsData,
}


class Section(_Envelope):
    """One inventory section envelope."""

    status: SectionStatus
    collected_at: WireTime | None = None
    duration_seconds: Seconds | None = None
    error: Text | None = None
    warnings: list[Text] = Field(default_factory=list, max_length=100)
    hash: Key | None = None
    data: dict[str, Any] | None = None
    unchanged: bool = False

    @model_validator(mode="after")
    def _data_or_unchanged(self) -> Section:
        if self.unchanged and (self.data is not None or self.hash is None):
            raise ValueError("an unchanged section has data null and a hash")
        if self.status == "ok" and self.data is None and not self.unchanged:
            raise ValueError("a section with status ok carries data or unchanged: true")
        return self


SectionName = Annotated[
    str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")
]


class Inventory(_Envelope):
    """The inventory part of a report."""

    hash: Key | None = None
    sections: dict[SectionName, Section] = Field(max_length=MAX_SECTIONS)

    @field_validator("sections")
    @classmethod
    def _known_section_shapes(cls, sections: dict[str, Section]) -> dict[str, Section]:
        problems = [
            problem
            for name, section in sections.items()
            for problem in _section_data_problems(name, section)
        ]
        if problems:
            raise ValidationError.from_exception_data("Inventory", problems)
        return sections


def _section_data_problems(name: str, section: Section) -> list[InitErrorDetails]:
    """Faults of a known section's data, each at its own path with its own value.

    Raised from the field validator, pydantic puts them under
    ``inventory.sections``, so a message reads
    ``inventory.sections.cpu.data.logical_cores`` and quotes only the bad value.
    """
    model = SECTION_MODELS.get(name)
    if model is None or section.data is None:
        return []
    try:
        model.model_validate(section.data)
    except ValidationError as error:
        return [
            InitErrorDetails(
                type=item["type"],
                loc=(name, "data", *item["loc"]),
                input=item["input"],
                ctx=item.get("ctx", {}),
            )
            for item in error.errors()
        ]
    return []


# Probes, speed tests, health ----------------------------------------------------------


class ProbeSample(_Envelope):
    """One connectivity check."""

    run: Key
    seq: Count
    cycle: Count | None = None
    wall_time: WireTime
    monotonic: float | None = None
    boot_id: Key | None = None
    target: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    scope: Literal["collector", "internet"]
    kind: Literal["dns", "tcp", "https"]
    ok: bool
    duration_seconds: Seconds | None = None
    reason: Text | None = None
    detail: dict[str, Any] | None = None


class SpeedtestServer(_Data):
    id: Name | None = None
    name: Name | None = None
    host: Name | None = None
    sponsor: Name | None = None


class Speedtest(_Envelope):
    """One throughput measurement; a failed one has a reason and null figures."""

    run: Key
    seq: Count
    wall_time: WireTime
    monotonic: float | None = None
    boot_id: Key | None = None
    ok: bool
    reason: SpeedtestReason | None = None
    message: Text | None = None
    backend: Literal["speedtest-net", "collector"]
    tool: Name | None = None
    tool_version: Name | None = None
    server: SpeedtestServer | None = None
    download_bytes_per_second: Annotated[float, Field(gt=0)] | None = None
    upload_bytes_per_second: Annotated[float, Field(gt=0)] | None = None
    latency_seconds: Seconds | None = None
    jitter_seconds: Seconds | None = None
    bytes_used: Count | None = None
    streams: Count | None = None
    started_at: WireTime | None = None
    duration_seconds: Seconds | None = None
    flags: list[Key] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _failure_has_reason_and_no_figures(self) -> Speedtest:
        figures = (self.download_bytes_per_second, self.upload_bytes_per_second)
        if not self.ok and (self.reason is None or any(f is not None for f in figures)):
            raise ValueError("a failed speed test has a reason and null figures")
        if self.ok and (
            self.reason is not None or self.download_bytes_per_second is None
        ):
            raise ValueError("a valid speed test has a download figure and no reason")
        return self


class Health(_Envelope):
    """The agent's view of itself."""

    started_at: WireTime | None = None
    uptime_seconds: Seconds | None = None
    outbox_items: Count | None = None
    outbox_bytes: Count | None = None
    dropped_total: dict[Key, Count] = Field(default_factory=dict, max_length=16)
    undelivered_lost: Count | None = None
    state_restored: bool | None = None
    set_aside_total: Count | None = None
    last_error: Text | None = None


class Report(_Envelope):
    """``POST /api/v1/reports`` body.

    ``school`` is optional: an agent that states the school it enrolled for gets a 403
    when the collector has the device under another school.
    """

    schema_: Literal[1] = Field(alias="schema")
    agent_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    sent_at: WireTime
    sent_monotonic: float | None = None
    boot_id: Key | None = None
    school: Key | None = None
    identity: IdentitySignals | None = None
    inventory: Inventory | None = None
    probes: list[ProbeSample] = Field(default_factory=list, max_length=MAX_PROBES)
    speedtests: list[Speedtest] = Field(default_factory=list, max_length=MAX_SPEEDTESTS)
    health: Health | None = None


# Answers ----------------------------------------------------------------------------


class Counts(_Envelope):
    probes: int = 0
    speedtests: int = 0
    inventory: int = 0


class Instruction(_Envelope):
    """One instruction from the closed list of design.md."""

    kind: InstructionKind
    backend: str | None = None
    credential: str | None = None
    device_id: str | None = None


class ReportAnswer(_Envelope):
    """``POST /api/v1/reports`` answer (200)."""

    device_id: str
    accepted: Counts
    duplicates: Counts
    next_report_in_seconds: int
    instructions: list[Instruction] = Field(default_factory=list)
    last_seq: int | None = None


class ErrorAnswer(_Envelope):
    """Every 4xx body."""

    error: str
    message: str
    details: list[dict[str, Any]] | None = None


# Reading and quoting wire values -----------------------------------------------------

# A \uD800-\uDFFF escape that is not half of a pair (an odd number of backslashes
# before the u makes it an escape). Windows hands out such names (the registry is
# UTF-16 without checks); they cannot be stored as UTF-8 text.
_LONE_SURROGATE = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u(?:"
    r"[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u)[dD][c-fC-F][0-9a-fA-F]{2})"
)


class WireJsonError(ValueError):
    """A request body is not JSON the collector can keep; the message says why."""


def parse_wire_json(body: bytes) -> Any:
    """Parse a request body as JSON text (UTF-8).

    Refused with WireJsonError: text that is not UTF-8 or not JSON, nesting too deep
    for the decoder, and numbers JSON cannot carry (NaN, Infinity, 1e999, integers
    of thousands of digits). A lone UTF-16 surrogate escape becomes U+FFFD.
    """
    try:
        text = body.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as error:
        raise WireJsonError(
            f"the body is not UTF-8 text (byte {body[error.start]:#04x} at "
            f"offset {error.start}); send JSON in UTF-8"
        ) from None
    if "\\u" in text:
        text = _LONE_SURROGATE.sub(r"\1\\ufffd", text)
    try:
        return json.loads(
            text,
            parse_float=_finite_float,
            parse_int=_short_int,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as error:
        raise WireJsonError(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise WireJsonError(
            "the body is not usable JSON: nesting too deep (arrays or objects "
            "inside one another)"
        ) from None
    except ValueError as error:
        raise WireJsonError(f"the body is not usable JSON: {error}") from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(
            f"the number {text[:QUOTED_MAX_CHARS]} is beyond what a float holds; "
            "send a finite number"
        )
    return value


def _short_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError(
            f"an integer of {len(text)} characters is too long; at most "
            f"{MAX_INT_DIGITS} digits"
        )
    return int(text)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number; send null for an unknown value")


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words: 'null', 'a JSON array'..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    kinds = {dict: "a JSON object", list: "a JSON array", str: "a JSON string"}
    return kinds.get(type(value), "a JSON number")


def quoted(value: Any, limit: int = QUOTED_MAX_CHARS) -> str:
    """``value`` as an error message quotes it: JSON words for null, true, false,
    objects and arrays; else its repr, cut to ``limit`` characters and an ellipsis."""
    if value is None or isinstance(value, bool | dict | list):
        return json_kind(value)
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "\u2026"
