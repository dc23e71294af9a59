"""A simulated district: realistic school PCs that enroll and report over HTTP.

The district is generated from a seed: schools (from the registry or given), PCs per
school with varied hardware, links (most 20-100 Mbit/s, some slow, some schools
offline) and optional scenarios that asset tests need (cloned images, moved devices,
RAM upgraded or removed, a huge software list). Reports are built exactly as the
wire format of docs/design.md says and delivered only through the collector's real
HTTP API (``POST /api/v1/enroll``, ``POST /api/v1/reports``) with a bounded thread
pool. The same seed and the same clock give byte-identical payloads.

``run()`` is the whole simulation; ``build_district()``, ``enroll_devices()``,
``prepare_history()``, ``prepare_cycle()`` and ``send_reports()`` are its phases, so
a benchmark can pre-build payloads and time only the sending.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests
from schoolmon.agent.inventory import normalize

logger = logging.getLogger(__name__)

GIB = 1024**3
LEVELS = ("preschool", "primary", "lower_secondary", "upper_secondary", "other")
SCENARIOS = ("clone", "move", "ram-upgrade", "ram-removed", "huge-software")
TWO_INVENTORY_SCENARIOS = ("move", "ram-upgrade", "ram-removed")
SESSION_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SESSION_WINDOWS = (
    (clock_time(7, 0), clock_time(11, 30)),
    (clock_time(13, 30), clock_time(17, 0)),
)
DEFAULT_REGISTRY = Path(__file__).with_name("data") / "sample_registry.csv"
LAB_DEFAULT = {"primary": 18, "lower_secondary": 23, "upper_secondary": 23}
HUGE_SOFTWARE_PROGRAMS = 3000


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the default clock)."""
    return datetime.now(UTC)


def wire_time(instant: datetime) -> str:
    """Format an aware datetime as the wire's ISO 8601 UTC with ``Z``."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimulationError(Exception):
    """The simulation cannot start: bad options, registry or token source."""


# Options and the district ------------------------------------------------------


@dataclass(frozen=True)
class SimOptions:
    """What to simulate; every default gives a small, realistic district."""

    seed: int = 7
    schools: int | None = None
    pcs_per_school: int | None = None
    days_history: int = 0
    cycles: int = 1
    interval_seconds: float = 0.0
    offline_share: float = 0.05
    slow_share: float = 0.1
    outage_share: float = 0.3
    skewed_clock_share: float = 0.02
    workers: int = 8
    scenarios: frozenset[str] = frozenset()
    clone_count: int = 5
    history_step_seconds: int = 900
    history_pcs_per_school: int = 2
    history_batch: int = 500
    timeout_seconds: float = 10.0
    agent_version: str = "0.1.0"

    def __post_init__(self) -> None:
        for name in ("offline_share", "slow_share", "outage_share"):
            _check_share(name, getattr(self, name))
        _check_share("skewed_clock_share", self.skewed_clock_share)
        for name in ("cycles", "workers", "history_step_seconds", "history_batch"):
            if getattr(self, name) < 1:
                raise SimulationError(
                    f"{name} must be at least 1, got {getattr(self, name)}"
                )
        _check_scenarios(self)


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise SimulationError(f"{name} must be between 0 and 1, got {value}")


def _check_scenarios(options: SimOptions) -> None:
    unknown = sorted(set(options.scenarios) - set(SCENARIOS))
    if unknown:
        raise SimulationError(
            f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    needs_two = sorted(set(options.scenarios) & set(TWO_INVENTORY_SCENARIOS))
    if needs_two and options.cycles < 2:
        raise SimulationError(
            f"scenario(s) {', '.join(needs_two)} compare two inventories and need "
            f"--cycles 2 or more, got {options.cycles}"
        )
    if options.days_history < 0:
        raise SimulationError(
            f"days_history must be 0 or more, got {options.days_history}"
        )


@dataclass(frozen=True)
class School:
    """A registry row, as far as the simulation needs it."""

    code: str
    level: str
    students: int | None = None
    contracted_download_mbps: float | None = None
    lab_pcs_required: int | None = None
    has_informatics: bool | None = None
    name: str = ""


@dataclass
class SimPC:
    """One simulated PC: its hardware (section data) and its agent's state."""

    key: str
    school: str
    role: str
    sections: dict[str, dict[str, Any]]
    boot_time: datetime
    boot_id: str
    run: str
    skew_seconds: float
    on: bool = True
    history: bool = False
    state_restored: bool = False
    clone_of: str | None = None
    move_to: str | None = None
    later_memory: dict[str, Any] | None = None
    section_errors: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    cycle: int = 0
    inventory_sent: bool = False
    wants_full_inventory: bool = False
    wants_speedtest: bool = False
    moved: bool = False

    @property
    def hostname(self) -> str:
        return self.sections["system"]["hostname"]

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass
class SimSchool:
    """A school of the district with its link and its PCs."""

    school: School
    offline: bool
    slow: bool
    link_mbps: float
    saturday_off: bool
    subnet: str
    number: int = 0
    outages: list[tuple[datetime, datetime]] = field(default_factory=list)
    pcs: list[SimPC] = field(default_factory=list)

    @property
    def code(self) -> str:
        return self.school.code


@dataclass
class District:
    """The whole simulated district at one instant (``now``)."""

    seed: int
    now: datetime
    schools: list[SimSchool]
    scenario_devices: dict[str, list[str]] = field(default_factory=dict)

    def pcs(self) -> Iterator[SimPC]:
        for sim_school in self.schools:
            yield from sim_school.pcs

    def pc(self, key: str) -> SimPC:
        for pc in self.pcs():
            if pc.key == key:
                return pc
        raise KeyError(key)

    def school(self, code: str) -> SimSchool:
        return next(s for s in self.schools if s.code == code)


# Registry ----------------------------------------------------------------------


