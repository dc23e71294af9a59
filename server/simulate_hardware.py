"""The simulated PC: hardware catalog, inventory sections and what its agent measures.

Everything here is a pure function of a seed: ``generate_pc()`` draws a PC of a given
age class (CPU, memory modules, disks, adapters, operating system, software, monitor)
the way real school PCs report them, ``huge_software()`` a 3,000-program list, and
``cycle_probes()``, ``speed_test()`` and ``health()`` the samples its agent sends.
The district, the scenarios and the delivery live in ``schoolmon.server.simulate``.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from schoolmon.agent.inventory import normalize

GIB = 1024**3
HUGE_SOFTWARE_PROGRAMS = 3000


def wire_time(instant: datetime) -> str:
    """Format an aware datetime as the wire's ISO 8601 UTC with ``Z``."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Site(Protocol):
    """What generation needs to know of the school a PC stands in."""

    @property
    def code(self) -> str: ...

    @property
    def level(self) -> str: ...

    @property
    def number(self) -> int: ...

    @property
    def subnet(self) -> str: ...


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


# Hardware catalog --------------------------------------------------------------


# manufacturer and model (None on white-box PCs), board, BIOS version
SystemRow = tuple[str | None, str | None, str, str]


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
    systems: tuple[SystemRow, ...]
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


def generate_pc(seed: int, school: Site, role: str, index: int, now: datetime) -> SimPC:
    """One PC of ``school``: hardware from the seed, agent state around ``now``."""
    key = f"{school.code}-{role}-{index:02d}"
    rng = random.Random(f"{seed}/{key}/hardware")
    tier = _pick_tier(rng, role, school.level)
    system_row = rng.choice(tier.systems)
    os_key = _pick_os(rng, tier)

    year = rng.randint(*tier.years)
    place = (school, role, index)
    sections = _sections(rng, tier, system_row, os_key, year, place, now)
    pc = _agent_state(rng, key, school.code, role, sections, now)
    if os_key == "win7" and rng.random() < 0.3:
        pc.section_errors["monitors"] = "WmiMonitorID: Invalid class (root/wmi)"
    return pc


def _sections(
    rng: random.Random,
    tier: Tier,
    system_row: SystemRow,
    os_key: str,
    year: int,
    place: tuple[Site, str, int],
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """Section data in the order the draws were always made (the seed's contract)."""
    school, role, index = place
    key = f"{school.code}-{role}-{index:02d}"
    return {
        "system": _system(rng, system_row, key, role, index, year, now),
        "cpu": _cpu(rng, tier, os_key),
        "memory": memory_section(rng, tier, _pick_modules(rng, tier), os_key),
        "disks": _disks(rng, tier, os_key, key),
        "network": _network(rng, system_row, os_key, school, role, index),
        "os": _os(rng, os_key, year, now),
        "software": _software(rng, os_key, role),
        "battery": _battery(),
        "monitors": _monitors(rng, year),
    }


def _pick_tier(rng: random.Random, role: str, level: str) -> Tier:
    weights = TIER_WEIGHTS["teacher" if level == "preschool" else role]
    return rng.choices(TIERS, weights=weights)[0]


def _pick_os(rng: random.Random, tier: Tier) -> str:
    keys = [os_key for os_key, _ in tier.oses]
    return rng.choices(keys, weights=[weight for _, weight in tier.oses])[0]


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
        boot_id=new_uuid(rng),
        run=f"{rng.getrandbits(32):08x}",
        skew_seconds=0.0,
        on=rng.random() < 0.9,
        state_restored=rng.random() < 0.05,
    )


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng`` (so the seed fixes it)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _serial(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
_HEXU = "0123456789ABCDEF"


def _system(
    rng: random.Random,
    row: SystemRow,
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
    return new_uuid(rng).upper()


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


def memory_section(
    rng: random.Random, tier: Tier, sizes_gib: Sequence[int], os_key: str
) -> dict[str, Any]:
    """The ``memory`` section of modules of ``sizes_gib`` GiB from ``tier``."""
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


def _unique_number(school: Site, role: str, index: int) -> int:
    return (school.number << 10) | (_ROLE_NUMBER[role] << 8) | index


def _oui_family(row: SystemRow) -> str:
    manufacturer, _, board, _ = row
    if manufacturer in OUIS:
        return manufacturer
    for family in ("Gigabyte", "MSI", "ASUSTeK COMPUTER INC."):
        if family.split()[0] in board:
            return family
    return "other"


def _network(
    rng: random.Random,
    row: SystemRow,
    os_key: str,
    school: Site,
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


# What the PC sends -------------------------------------------------------------


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


def enroll_body(pc: SimPC, token: str, agent_version: str) -> dict[str, Any]:
    """The ``POST /api/v1/enroll`` document of ``pc``."""
    return {
        "token": token,
        "hostname": pc.hostname,
        "identity": compute_identity(pc.sections),
        "agent_version": agent_version,
    }