def load_registry(path: Path | str) -> list[School]:
    """Read schools from a registry CSV (comma or semicolon, with or without BOM)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SimulationError(f"cannot read registry {path}: {exc}") from exc
    header = text.split("\n", 1)[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    rows = csv.DictReader(text.splitlines(), delimiter=delimiter)
    return [_school_row(row, path, number) for number, row in enumerate(rows, start=2)]


def _school_row(row: Mapping[str, str | None], path: Path, line: int) -> School:
    code = (row.get("code") or "").strip()
    level = (row.get("level") or "").strip()
    if not code or level not in LEVELS:
        raise SimulationError(
            f"{path} line {line}: needs a code and a level ({', '.join(LEVELS)}), "
            f"got code {code!r} level {level!r}"
        )
    return School(
        code=code,
        level=level,
        name=(row.get("name") or "").strip(),
        students=_optional_number(row, "students", int, path, line),
        contracted_download_mbps=_optional_number(
            row, "contracted_download_mbps", float, path, line
        ),
        lab_pcs_required=_optional_number(row, "lab_pcs_required", int, path, line),
        has_informatics=_optional_bool(row.get("has_informatics")),
    )


def _optional_number(
    row: Mapping[str, str | None], column: str, kind: type, path: Path, line: int
) -> Any:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        return kind(float(text)) if kind is int else kind(text)
    except ValueError as exc:
        raise SimulationError(
            f"{path} line {line}: column {column} must be a number, got {text!r}"
        ) from exc


def _optional_bool(text: str | None) -> bool | None:
    value = (text or "").strip().lower()
    if value in ("1", "true", "yes", "y", "x", "có", "co"):
        return True
    if value in ("0", "false", "no", "n", "không", "khong"):
        return False
    return None


def synthetic_schools(codes: Iterable[str], seed: int) -> list[School]:
    """Schools for codes that no registry describes: level and size from the seed."""
    schools = []
    for code in codes:
        rng = random.Random(f"{seed}/{code}/registry")
        level = rng.choices(LEVELS[:3], weights=(3, 4, 3))[0]
        students = (
            rng.randint(120, 350) if level == "preschool" else rng.randint(250, 1200)
        )
        contracted = rng.choice((30.0, 40.0, 50.0, 80.0, 100.0))
        schools.append(
            School(code, level, students, contracted, None, level != "preschool")
        )
    return schools


# Hardware catalog --------------------------------------------------------------


@dataclass(frozen=True)
class Cpu:
    model: str
    physical: int
    logical: int
    mhz: int


@dataclass(frozen=True)
class Disk:
    model: str
    size_bytes: int
    media: str
    serial: str  # serial style: seagate, wd, kingston, samsung, toshiba, emmc


@dataclass(frozen=True)
class Tier:
    """An age class of PC: what CPUs, memory and disks such a PC carries."""

    name: str
    years: tuple[int, int]
    cpus: tuple[Cpu, ...]
    memory: tuple[tuple[tuple[int, ...], float], ...]  # module sizes (GiB), weight
    memory_speeds: tuple[int, ...]
    disks: tuple[Disk, ...]
    systems: tuple[
        tuple[str | None, str | None, str, str], ...
    ]  # mfr, model, board, bios
    oses: tuple[tuple[str, float], ...]


_HDD = {
    160: Disk("ST3160815AS", 160041885696, "hdd", "seagate"),
    250: Disk("ST250DM000-1BD141", 250059350016, "hdd", "seagate"),
    320: Disk("WDC WD3200AAKX-001CA0", 320072933376, "hdd", "wd"),
    500: Disk("ST500DM002-1BD142", 500107862016, "hdd", "seagate"),
    501: Disk("WDC WD5000AAKX-00ERMA0", 500107862016, "hdd", "wd"),
    502: Disk("TOSHIBA DT01ACA050", 500107862016, "hdd", "toshiba"),
    1000: Disk("ST1000DM003-1ER162", 1000204886016, "hdd", "seagate"),
    1001: Disk("WDC WD10EZEX-08WN4A0", 1000204886016, "hdd", "wd"),
}
_SSD = {
    120: Disk("KINGSTON SA400S37120G", 120034123776, "ssd", "kingston"),
    240: Disk("KINGSTON SA400S37240G", 240057409536, "ssd", "kingston"),
    250: Disk("Samsung SSD 860 EVO 250GB", 250059350016, "ssd", "samsung"),
    256: Disk("WDC PC SN530 SDBPNPZ-256G-1006", 256060514304, "ssd", "wd"),
    480: Disk("KINGSTON SA400S37480G", 480103981056, "ssd", "kingston"),
    500: Disk("Samsung SSD 870 EVO 500GB", 500107862016, "ssd", "samsung"),
}
_EMMC = Disk("DF4032", 31268536320, "ssd", "emmc")

TIERS = (
    Tier(
        "old",
        (2010, 2013),
        (
            Cpu("Intel(R) Pentium(R) CPU G630 @ 2.70GHz", 2, 2, 2700),
            Cpu("Intel(R) Core(TM)2 Duo CPU     E7500  @ 2.93GHz", 2, 2, 2933),
            Cpu("Intel(R) Pentium(R) CPU G2030 @ 3.00GHz", 2, 2, 3000),
            Cpu("Intel(R) Core(TM) i3-2120 CPU @ 3.30GHz", 2, 4, 3300),
            Cpu("Intel(R) Celeron(R) CPU G1610 @ 2.60GHz", 2, 2, 2600),
            Cpu("Intel(R) Celeron(R) CPU 430 @ 1.80GHz", 1, 1, 1800),
        ),
        (((2,), 0.35), ((2, 2), 0.4), ((4,), 0.15), ((1, 1), 0.1)),
        (1333, 1066),
        (_HDD[160], _HDD[250], _HDD[320], _HDD[500], _HDD[501]),
        (
            ("Dell Inc.", "OptiPlex 3010", "Dell Inc. 042P49", "A20"),
            (
                "Hewlett-Packard",
                "HP Compaq Pro 6300 SFF",
                "Hewlett-Packard 339A",
                "K01 v03.06",
            ),
            ("LENOVO", "ThinkCentre M72e", "LENOVO MAHOBAY", "9SKT91AUS"),
            (None, None, "Gigabyte Technology Co., Ltd. H61M-DS2", "F4"),
            (None, None, "ASUSTeK COMPUTER INC. P8H61-M LX3 R2.0", "0601"),
            (None, None, "ECS G41T-M7", "1.0b"),
        ),
        (("win7", 0.55), ("win10", 0.4), ("ubuntu", 0.05)),
    ),
    Tier(
        "mid",
        (2014, 2017),
        (
            Cpu("Intel(R) Core(TM) i3-4150 CPU @ 3.50GHz", 2, 4, 3500),
            Cpu("Intel(R) Core(TM) i3-6100 CPU @ 3.70GHz", 2, 4, 3700),
            Cpu("Intel(R) Pentium(R) CPU G4560 @ 3.50GHz", 2, 4, 3500),
            Cpu("Intel(R) Core(TM) i5-4570 CPU @ 3.20GHz", 4, 4, 3200),
            Cpu("Intel(R) Core(TM) i5-6500 CPU @ 3.20GHz", 4, 4, 3200),
        ),
        (((4,), 0.5), ((4, 4), 0.25), ((2, 2), 0.15), ((8,), 0.1)),
        (1600, 2133),
        (_HDD[500], _HDD[502], _HDD[1000], _SSD[120], _SSD[240]),
        (
            ("Dell Inc.", "OptiPlex 3020", "Dell Inc. 04YFF8", "A18"),
            ("Dell Inc.", "OptiPlex 3050", "Dell Inc. 0JP3NX", "1.11.0"),
            ("HP", "HP ProDesk 400 G4 MT", "HP 829D", "P06 Ver. 02.26"),
            ("LENOVO", "ThinkCentre M710s", "LENOVO 3102", "M1AKT4AA"),
            (
                "ASUSTeK COMPUTER INC.",
                "ASUSPRO D340MC",
                "ASUSTeK COMPUTER INC. D340MC",
                "0802",
            ),
            (None, None, "MSI H81M-P33 (MS-7817)", "V3.10"),
            (None, None, "Gigabyte Technology Co., Ltd. H110M-S2", "F22"),
        ),
        (("win10", 0.8), ("win7", 0.1), ("ubuntu", 0.1)),
    ),
    Tier(
        "new",
        (2018, 2022),
        (
            Cpu("Intel(R) Core(TM) i3-10100 CPU @ 3.60GHz", 4, 8, 3600),
            Cpu("Intel(R) Pentium(R) Gold G6400 CPU @ 4.00GHz", 2, 4, 4000),
            Cpu("Intel(R) Celeron(R) G5905 CPU @ 3.50GHz", 2, 2, 3500),
            Cpu("AMD Ryzen 3 3200G with Radeon Vega Graphics", 4, 4, 3600),
            Cpu("Intel(R) Core(TM) i5-9400 CPU @ 2.90GHz", 6, 6, 2900),
            Cpu("Intel(R) Core(TM) i3-8100 CPU @ 3.60GHz", 4, 4, 3600),
        ),
        (((4,), 0.3), ((8,), 0.45), ((4, 4), 0.15), ((8, 8), 0.1)),
        (2666, 2400),
        (_SSD[240], _SSD[250], _SSD[256], _SSD[480], _SSD[500], _HDD[1001]),
        (
            ("Dell Inc.", "OptiPlex 3080", "Dell Inc. 0M5F5N", "2.14.0"),
            ("Dell Inc.", "Vostro 3681", "Dell Inc. 0DHM0N", "2.10.0"),
            ("HP", "HP ProDesk 400 G7 Microtower PC", "HP 8703", "S25 Ver. 02.09.00"),
            ("LENOVO", "ThinkCentre M70s", "LENOVO 3130", "M2WKT4AA"),
            (
                "ASUSTeK COMPUTER INC.",
                "ExpertCenter D500MA",
                "ASUSTeK COMPUTER INC. D500MA",
                "0403",
            ),
            (None, None, "ASRock H310CM-HDV", "P1.50"),
            (None, None, "Gigabyte Technology Co., Ltd. H410M S2H", "F5"),
        ),
        (("win10", 0.55), ("win11", 0.35), ("ubuntu", 0.1)),
    ),
    Tier(
        "mini",
        (2017, 2019),
        (Cpu("Intel(R) Atom(TM) x5-Z8350  CPU @ 1.44GHz", 4, 4, 1920),),
        (((2,), 0.7), ((4,), 0.3)),
        (1600,),
        (_EMMC,),
        ((None, None, "AMI Cherry Trail CR", "5.11"),),
        (("win10", 1.0),),
    ),
)
TIER_WEIGHTS = {
    "lab": (0.3, 0.4, 0.25, 0.05),
    "office": (0.15, 0.45, 0.4, 0.0),
    "teacher": (0.25, 0.35, 0.35, 0.05),
}
OSES = {
    "win7": ("windows", "Microsoft Windows 7 Professional", "6.1.7601", "7601"),
    "win10": ("windows", "Microsoft Windows 10 Pro", "10.0.19045", "19045"),
    "win11": ("windows", "Microsoft Windows 11 Pro", "10.0.22631", "22631"),
    "ubuntu": ("linux", "Ubuntu", "22.04", "5.15.0-105-generic"),
}
OUIS = {
    "Dell Inc.": ("B8:CA:3A", "F8:BC:12", "18:66:DA", "D0:94:66"),
    "Hewlett-Packard": ("3C:D9:2B", "EC:B1:D7", "98:E7:F4"),
    "HP": ("3C:D9:2B", "EC:B1:D7", "98:E7:F4"),
    "LENOVO": ("8C:16:45", "98:FA:9B", "E8:6A:64"),
    "ASUSTeK COMPUTER INC.": ("2C:56:DC", "AC:22:0B", "04:D4:C4"),
    "Gigabyte": ("94:DE:80", "1C:6F:65", "50:E5:49", "E0:D5:5E"),
    "MSI": ("D8:CB:8A", "4C:CC:6A"),
    "other": ("00:E0:4C",),
}
MEMORY_PARTS = {
    (1, "old"): ("Samsung", "M378B2873FHS-CH9"),
    (2, "old"): ("Kingston", "99U5584-005.A00LF"),
    (4, "old"): ("Hynix/Hyundai", "HMT351U6CFR8C-H9"),
    (2, "mid"): ("Kingston", "KVR16N11S6/2"),
    (4, "mid"): ("Hynix/Hyundai", "HMT451U6AFR8C-PB"),
    (8, "mid"): ("Samsung", "M378A1K43BB2-CRC"),
    (4, "new"): ("Samsung", "M378A5244CB0-CTD"),
    (8, "new"): ("Micron", "8ATF1G64AZ-2G6E1"),
    (2, "mini"): ("Samsung", "K4E8E324EB-EGCF"),
    (4, "mini"): ("Samsung", "K4E6E304EB-EGCF"),
}
MONITORS = (
    ("DEL", "DELL E1916H", 2014, 2019),
    ("DEL", "DELL E2016H", 2015, 2020),
    ("HWP", "HP LE1851w", 2010, 2013),
    ("HPN", "HP V194", 2017, 2021),
    ("GSM", "20M37", 2015, 2019),
    ("SAM", "S19F350", 2015, 2018),
    ("AOC", "E970SWN", 2014, 2020),
    ("LEN", "LEN T2014A", 2014, 2017),
    ("ACR", "V196HQL", 2013, 2018),
)
HOSTNAME_PREFIX = {
    "lab": "PHONGMAY-PC",
    "office": "VANPHONG-PC",
    "teacher": "GIAOVIEN-PC",
}


# Hardware generation -----------------------------------------------------------


def generate_pc(
    seed: int, school: SimSchool, role: str, index: int, now: datetime
) -> SimPC:
    """One PC of ``school``: hardware from the seed, agent state around ``now``."""
    key = f"{school.code}-{role}-{index:02d}"
    rng = random.Random(f"{seed}/{key}/hardware")
    tier = _pick_tier(rng, role, school.school.level)
    system_row = rng.choice(tier.systems)
    os_key = rng.choices([o for o, _ in tier.oses], weights=[w for _, w in tier.oses])[
        0
    ]

    year = rng.randint(*tier.years)
    sections = {
        "system": _system(rng, system_row, key, role, index, year, now),
        "cpu": _cpu(rng, tier, os_key),
        "memory": _memory(rng, tier, _pick_modules(rng, tier), os_key),
        "disks": _disks(rng, tier, os_key, key),
        "network": _network(rng, system_row, os_key, school, role, index),
        "os": _os(rng, os_key, year, now),
        "software": _software(rng, os_key, role),
        "battery": _battery(),
        "monitors": _monitors(rng, year),
    }
    pc = _agent_state(rng, key, school.code, role, sections, now)
    if os_key == "win7" and rng.random() < 0.3:
        pc.section_errors["monitors"] = "WmiMonitorID: Invalid class (root/wmi)"
    return pc


def _pick_tier(rng: random.Random, role: str, level: str) -> Tier:
    weights = TIER_WEIGHTS["teacher" if level == "preschool" else role]
    return rng.choices(TIERS, weights=weights)[0]


def _pick_modules(rng: random.Random, tier: Tier) -> tuple[int, ...]:
    layouts = [layout for layout, _ in tier.memory]
    return rng.choices(layouts, weights=[w for _, w in tier.memory])[0]


def _agent_state(
    rng: random.Random,
    key: str,
    code: str,
    role: str,
    sections: dict[str, dict[str, Any]],
    now: datetime,
) -> SimPC:
    boot_time = now - timedelta(seconds=rng.randint(20 * 60, 4 * 3600))
    sections["system"]["boot_time"] = wire_time(boot_time)
    return SimPC(
        key=key,
        school=code,
        role=role,
        sections=sections,
        boot_time=boot_time,
        boot_id=_uuid(rng),
        run=f"{rng.getrandbits(32):08x}",
        skew_seconds=0.0,
        on=rng.random() < 0.9,
        state_restored=rng.random() < 0.05,
    )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _serial(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
_HEXU = "0123456789ABCDEF"


def _system(
    rng: random.Random,
    row: tuple[str | None, str | None, str, str],
    key: str,
    role: str,
    index: int,
    year: int,
    now: datetime,
) -> dict[str, Any]:
    manufacturer, model, board, bios = row
    branded = manufacturer is not None
    windows_guid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return {
        "hostname": f"{HOSTNAME_PREFIX[role]}{index:02d}",
        "manufacturer": manufacturer,
        "model": model,
        "serial": _system_serial(rng, manufacturer),
        "uuid": _smbios_uuid(rng, branded),
        "board": board,
        "board_serial": _board_serial(rng, branded),
        "bios_version": bios,
        "bios_date": date(year, rng.randint(1, 12), rng.randint(1, 28)).isoformat(),
        "virtual": False,
        "machine_id": windows_guid,
        "boot_time": None,
    }


def _system_serial(rng: random.Random, manufacturer: str | None) -> str | None:
    if manufacturer == "Dell Inc.":
        return _serial(rng, _UPPER, 7)
    if manufacturer in ("HP", "Hewlett-Packard"):
        return "SGH" + _serial(rng, "0123456789", 3) + _serial(rng, _UPPER, 4)
    if manufacturer == "LENOVO":
        return "PC" + _serial(rng, _UPPER, 6)
    if manufacturer == "ASUSTeK COMPUTER INC.":
        return _serial(rng, _UPPER, 15)
    return None  # white box: "To be filled by O.E.M." normalised to unknown


def _smbios_uuid(rng: random.Random, branded: bool) -> str | None:
    if not branded and rng.random() < 0.5:
        return None  # 03000200-0400-0500-0006-000700080009 and friends
    return _uuid(rng).upper()


def _board_serial(rng: random.Random, branded: bool) -> str | None:
    if branded:
        return "/" + _serial(rng, _UPPER, 7) + "/CN" + _serial(rng, "0123456789", 12)
    return _serial(rng, _UPPER, 15) if rng.random() < 0.4 else None


def _cpu(rng: random.Random, tier: Tier, os_key: str) -> dict[str, Any]:
    cpu = rng.choice(tier.cpus)
    return {
        "model": cpu.model,
        "physical_cores": cpu.physical,
        "logical_cores": cpu.logical,
        "max_frequency_mhz": cpu.mhz,
        "architecture": "x86_64" if os_key == "ubuntu" else "AMD64",
    }


def _memory(
    rng: random.Random, tier: Tier, sizes_gib: Sequence[int], os_key: str
) -> dict[str, Any]:
    speed = rng.choice(tier.memory_speeds)
    modules = [
        _memory_module(rng, tier, slot, size, speed)
        for slot, size in enumerate(sizes_gib)
    ]
    installed = sum(m["size_bytes"] for m in modules)
    reserved = rng.randint(80, 400) * 1024**2
    usable = installed - reserved
    if os_key == "win7" and installed > 3 * GIB:
        usable = min(usable, 3_436_000_000)  # a 32-bit Windows 7 sees ~3.2 GiB
    return {"installed_bytes": installed, "usable_bytes": usable, "modules": modules}


def _memory_module(
    rng: random.Random, tier: Tier, slot: int, size_gib: int, speed: int
) -> dict[str, Any]:
    manufacturer, part = MEMORY_PARTS.get(
        (size_gib, tier.name), ("Kingston", "KVR16N11/4")
    )
    soldered = tier.name == "mini"
    return {
        "slot": "Onboard" if soldered else f"DIMM{slot}",
        "size_bytes": size_gib * GIB,
        "manufacturer": manufacturer,
        "part_number": part,
        "serial": None if soldered else _serial(rng, _HEXU, 8),
        "speed_mhz": speed,
    }


def _disk_serial(rng: random.Random, style: str) -> str | None:
    if style == "seagate":
        return "Z" + _serial(rng, _UPPER, 7)
    if style == "wd":
        return "WD-WCC" + _serial(rng, _UPPER, 8)
    if style == "kingston":
        return "50026B77" + _serial(rng, _HEXU, 8)
    if style == "samsung":
        return "S3Z9NB0K" + _serial(rng, _UPPER, 7)
    if style == "toshiba":
        return _serial(rng, "0123456789", 2) + _serial(rng, _UPPER, 6)
    return "0x" + _serial(rng, "0123456789abcdef", 8)  # eMMC CID serial


def _disks(rng: random.Random, tier: Tier, os_key: str, key: str) -> dict[str, Any]:
    system_disk = rng.choice(tier.disks)
    physical = [_physical_disk(rng, 0, system_disk, os_key)]
    if tier.name == "new" and system_disk.media == "ssd" and rng.random() < 0.2:
        physical.append(_physical_disk(rng, 1, _HDD[1001], os_key))
    if rng.random() < 0.08:
        physical.append(_usb_stick(rng, len(physical), os_key))
    return {"physical": physical, "volumes": _volumes(rng, system_disk, os_key)}


def _physical_disk(rng: random.Random, index: int, disk: Disk, os_key: str) -> dict:
    linux = os_key == "ubuntu"
    interface = "mmc" if disk.serial == "emmc" else ("sata" if linux else "ide")
    if "SN530" in disk.model:
        interface = "nvme" if linux else "scsi"
    return {
        "index": index,
        "model": disk.model,
        "serial": _disk_serial(rng, disk.serial),
        "size_bytes": disk.size_bytes,
        "media": disk.media if linux else None,
        "removable": False,
        "interface": interface,
    }


def _usb_stick(rng: random.Random, index: int, os_key: str) -> dict[str, Any]:
    return {
        "index": index,
        "model": "Kingston DataTraveler 3.0 USB Device",
        "serial": "60A44C3F" + _serial(rng, _HEXU, 16),
        "size_bytes": 15512174592,
        "media": "ssd" if os_key == "ubuntu" else None,
        "removable": True,
        "interface": "usb",
    }


def _volumes(rng: random.Random, disk: Disk, os_key: str) -> list[dict[str, Any]]:
    size = disk.size_bytes
    if os_key == "ubuntu":
        return [_volume("/dev/sda2", "/", "ext4", size - 536870912, rng, True)]
    if size < 300 * 10**9:
        return [_volume("C:", "C:\\", "NTFS", size - 577_000_000, rng, True)]
    system_size = rng.choice((107_374_182_400, 214_748_360_704))
    return [
        _volume("C:", "C:\\", "NTFS", system_size, rng, True),
        _volume("D:", "D:\\", "NTFS", size - system_size - 577_000_000, rng, False),
    ]


def _volume(
    device: str, mount: str, fs: str, size: int, rng: random.Random, system: bool
) -> dict[str, Any]:
    free = int(size * rng.uniform(0.05, 0.7))
    return {
        "device": device,
        "mount": mount,
        "filesystem": fs,
        "size_bytes": size,
        "free_bytes": free,
        "system": system,
    }


def _mac(oui: str, unique: int) -> str:
    """A MAC under ``oui``; distinct ``unique`` numbers give distinct MACs.

    Multiplying by an odd constant modulo 2**24 is a bijection, so the low bytes
    look random yet never collide within one OUI.
    """
    low = (unique * 0x9E3779 + 0x5A5A5) % (1 << 24)
    return f"{oui}:{low >> 16:02X}:{low >> 8 & 255:02X}:{low & 255:02X}"


_ROLE_NUMBER = {"lab": 0, "office": 1, "teacher": 2}


def _unique_number(school: SimSchool, role: str, index: int) -> int:
    return (school.number << 10) | (_ROLE_NUMBER[role] << 8) | index


def _oui_family(row: tuple[str | None, str | None, str, str]) -> str:
    manufacturer, _, board, _ = row
    if manufacturer in OUIS:
        return manufacturer
    for family in ("Gigabyte", "MSI", "ASUSTeK COMPUTER INC."):
        if family.split()[0] in board:
            return family
    return "other"


def _network(
    rng: random.Random,
    row: tuple[str | None, str | None, str, str],
    os_key: str,
    school: SimSchool,
    role: str,
    index: int,
) -> dict[str, Any]:
    linux = os_key == "ubuntu"
    oui = rng.choice(OUIS[_oui_family(row)])
    unique = _unique_number(school, role, index)
    address = f"{school.subnet}.{10 + 60 * _ROLE_NUMBER[role] + index}"
    adapters = [_ethernet(rng, _mac(oui, unique), address, linux)]
    if rng.random() < 0.15:
        adapters.append(_wifi(rng, unique, linux))
    if rng.random() < 0.12:  # the district bought one batch of identical dongles
        adapters.append(_bluetooth(linux))
    if rng.random() < 0.06:
        adapters.append(_vpn(unique, linux))
    if linux:
        adapters.append(
            _adapter("lo", None, "loopback", ["127.0.0.1"], None, True, None)
        )
    return {"adapters": adapters}


def _adapter(
    name: str,
    mac: str | None,
    kind: str,
    addresses: list[str],
    speed: int | None,
    up: bool,
    bus: str | None,
) -> dict[str, Any]:
    return {
        "name": name,
        "mac": mac,
        "kind": kind,
        "addresses": addresses,
        "speed_bps": speed,
        "up": up,
        "bus": bus,
    }


def _ethernet(
    rng: random.Random, mac: str, address: str, linux: bool
) -> dict[str, Any]:
    if linux:
        name = "enp2s0"
    else:
        name = rng.choice(
            (
                "Realtek PCIe GBE Family Controller",
                "Intel(R) Ethernet Connection I219-LM",
            )
        )
    speed = rng.choice((100_000_000, 1_000_000_000))
    return _adapter(name, mac, "ethernet", [address], speed, True, "pci")


def _wifi(rng: random.Random, unique: int, linux: bool) -> dict[str, Any]:
    if rng.random() < 0.5:
        name = "wlp3s0" if linux else "Intel(R) Dual Band Wireless-AC 3165"
        return _adapter(name, _mac("A4:34:D9", unique), "wifi", [], None, False, "pci")
    name = "wlx503eaa000000" if linux else "TP-Link Wireless USB Adapter"
    return _adapter(name, _mac("50:3E:AA", unique), "wifi", [], None, False, "usb")


def _bluetooth(linux: bool) -> dict[str, Any]:
    name = "bnep0" if linux else "Bluetooth Device (Personal Area Network)"
    return _adapter(
        name, "00:1A:7D:DA:71:0A", "bluetooth", [], None, False, "bluetooth"
    )


def _vpn(unique: int, linux: bool) -> dict[str, Any]:
    name = "tun0" if linux else "TAP-Windows Adapter V9"
    mac = None if linux else _mac("00:FF:4E", unique)
    return _adapter(name, mac, "vpn", [], None, False, None if linux else "root")


def _os(rng: random.Random, os_key: str, year: int, now: datetime) -> dict[str, Any]:
    family, name, version, build = OSES[os_key]
    installed = datetime(
        max(year, 2015 if os_key != "win7" else year), 1, 1, tzinfo=UTC
    )
    installed += timedelta(days=rng.randint(0, 900), seconds=rng.randint(0, 86399))
    linux = family == "linux"
    return {
        "family": family,
        "name": name,
        "version": version,
        "build": build,
        "architecture": ("x86_64" if linux else "64-bit")
        if os_key != "win7" or rng.random() < 0.6
        else "32-bit",
        "install_date": None if linux else wire_time(min(installed, now)),
        "vendor_supported": normalize.vendor_supported(
            family, name, version, now.date()
        ),
        "languages": ["vi-VN"]
        if linux
        else rng.choice((["vi-VN", "en-US"], ["en-US"])),
    }


def _battery() -> dict[str, Any]:
    return {
        "present": False,
        "percent": None,
        "plugged": None,
        "cycle_count": None,
        "design_capacity_wh": None,
        "full_capacity_wh": None,
    }


def _monitors(rng: random.Random, year: int) -> dict[str, Any]:
    candidates = [m for m in MONITORS if m[2] <= year + 1] or list(MONITORS[:1])
    code, model, first, last = rng.choice(candidates)
    serial = _serial(rng, _UPPER, 8) if rng.random() < 0.8 else None
    monitor = {"manufacturer": code, "model": model, "serial": serial}
    return {"monitors": [{**monitor, "year": rng.randint(first, last)}]}


# Software ----------------------------------------------------------------------

_WINDOWS_COMMON = (
    ("Google Chrome", "120.0.6099.130", "Google LLC"),
    ("Cốc Cốc", "118.0.5993.124", "Cốc Cốc Company Limited"),
    ("7-Zip 19.00 (x64)", "19.00", "Igor Pavlov"),
    ("Foxit PDF Reader", "12.1.2.15332", "Foxit Software Inc."),
    ("UltraViewer version 6.6.46", "6.6.46", "DucFabulous"),
    (
        "Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.38.33130",
        "14.38.33130.0",
        "Microsoft Corporation",
    ),
)
_WINDOWS_OFFICE = (
    (("LibreOffice 7.6.4.1", "7.6.4.1", "The Document Foundation"),),
    (
        (
            "Microsoft Office Professional Plus 2010",
            "14.0.7015.1000",
            "Microsoft Corporation",
        ),
    ),
    (("Microsoft Office Standard 2016", "16.0.4266.1001", "Microsoft Corporation"),),
)
_WINDOWS_VIETNAMESE = (
    (("UniKey 4.3 RC5", "4.3", None),),
    (("Bộ gõ tiếng Việt Unikey 4.3", "4.3", None),),
    (("EVKey 3.3.8", "3.3.8", "Lâm Quang Minh"),),
)
_WINDOWS_LAB = (
    ("MSWLogo 6.5b", "6.5b", None),
    ("Scratch 3", "3.29.1", "Scratch Foundation"),
    ("Free Pascal 3.2.2", "3.2.2", "Free Pascal Team"),
    ("Python 3.8.10 (64-bit)", "3.8.10150.0", "Python Software Foundation"),
    ("Tux Paint 0.9.28", "0.9.28", "New Breed Software"),
    ("Kiến thức tin học - Luyện gõ phím 10 ngón", "2.0", "Trung tâm Tin học"),
    ("Deep Freeze Standard", "8.63.020.5634", "Faronics Corporation"),
)
_WINDOWS_OFFICE_ONLY = (
    ("MISA Mimosa.NET 2023", "R14", "Công ty Cổ phần MISA"),
    ("Phần mềm Quản lý Thư viện 2.1", "2.1.0", "Công ty Phần mềm Giáo dục"),
    ("Zalo", "23.12.1", "VNG Corporation"),
    ("Phần mềm kê khai thuế HTKK 5.1.7", "5.1.7", "Tổng cục Thuế"),
)
_DPKG = (
    (
        "libreoffice-writer",
        "1:7.3.7-0ubuntu0.22.04.4",
        "Debian LibreOffice Maintainers",
    ),
    ("ibus-unikey", "0.6.1-1.1", "Ubuntu Developers"),
    ("firefox", "1:1snap1-0ubuntu2", "Ubuntu Mozilla Team"),
    ("scratch", "1.4.0.6~dfsg1-6", "Debian Edu Packaging Team"),
    ("tuxpaint", "1:0.9.27-1", "Ubuntu Developers"),
    ("fp-compiler", "3.2.2+dfsg-9ubuntu1", "Pascal Packaging Team"),
    ("python3", "3.10.6-1~22.04", "Ubuntu Developers"),
    ("gcompris-qt", "2.3-1", "Debian KDE Extras Team"),
)


def _software(rng: random.Random, os_key: str, role: str) -> dict[str, Any]:
    if os_key == "ubuntu":
        picked = [p for p in _DPKG if rng.random() < 0.8]
        return {"source": "dpkg", "programs": [_program(rng, p, True) for p in picked]}

    picked = [p for p in _WINDOWS_COMMON if rng.random() < 0.75]
    picked += rng.choice(_WINDOWS_OFFICE) + rng.choice(_WINDOWS_VIETNAMESE)
    extra = _WINDOWS_LAB if role == "lab" else _WINDOWS_OFFICE_ONLY
    picked += [p for p in extra if rng.random() < 0.6]
    programs = [_program(rng, p, False) for p in picked]
    return {"source": "windows-uninstall", "programs": programs}


def _program(
    rng: random.Random, entry: tuple[str, str, str | None], linux: bool
) -> dict[str, Any]:
    name, version, publisher = entry
    install = None
    if not linux and rng.random() < 0.8:
        install = date(2019, 1, 1) + timedelta(days=rng.randint(0, 1800))
    return {
        "name": name,
        "version": version,
        "publisher": publisher,
        "install_date": install.isoformat() if install else None,
    }


_HUGE_VENDORS = (
    ("Microsoft Corporation", "Microsoft Visual C++ Redistributable"),
    ("Adobe Inc.", "Adobe Font Pack"),
    ("Intel Corporation", "Intel(R) Driver Component"),
    ("Công ty Phần mềm Giáo dục", "Học liệu điện tử lớp"),
    ("Hewlett-Packard", "HP Printer Driver Module"),
    ("Realtek Semiconductor Corp.", "Realtek Audio Codec Component"),
    ("КриптоПро", "КриптоПро CSP модуль"),
    ("The Document Foundation", "LibreOffice Help Pack – български"),
)


_HUGE_SUFFIX = "gói cài đặt cho phòng máy, cập nhật theo đợt của Phòng Giáo dục"


def huge_software(seed: int, count: int = HUGE_SOFTWARE_PROGRAMS) -> dict[str, Any]:
    """A software section of ``count`` programs (about 1 MB of JSON for 3,000)."""
    rng = random.Random(f"{seed}/huge-software")
    programs = []
    for number in range(count):
        publisher, product = _HUGE_VENDORS[number % len(_HUGE_VENDORS)]
        version = f"{rng.randint(1, 30)}.{rng.randint(0, 99)}.{rng.randint(0, 99999)}"
        arch = rng.choice(("x86", "x64"))
        name = f"{product} {number:04d} ({arch}) - bản {version} - {_HUGE_SUFFIX}"
        install = date(2015, 1, 1) + timedelta(days=rng.randint(0, 3650))
        programs.append(
            {
                "name": name,
                "version": version,
                "publisher": publisher,
                "install_date": install.isoformat(),
            }
        )
    return {"source": "windows-uninstall", "programs": programs}


# District ----------------------------------------------------------------------


def build_district(
    schools: Sequence[School], options: SimOptions, now: datetime
) -> District:
    """Generate the district (links, PCs, scenarios) from the seed at ``now``."""
    chosen = sorted(schools, key=lambda s: s.code)[: options.schools]
    offline = _ranked_pick(chosen, options.seed, "offline", options.offline_share)
    online = [s for s in chosen if s.code not in offline]
    slow = _ranked_pick(online, options.seed, "slow", options.slow_share)

    district = District(seed=options.seed, now=now, schools=[])
    for number, school in enumerate(chosen):
        sim = _sim_school(
            school, options, now, school.code in offline, school.code in slow
        )
        sim.subnet = f"192.168.{number % 250 + 1}"
        sim.number = number
        sim.pcs = _school_pcs(sim, options, now)
        district.schools.append(sim)

    _assign_clock_skew(district, options)
    _apply_scenarios(district, options)
    logger.info(
        "district of %d schools and %d PCs generated from seed %d",
        len(district.schools),
        sum(1 for _ in district.pcs()),
        options.seed,
    )
    return district


def _ranked_pick(
    schools: Sequence[School], seed: int, what: str, share: float
) -> set[str]:
    count = round(share * len(schools))
    ranked = sorted(
        schools, key=lambda s: random.Random(f"{seed}/{s.code}/{what}").random()
    )
    return {s.code for s in ranked[:count]}


def _sim_school(
    school: School, options: SimOptions, now: datetime, offline: bool, slow: bool
) -> SimSchool:
    rng = random.Random(f"{options.seed}/{school.code}/link")
    contracted = school.contracted_download_mbps or rng.choice(
        (30.0, 50.0, 80.0, 100.0)
    )
    if slow:
        link = rng.uniform(2.0, 8.0)
    else:
        link = min(max(contracted * rng.uniform(0.6, 0.98), 20.0), 100.0)
    sim = SimSchool(
        school, offline, slow, round(link, 2), rng.random() < 0.5, "192.168.1"
    )
    if rng.random() < (0.6 if slow else options.outage_share) and options.days_history:
        sim.outages = _outages(rng, now, options.days_history)
    return sim


def _outages(
    rng: random.Random, now: datetime, days: int
) -> list[tuple[datetime, datetime]]:
    windows = list(session_windows(now - timedelta(days=days), now))
    outages = []
    for _ in range(rng.randint(1, 3)):
        if not windows:
            break
        start, end = rng.choice(windows)
        begin = start + timedelta(minutes=rng.randint(0, 120))
        length = timedelta(minutes=rng.randint(30, 180))
        outages.append((begin, min(begin + length, end)))
    return sorted(o for o in outages if o[0] < o[1])


def session_windows(
    start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Session windows (UTC) between ``start`` and ``end``: Mon-Sat, local hours."""
    day = start.astimezone(SESSION_ZONE).date()
    while day <= end.astimezone(SESSION_ZONE).date():
        if day.weekday() < 6:
            for opens, closes in SESSION_WINDOWS:
                begin = datetime.combine(day, opens, SESSION_ZONE).astimezone(UTC)
                finish = datetime.combine(day, closes, SESSION_ZONE).astimezone(UTC)
                if begin < end and finish > start:
                    yield max(begin, start), min(finish, end)
        day += timedelta(days=1)


def _school_pcs(sim: SimSchool, options: SimOptions, now: datetime) -> list[SimPC]:
    roles = _roles(sim.school, options)
    counters: Counter[str] = Counter()
    pcs = []
    for role in roles:
        counters[role] += 1
        pcs.append(generate_pc(options.seed, sim, role, counters[role], now))
    for pc in pcs[: options.history_pcs_per_school]:
        pc.history = pc.on = True
    return pcs


def _roles(school: School, options: SimOptions) -> list[str]:
    rng = random.Random(f"{options.seed}/{school.code}/roles")
    if school.level == "preschool":
        total = options.pcs_per_school or rng.randint(2, 4)
        return ["office"] + ["teacher"] * (total - 1)
    if school.has_informatics is False:
        return ["office"] * (options.pcs_per_school or rng.randint(1, 3))
    if options.pcs_per_school is not None:
        count = options.pcs_per_school
        return ["lab"] * max(count - 1, 1) + ["office"] * (1 if count > 1 else 0)
    required = school.lab_pcs_required or LAB_DEFAULT.get(school.level, 18)
    lab = max(required + rng.randint(-3, 2), 1)
    return ["lab"] * lab + ["office"] * rng.randint(1, 3)


def _assign_clock_skew(district: District, options: SimOptions) -> None:
    """Most clocks are seconds off; a few PCs have a dead CMOS battery (years off)."""
    for pc in district.pcs():
        rng = random.Random(f"{options.seed}/{pc.key}/clock")
        if rng.random() < options.skewed_clock_share:
            pc.skew_seconds = -float(
                rng.choice((3, 5, 8)) * 365 * 86400 + rng.randint(0, 86400)
            )
        else:
            pc.skew_seconds = float(rng.randint(-5, 5))


# Scenarios ---------------------------------------------------------------------


def _apply_scenarios(district: District, options: SimOptions) -> None:
    labs = [
        s
        for s in district.schools
        if not s.offline and any(p.role == "lab" for p in s.pcs)
    ]
    for name in SCENARIOS:
        if name in options.scenarios:
            devices = _SCENARIO_BUILDERS[name](district, labs, options)
            district.scenario_devices[name] = devices
            logger.info(
                "scenario %s set up on %s", name, ", ".join(devices) or "nothing"
            )


def _lab_pcs(labs: Sequence[SimSchool], number: int) -> list[SimPC]:
    if not labs:
        return []
    school = labs[number % len(labs)]
    return [p for p in school.pcs if p.role == "lab"]


def _scenario_clone(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    group = _lab_pcs(labs, 0)[: options.clone_count]
    if len(group) < 2:
        return []
    master = group[0]
    for clone in group[1:]:
        clone.clone_of = master.key
        clone.on = True
        clone.sections["system"]["hostname"] = master.hostname
        clone.sections["system"]["machine_id"] = master.sections["system"]["machine_id"]
    return [pc.key for pc in group]


def _scenario_move(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    if len(labs) < 2:
        return []
    pc = _lab_pcs(labs, 1)[-1]
    pc.move_to = labs[0].code if labs[1].code == pc.school else labs[1].code
    pc.on = True
    return [pc.key]


def _scenario_ram_upgrade(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    return _change_memory(_lab_pcs(labs, 2), (2, 2), (4, 4))


def _scenario_ram_removed(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    return _change_memory(_lab_pcs(labs, 3), (4, 4), (4,))


def _change_memory(
    candidates: Sequence[SimPC], before: tuple[int, ...], after: tuple[int, ...]
) -> list[str]:
    free = [p for p in candidates if p.later_memory is None and p.clone_of is None]
    if not free:
        return []
    pc = free[len(free) // 2]
    rng = random.Random(f"{pc.key}/memory-change")
    tier = TIERS[1]
    os_key = "win7" if "Windows 7" in (pc.sections["os"]["name"] or "") else "win10"
    pc.sections["memory"] = _memory(rng, tier, before, os_key)
    later = _memory(rng, tier, after, os_key)
    kept = len(after) if len(after) < len(before) else 0
    later["modules"][:kept] = pc.sections["memory"]["modules"][:kept]
    pc.later_memory = later
    pc.on = True
    return [pc.key]


def _scenario_huge_software(
    district: District, labs: list[SimSchool], options: SimOptions
) -> list[str]:
    online = [s for s in district.schools if not s.offline and s.pcs]
    if not online:
        return []
    pc = online[-1].pcs[-1]
    pc.sections["software"] = huge_software(options.seed)
    pc.on = True
    return [pc.key]


_SCENARIO_BUILDERS: dict[
    str, Callable[[District, list[SimSchool], SimOptions], list[str]]
] = {
    "clone": _scenario_clone,
    "move": _scenario_move,
    "ram-upgrade": _scenario_ram_upgrade,
    "ram-removed": _scenario_ram_removed,
    "huge-software": _scenario_huge_software,
}


# Sections, identity and samples ------------------------------------------------


def section_envelope(data: dict[str, Any], collected_at: datetime) -> dict[str, Any]:
    """Wrap section data in the envelope of design.md (status ok)."""
    return {
        "status": "ok",
        "collected_at": wire_time(collected_at),
        "duration_seconds": 0.05,
        "error": None,
        "warnings": [],
        "hash": normalize.canonical_hash(data),
        "data": data,
    }


def failed_envelope(error: str, collected_at: datetime) -> dict[str, Any]:
    """The envelope of a section whose reader failed: status error, no data."""
    return {
        "status": "error",
        "collected_at": wire_time(collected_at),
        "duration_seconds": 1.2,
        "error": error,
        "warnings": [],
        "hash": None,
        "data": None,
    }


def inventory_document(
    sections: Mapping[str, dict[str, Any]],
    collected_at: datetime,
    errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The report's ``inventory`` object; sections named in ``errors`` failed."""
    errors = errors or {}
    envelopes = {
        name: failed_envelope(errors[name], collected_at)
        if name in errors
        else section_envelope(data, collected_at)
        for name, data in sections.items()
    }
    hashes = {name: env["hash"] for name, env in envelopes.items()}
    return {"hash": normalize.canonical_hash(hashes), "sections": envelopes}


def compute_identity(sections: Mapping[str, Any]) -> dict[str, Any]:
    """Identity signals of design.md, computed the way the agent computes them."""
    return normalize.identity_signals(sections)


def pc_clock(pc: SimPC, instant: datetime) -> datetime:
    """What the PC's own clock says at the true ``instant``."""
    return instant + timedelta(seconds=pc.skew_seconds)


PROBE_PLAN = (
    ("collector", "collector", "tcp"),
    ("collector", "collector", "https"),
    ("internet", "internet", "dns"),
    ("internet", "internet", "tcp"),
    ("internet", "internet", "https"),
)
_FAILURE_REASONS = {
    "dns": "name resolution failed",
    "tcp": "connection timed out",
    "https": "timeout",
}


@dataclass(frozen=True)
class Moment:
    """One agent cycle: when (true time), which boot and run, and the link's state."""

    at: datetime
    boot_time: datetime
    boot_id: str
    run: str
    cycle: int
    link_up: bool
    slow: bool


def cycle_probes(pc: SimPC, rng: random.Random, moment: Moment) -> list[dict[str, Any]]:
    """The probe samples of one cycle, one second apart, ending at ``moment.at``."""
    samples = []
    for offset, (target, scope, kind) in enumerate(PROBE_PLAN):
        instant = moment.at - timedelta(seconds=len(PROBE_PLAN) - offset)
        samples.append(_probe(pc, rng, moment, instant, (target, scope, kind)))
    return samples


def _probe(
    pc: SimPC,
    rng: random.Random,
    moment: Moment,
    instant: datetime,
    plan: tuple[str, str, str],
) -> dict[str, Any]:
    target, scope, kind = plan
    failure_rate = 0.08 if moment.slow else 0.005
    ok = moment.link_up and rng.random() >= failure_rate
    base = {"dns": 0.01, "tcp": 0.02, "https": 0.08}[kind] * (4 if moment.slow else 1)
    return {
        "run": moment.run,
        "seq": pc.next_seq(),
        "cycle": moment.cycle,
        "wall_time": wire_time(pc_clock(pc, instant)),
        "monotonic": round((instant - moment.boot_time).total_seconds(), 3),
        "boot_id": moment.boot_id,
        "target": target,
        "scope": scope,
        "kind": kind,
        "ok": ok,
        "duration_seconds": round(base * rng.uniform(0.5, 2.5), 4) if ok else 5.0,
        "reason": None if ok else _FAILURE_REASONS[kind],
        "detail": _probe_detail(kind) if ok else None,
    }


def _probe_detail(kind: str) -> dict[str, Any]:
    if kind == "https":
        return {"status_code": 204}
    if kind == "tcp":
        return {"port": 443}
    return {"answers": 1}


SPEEDTEST_SERVERS = (
    {
        "id": "9903",
        "name": "Hanoi",
        "host": "speedtest.hni.viettel.vn:8080",
        "sponsor": "Viettel Network",
    },
    {
        "id": "6085",
        "name": "Ho Chi Minh City",
        "host": "speedtest.vnpt.vn:8080",
        "sponsor": "VNPT-NET",
    },
    {
        "id": "2515",
        "name": "Hanoi",
        "host": "speedtest.fpt.vn:8080",
        "sponsor": "FPT Telecom",
    },
    {
        "id": "17758",
        "name": "Da Nang",
        "host": "speedtest.cmctelecom.vn:8080",
        "sponsor": "CMC Telecom",
    },
)
SPEEDTEST_FAILURES = (
    "server unreachable",
    "test service refused",
    "rate limited",
    "timeout",
)


def speed_test(
    pc: SimPC, rng: random.Random, moment: Moment, link_mbps: float, agent_version: str
) -> dict[str, Any]:
    """One speed test at ``moment``: a measurement, or a failure with a reason."""
    backend = "collector" if rng.random() < 0.15 else "speedtest-net"
    duration = round(rng.uniform(14.0, 24.0), 1)
    started = moment.at - timedelta(seconds=duration)
    result = {
        "run": moment.run,
        "seq": pc.next_seq(),
        "wall_time": wire_time(pc_clock(pc, moment.at)),
        "monotonic": round((moment.at - moment.boot_time).total_seconds(), 3),
        "boot_id": moment.boot_id,
        "backend": backend,
        "tool": "speedtest-cli" if backend == "speedtest-net" else "schoolmon",
        "tool_version": "2.1.3" if backend == "speedtest-net" else agent_version,
        "started_at": wire_time(pc_clock(pc, started)),
        "duration_seconds": duration,
        "flags": [],
    }
    failed = not moment.link_up or rng.random() < 0.05
    figures = (
        _failed_figures(rng, moment) if failed else _figures(rng, link_mbps, backend)
    )
    return {**result, **figures}


def _figures(rng: random.Random, link_mbps: float, backend: str) -> dict[str, Any]:
    download = link_mbps * rng.uniform(0.7, 1.05) * 125_000
    upload = download * rng.uniform(0.3, 0.9)
    if rng.random() < 0.02:
        upload = download * 10  # a broken server: kept, flagged by the collector
    latency = rng.uniform(0.005, 0.06) * (5 if link_mbps < 10 else 1)
    server = rng.choice(SPEEDTEST_SERVERS) if backend == "speedtest-net" else None
    return {
        "ok": True,
        "reason": None,
        "server": dict(server) if server else None,
        "download_bytes_per_second": round(download, 1),
        "upload_bytes_per_second": round(upload, 1),
        "latency_seconds": round(latency, 4),
        "jitter_seconds": round(latency * rng.uniform(0.05, 0.4), 4),
        "bytes_used": int((download + upload) * 10),
        "streams": 4 if backend == "speedtest-net" else 1,
    }


def _failed_figures(rng: random.Random, moment: Moment) -> dict[str, Any]:
    reason = (
        "server unreachable" if not moment.link_up else rng.choice(SPEEDTEST_FAILURES)
    )
    return {
        "ok": False,
        "reason": reason,
        "server": None,
        "download_bytes_per_second": None,
        "upload_bytes_per_second": None,
        "latency_seconds": None,
        "jitter_seconds": None,
        "bytes_used": None,
        "streams": None,
    }


def health(pc: SimPC, at: datetime, outbox_items: int) -> dict[str, Any]:
    """The agent health section of a report sent at ``at``."""
    started = pc.boot_time + timedelta(seconds=45)
    return {
        "started_at": wire_time(pc_clock(pc, started)),
        "uptime_seconds": max(int((at - started).total_seconds()), 0),
        "outbox_items": outbox_items,
        "outbox_bytes": outbox_items * 310,
        "dropped_total": {"probes": 0},
        "undelivered_lost": 3 if pc.state_restored else 0,
        "state_restored": pc.state_restored,
        "set_aside_total": 0,
        "last_error": None,
    }


# Report bodies -----------------------------------------------------------------


@dataclass(frozen=True)
class PreparedReport:
    """A ready-to-send report: gzip body and whose credential it travels with.

    ``credential_keys`` are tried in order; a ``replace_credential`` instruction is
    stored under the first one.
    """

    device_key: str
    credential_keys: tuple[str, ...]
    body: bytes
    items: int


def report_document(
    pc: SimPC,
    sent_at: datetime,
    *,
    inventory: dict[str, Any] | None,
    probes: list[dict[str, Any]],
    speedtests: list[dict[str, Any]],
    agent_version: str,
) -> dict[str, Any]:
    """A report as design.md's wire format, sent by ``pc`` at the true ``sent_at``."""
    identity = compute_identity(pc.sections)
    return {
        "schema": 1,
        "agent_version": agent_version,
        "sent_at": wire_time(pc_clock(pc, sent_at)),
        "sent_monotonic": round((sent_at - pc.boot_time).total_seconds(), 3),
        "boot_id": pc.boot_id,
        "identity": identity,
        "inventory": inventory,
        "probes": probes,
        "speedtests": speedtests,
        "health": health(pc, sent_at, len(probes) + len(speedtests)),
    }


def encode_body(document: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, gzip-compressed with a fixed header (byte-stable)."""
    raw = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _credential_keys(pc: SimPC) -> tuple[str, ...]:
    if pc.moved:
        return (f"{pc.key}@{pc.move_to}",)
    if pc.clone_of:
        return (pc.key, pc.clone_of)
    return (pc.key,)


def _inventory_for(pc: SimPC, at: datetime) -> dict[str, Any] | None:
    if pc.inventory_sent and not pc.wants_full_inventory:
        return None
    pc.inventory_sent = True
    pc.wants_full_inventory = False
    return inventory_document(pc.sections, pc_clock(pc, at), pc.section_errors)


def reporting_pcs(district: District) -> Iterator[tuple[SimSchool, SimPC]]:
    """PCs that report: switched on, in a school whose link works."""
    for sim in district.schools:
        if sim.offline:
            continue
        for pc in sim.pcs:
            if pc.on:
                yield sim, pc


def prepare_cycle(
    district: District, cycle: int, at: datetime, options: SimOptions
) -> list[PreparedReport]:
    """One live cycle: every reporting PC sends its probes (and inventory if due)."""
    reports = []
    for sim, pc in reporting_pcs(district):
        if cycle == options.cycles - 1:
            _apply_late_changes(pc)
        reports.append(_live_report(district, sim, pc, cycle, at, options))
    return reports


def _apply_late_changes(pc: SimPC) -> None:
    """Before the last cycle: memory changes and moves take effect."""
    if pc.later_memory is not None:
        pc.sections["memory"] = pc.later_memory
        pc.later_memory = None
        pc.wants_full_inventory = True
    if pc.move_to and not pc.moved:
        pc.moved = True
        pc.wants_full_inventory = True


def _live_report(
    district: District,
    sim: SimSchool,
    pc: SimPC,
    cycle: int,
    at: datetime,
    options: SimOptions,
) -> PreparedReport:
    rng = random.Random(f"{district.seed}/{pc.key}/live/{cycle}")
    pc.cycle += 1
    moment = Moment(at, pc.boot_time, pc.boot_id, pc.run, pc.cycle, True, sim.slow)
    probes = cycle_probes(pc, rng, moment)
    speedtests = []
    if pc.wants_speedtest or (cycle == 0 and pc is _speed_tester(sim)):
        pc.wants_speedtest = False
        speedtests.append(
            speed_test(pc, rng, moment, sim.link_mbps, options.agent_version)
        )
    document = report_document(
        pc,
        at,
        inventory=_inventory_for(pc, at),
        probes=probes,
        speedtests=speedtests,
        agent_version=options.agent_version,
    )
    body = encode_body(document)
    return PreparedReport(
        pc.key, _credential_keys(pc), body, len(probes) + len(speedtests)
    )


def _speed_tester(sim: SimSchool) -> SimPC | None:
    """Exactly one PC per school runs the slot's speed test."""
    return next((p for p in sim.pcs if p.on), None)


def prepare_history(
    district: District, options: SimOptions, until: datetime
) -> Iterator[PreparedReport]:
    """Backfill reports: samples of past session days, in batches, sent at ``until``."""
    for sim, pc in reporting_pcs(district):
        if pc.history and options.days_history:
            yield from _history_reports(district, sim, pc, options, until)


def _history_reports(
    district: District,
    sim: SimSchool,
    pc: SimPC,
    options: SimOptions,
    until: datetime,
) -> Iterator[PreparedReport]:
    items = list(history_samples(district, sim, pc, options, until))
    for start in range(0, len(items), options.history_batch):
        batch = items[start : start + options.history_batch]
        document = report_document(
            pc,
            until,
            inventory=_inventory_for(pc, until),
            probes=[s for s in batch if "kind" in s],
            speedtests=[s for s in batch if "kind" not in s],
            agent_version=options.agent_version,
        )
        yield PreparedReport(
            pc.key, _credential_keys(pc), encode_body(document), len(batch)
        )


def history_samples(
    district: District,
    sim: SimSchool,
    pc: SimPC,
    options: SimOptions,
    until: datetime,
) -> Iterator[dict[str, Any]]:
    """Probe samples and speed tests of past days, each day on its own boot."""
    start = until - timedelta(days=options.days_history)
    end = min(until - timedelta(seconds=options.history_step_seconds), pc.boot_time)
    tester = _speed_tester(sim) is pc
    for day, windows in _windows_by_day(start, end):
        rng = random.Random(f"{district.seed}/{pc.key}/history/{day.isoformat()}")
        yield from _history_day(pc, sim, rng, windows, options, tester)


def _windows_by_day(
    start: datetime, end: datetime
) -> Iterator[tuple[date, list[tuple[datetime, datetime]]]]:
    days: dict[date, list[tuple[datetime, datetime]]] = {}
    for begin, finish in session_windows(start, end):
        days.setdefault(begin.astimezone(SESSION_ZONE).date(), []).append(
            (begin, finish)
        )
    yield from days.items()


def _history_day(
    pc: SimPC,
    sim: SimSchool,
    rng: random.Random,
    windows: list[tuple[datetime, datetime]],
    options: SimOptions,
    tester: bool,
) -> Iterator[dict[str, Any]]:
    on_at = windows[0][0] + timedelta(minutes=rng.randint(0, 15))
    run_id = f"{rng.getrandbits(32):08x}"
    boot = Moment(
        on_at, on_at - timedelta(seconds=90), _uuid(rng), run_id, 0, True, sim.slow
    )
    saturday = windows[0][0].astimezone(SESSION_ZONE).weekday() == 5
    test_at = windows[0][0] + timedelta(hours=3, minutes=rng.randint(0, 20))
    step = timedelta(seconds=options.history_step_seconds)
    cycle = 0
    for begin, finish in windows[:1] if saturday and sim.saturday_off else windows:
        # a cycle's probes run in the seconds before its instant
        instant = max(begin, on_at) + timedelta(seconds=len(PROBE_PLAN))
        off_at = finish - timedelta(minutes=rng.randint(0, 10))
        while instant < off_at:
            cycle += 1
            moment = _history_moment(boot, instant, cycle, sim)
            yield from cycle_probes(pc, rng, moment)
            if tester and instant <= test_at < instant + step:
                yield speed_test(pc, rng, moment, sim.link_mbps, options.agent_version)
            instant += step


def _history_moment(
    boot: Moment, instant: datetime, cycle: int, sim: SimSchool
) -> Moment:
    up = not any(start <= instant < end for start, end in sim.outages)
    return Moment(instant, boot.boot_time, boot.boot_id, boot.run, cycle, up, sim.slow)


def iter_report_bodies(
    district: District, options: SimOptions, at: datetime
) -> Iterator[PreparedReport]:
    """All reports of a run without feedback, for benchmarks: history, then cycles."""
    yield from prepare_history(district, options, at)
    for cycle in range(options.cycles):
        yield from prepare_cycle(
            district,
            cycle,
            at + timedelta(seconds=cycle * options.interval_seconds),
            options,
        )


# Delivery ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one HTTP exchange gave: a status key and the decoded answer, if any."""

    status: str
    answer: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.status in ("200", "201") and self.answer is not None


class Collector:
    """Posts to the collector's API; one requests session per worker thread."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session_factory = session_factory
        self._local = threading.local()

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST ``body``; never raises for HTTP or transport failures."""
        session = self._session()
        try:
            response = session.post(
                self.base_url + path,
                data=body,
                headers=dict(headers),
                timeout=self.timeout,
            )
        except requests.Timeout:
            return Outcome("timeout", None)
        except requests.ConnectionError:
            return Outcome("connection error", None)
        return Outcome(str(response.status_code), _json_answer(response))

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._session_factory()
        return session


def _json_answer(response: requests.Response) -> dict[str, Any] | None:
    try:
        answer = response.json()
    except ValueError:  # not JSON: counted by its status, never fatal
        return None
    return answer if isinstance(answer, dict) else None


@dataclass
class PhaseSummary:
    """Counts of one phase (enrollment, history, a live cycle)."""

    name: str
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    elapsed_seconds: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            self.requests += 1
            self.statuses[outcome.status] += 1
            if outcome.ok:
                self.succeeded += 1
                _add_counts(self.accepted, outcome.answer.get("accepted"))
                _add_counts(self.duplicates, outcome.answer.get("duplicates"))
            else:
                self.failed += 1

    @property
    def per_second(self) -> float:
        return self.requests / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def line(self) -> str:
        statuses = (
            ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items())) or "-"
        )
        return (
            f"{self.name}: {self.requests} requests, {self.succeeded} succeeded, "
            f"{self.failed} failed ({statuses}); accepted {_counts(self.accepted)}; "
            f"duplicates {_counts(self.duplicates)}; {self.elapsed_seconds:.2f} s, "
            f"{self.per_second:.1f} requests/s"
        )


def _add_counts(total: Counter[str], counts: object) -> None:
    if isinstance(counts, Mapping):
        for kind, number in counts.items():
            if isinstance(number, int):
                total[kind] += number


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


@dataclass
class Summary:
    """The whole run: phases and totals."""

    phases: list[PhaseSummary]
    devices_enrolled: int
    elapsed_seconds: float
    scenario_devices: dict[str, list[str]]

    def _reports(self) -> list[PhaseSummary]:
        return [p for p in self.phases if not p.name.startswith("enroll")]

    @property
    def reports_sent(self) -> int:
        return sum(p.requests for p in self._reports())

    @property
    def reports_accepted(self) -> int:
        return sum(p.succeeded for p in self._reports())

    @property
    def reports_failed(self) -> int:
        return sum(p.failed for p in self._reports())

    @property
    def statuses(self) -> Counter[str]:
        return sum((p.statuses for p in self._reports()), Counter())

    @property
    def samples_accepted(self) -> Counter[str]:
        return sum((p.accepted for p in self._reports()), Counter())

    @property
    def samples_duplicate(self) -> Counter[str]:
        return sum((p.duplicates for p in self._reports()), Counter())

    @property
    def reports_per_second(self) -> float:
        sending = sum(p.elapsed_seconds for p in self._reports())
        return self.reports_sent / sending if sending > 0 else 0.0

    def line(self) -> str:
        statuses = (
            ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items())) or "-"
        )
        return (
            f"total: {self.devices_enrolled} devices enrolled; reports sent "
            f"{self.reports_sent}, accepted {self.reports_accepted}, failed "
            f"{self.reports_failed} ({statuses}); samples accepted "
            f"{_counts(self.samples_accepted)}; duplicates "
            f"{_counts(self.samples_duplicate)}; elapsed {self.elapsed_seconds:.2f} s; "
            f"{self.reports_per_second:.1f} reports/s"
        )


class Credentials:
    """Device credentials by key, shared by the sending threads."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, keys: Sequence[str]) -> str | None:
        with self._lock:
            return next((self._values[k] for k in keys if k in self._values), None)

    def set(self, key: str, credential: str) -> None:
        with self._lock:
            self._values[key] = credential

    def __len__(self) -> int:
        return len(self._values)


def token_for(tokens: Mapping[str, str], code: str, role: str) -> str | None:
    """The enrollment token of a school's role: ``CODE:ROLE``, else ``CODE``."""
    return tokens.get(f"{code}:{role}") or tokens.get(code)


def enroll_body(pc: SimPC, token: str, agent_version: str) -> dict[str, Any]:
    """The ``POST /api/v1/enroll`` document of ``pc``."""
    return {
        "token": token,
        "hostname": pc.hostname,
        "identity": compute_identity(pc.sections),
        "agent_version": agent_version,
    }


def enroll_devices(
    collector: Collector,
    district: District,
    tokens: Mapping[str, str],
    credentials: Credentials,
    options: SimOptions,
    moved: bool = False,
) -> PhaseSummary:
    """Enroll every reporting PC (clones excepted) with its school's token.

    With ``moved``, enroll instead the PCs of the move scenario with the token of
    the school they moved to (their later reports use that credential).
    """
    pcs = [pc for _, pc in reporting_pcs(district)]
    if moved:
        jobs = [(pc, pc.move_to, f"{pc.key}@{pc.move_to}") for pc in pcs if pc.move_to]
    else:
        jobs = [(pc, pc.school, pc.key) for pc in pcs if pc.clone_of is None]
    phase = PhaseSummary("enroll moved" if moved else "enroll")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        done = pool.map(
            lambda job: _enroll_one(
                collector, *job, tokens, credentials, options, phase
            ),
            jobs,
        )
        list(done)  # re-raise a programming error from a worker
    phase.elapsed_seconds = time.perf_counter() - started
    logger.info("%s", phase.line())
    return phase


def _enroll_one(
    collector: Collector,
    pc: SimPC,
    code: str,
    key: str,
    tokens: Mapping[str, str],
    credentials: Credentials,
    options: SimOptions,
    phase: PhaseSummary,
) -> None:
    token = token_for(tokens, code, pc.role)
    if token is None:
        phase.record(Outcome("no token", None))
        return
    body = json.dumps(enroll_body(pc, token, options.agent_version)).encode()
    headers = {"Content-Type": "application/json"}
    outcome = collector.post("/api/v1/enroll", body, headers)
    phase.record(outcome)
    if outcome.ok and isinstance(outcome.answer.get("credential"), str):
        credentials.set(key, outcome.answer["credential"])
        logger.debug(
            "enrolled %s at %s as %s", pc.key, code, outcome.answer.get("device_id")
        )
    else:
        logger.warning("enrolling %s at %s failed: %s", pc.key, code, outcome.status)


def send_reports(
    collector: Collector,
    reports: Iterable[PreparedReport],
    credentials: Credentials,
    name: str,
    workers: int,
    district: District | None = None,
) -> PhaseSummary:
    """Send reports with a bounded pool; a device's reports go in order, one at a time.

    Answers are followed: ``replace_credential`` stores the new credential,
    ``send_full_inventory`` and ``run_speedtest`` mark the PC (when ``district`` is
    given) for its next report.
    """
    by_device: dict[str, list[PreparedReport]] = {}
    for report in reports:
        by_device.setdefault(report.device_key, []).append(report)
    phase = PhaseSummary(name)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(
            lambda queue: _send_queue(collector, queue, credentials, phase, district),
            by_device.values(),
        )
        list(done)  # re-raise a programming error from a worker
    phase.elapsed_seconds = time.perf_counter() - started
    logger.info("%s", phase.line())
    return phase


def _send_queue(
    collector: Collector,
    queue: list[PreparedReport],
    credentials: Credentials,
    phase: PhaseSummary,
    district: District | None,
) -> None:
    for report in queue:
        outcome = _send_one(collector, report, credentials)
        phase.record(outcome)
        if outcome.ok:
            _follow_instructions(report, outcome.answer, credentials, district)


def _send_one(
    collector: Collector, report: PreparedReport, credentials: Credentials
) -> Outcome:
    credential = credentials.get(report.credential_keys)
    if credential is None:
        return Outcome("not enrolled", None)
    headers = {
        "Authorization": f"Bearer {credential}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    outcome = collector.post("/api/v1/reports", report.body, headers)
    if not outcome.ok:
        logger.warning("report of %s answered %s", report.device_key, outcome.status)
    return outcome


def _follow_instructions(
    report: PreparedReport,
    answer: Mapping[str, Any],
    credentials: Credentials,
    district: District | None,
) -> None:
    for instruction in answer.get("instructions") or []:
        kind = instruction.get("kind") if isinstance(instruction, Mapping) else None
        if kind == "replace_credential" and isinstance(
            instruction.get("credential"), str
        ):
            credentials.set(report.credential_keys[0], instruction["credential"])
            logger.info("%s got its own credential", report.device_key)
        elif district is not None and kind in ("send_full_inventory", "run_speedtest"):
            pc = district.pc(report.device_key)
            if kind == "send_full_inventory":
                pc.wants_full_inventory = True
            else:
                pc.wants_speedtest = True


# The whole run -----------------------------------------------------------------


def resolve_schools(
    tokens: Mapping[str, str], options: SimOptions, registry: Path | None = None
) -> list[School]:
    """Schools to simulate: registry rows with a token, synthetic ones for the rest."""
    codes = sorted({key.split(":", 1)[0] for key in tokens})
    path = registry or (DEFAULT_REGISTRY if DEFAULT_REGISTRY.exists() else None)
    known = {s.code: s for s in load_registry(path)} if path else {}
    missing = [code for code in codes if code not in known]
    return [known[c] for c in codes if c in known] + synthetic_schools(
        missing, options.seed
    )


def run(
    base_url: str,
    tokens: Mapping[str, str],
    options: SimOptions,
    *,
    schools: Sequence[School] | None = None,
    clock: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    collector: Collector | None = None,
    on_phase: Callable[[PhaseSummary], None] | None = None,
) -> Summary:
    """Simulate the district against the collector at ``base_url``; never raises for
    collector errors (they are counted by status) and stops after ``options.cycles``.
    """
    started = time.perf_counter()
    collector = collector or Collector(base_url, options.timeout_seconds)
    schools = list(schools) if schools is not None else resolve_schools(tokens, options)
    district = build_district(schools, options, clock())
    session = _Session(collector, district, tokens, Credentials(), options, on_phase)

    session.record(enroll_devices(*session.enroll_args()))
    if options.days_history:
        history = prepare_history(district, options, clock())
        session.record(session.send(history, "history"))
    for cycle in range(options.cycles):
        if cycle:
            sleep(options.interval_seconds)
        _live_cycle(session, cycle, clock())

    phases = session.phases
    enrolled = sum(p.succeeded for p in phases if p.name.startswith("enroll"))
    elapsed = time.perf_counter() - started
    return Summary(phases, enrolled, elapsed, district.scenario_devices)


@dataclass
class _Session:
    """What the phases of one run share."""

    collector: Collector
    district: District
    tokens: Mapping[str, str]
    credentials: Credentials
    options: SimOptions
    on_phase: Callable[[PhaseSummary], None] | None
    phases: list[PhaseSummary] = field(default_factory=list)

    def record(self, phase: PhaseSummary) -> None:
        self.phases.append(phase)
        if self.on_phase is not None:
            self.on_phase(phase)

    def enroll_args(self) -> tuple:
        return (
            self.collector,
            self.district,
            self.tokens,
            self.credentials,
            self.options,
        )

    def send(self, reports: Iterable[PreparedReport], name: str) -> PhaseSummary:
        workers = self.options.workers
        return send_reports(
            self.collector, reports, self.credentials, name, workers, self.district
        )


def _live_cycle(session: _Session, cycle: int, at: datetime) -> None:
    """One live cycle; moved PCs enroll at their new school before the last one."""
    options, district = session.options, session.district
    last = cycle == options.cycles - 1
    if last and district.scenario_devices.get("move"):
        session.record(enroll_devices(*session.enroll_args(), moved=True))
    reports = prepare_cycle(district, cycle, at, options)
    session.record(session.send(reports, f"cycle {cycle + 1}/{options.cycles}"))


# Tokens ------------------------------------------------------------------------


def server_command() -> list[str]:
    """How to run ``schoolmon-server``: the installed script, else the module."""
    script = shutil.which("schoolmon-server")
    return [script] if script else [sys.executable, "-m", "schoolmon.server"]


def tokens_from_db(
    db: str,
    schools: Sequence[School],
    command: Sequence[str] | None = None,
    workers: int = 4,
) -> dict[str, str]:
    """Tokens per ``CODE:ROLE`` from ``schoolmon-server schools token --db DB``.

    A school the command refuses is logged and left out; a command that cannot be
    run at all is a ``SimulationError``.
    """
    command = list(command or server_command())
    jobs = [(s.code, role) for s in schools for role in _school_roles(s)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda job: _token(command, db, *job), jobs)
        return {
            f"{code}:{role}": token
            for (code, role), token in zip(jobs, results, strict=True)
            if token
        }


def _school_roles(school: School) -> tuple[str, ...]:
    return ("office", "teacher") if school.level == "preschool" else ("lab", "office")


def _token(command: list[str], db: str, code: str, role: str) -> str | None:
    argv = [*command, "schools", "token", code, "--role", role, "--db", db]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=True
        )
    except FileNotFoundError as exc:
        raise SimulationError(f"cannot run {command[0]}: {exc}") from exc
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (getattr(exc, "stderr", None) or "").strip().splitlines()
        logger.warning(
            "no %s token for school %s: %s", role, code, detail[-1] if detail else exc
        )
        return None
    token = done.stdout.strip()
    return token or None


# Command line ------------------------------------------------------------------


def parse_token(text: str) -> tuple[str, str]:
    """Parse ``CODE=TOKEN`` or ``CODE:ROLE=TOKEN``."""
    key, sep, token = text.partition("=")
    if not sep or not key.strip() or not token.strip():
        raise argparse.ArgumentTypeError(
            f"--token expects CODE=TOKEN or CODE:ROLE=TOKEN, got {text!r}"
        )
    return key.strip(), token.strip()


def parse_scenarios(text: str) -> frozenset[str]:
    """Parse a comma-separated list of scenarios."""
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(SCENARIOS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m schoolmon.server.simulate",
        description="Simulate a district of school PCs reporting to a collector.",
    )
    parser.add_argument("--url", required=True, help="collector base URL")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--tokens-from-db",
        metavar="DB",
        help="get tokens with schoolmon-server --db DB",
    )
    source.add_argument(
        "--token", action="append", type=parse_token, metavar="CODE=TOKEN"
    )
    parser.add_argument(
        "--registry", type=Path, help="school registry CSV (default: sample registry)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--schools", type=int)
    parser.add_argument("--pcs-per-school", type=int)
    parser.add_argument("--days-history", type=int, default=0)
    parser.add_argument("--cycles", type=int, default=1)
    parser.add_argument(
        "--interval", type=float, default=0.0, help="seconds between cycles"
    )
    parser.add_argument("--offline-share", type=float, default=0.05)
    parser.add_argument("--slow-share", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--scenario", type=parse_scenarios, default=frozenset())
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _options(args: argparse.Namespace) -> SimOptions:
    return SimOptions(
        seed=args.seed,
        schools=args.schools,
        pcs_per_school=args.pcs_per_school,
        days_history=args.days_history,
        cycles=args.cycles,
        interval_seconds=args.interval,
        offline_share=args.offline_share,
        slow_share=args.slow_share,
        workers=args.workers,
        scenarios=args.scenario,
        timeout_seconds=args.timeout,
    )


def _cli_tokens(
    args: argparse.Namespace, options: SimOptions
) -> tuple[dict[str, str], list[School]]:
    if args.token:
        tokens = dict(args.token)
        return tokens, resolve_schools(tokens, options, args.registry)
    path = args.registry or DEFAULT_REGISTRY
    if not path.exists():
        raise SimulationError(
            f"--tokens-from-db needs the school codes: registry {path} does not exist "
            "(give --registry CSV)"
        )
    schools = sorted(load_registry(path), key=lambda s: s.code)[: options.schools]
    return tokens_from_db(
        args.tokens_from_db, schools, workers=options.workers
    ), schools


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: simulate, print one line per phase and a final summary."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        options = _options(args)
        fetch_started = time.perf_counter()
        tokens, schools = _cli_tokens(args, options)
    except SimulationError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    fetched = time.perf_counter() - fetch_started
    print(f"tokens: {len(tokens)} for {len(schools)} schools in {fetched:.2f} s")
    summary = run(
        args.url,
        tokens,
        options,
        schools=schools,
        on_phase=lambda p: print(p.line(), flush=True),
    )
    print(summary.line())
    for name, devices in sorted(summary.scenario_devices.items()):
        print(f"scenario {name}: {', '.join(devices) or 'no suitable device'}")
    return 0 if summary.reports_accepted else 1


if __name__ == "__main__":
    sys.exit(main())
