"""Inventory sections read from Linux: sysfs, /proc, /etc/os-release, dpkg/rpm."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schoolmon.agent.inventory import _common
from schoolmon.agent.inventory.normalize import (
    adapter_kind,
    clean_hw,
    clean_text,
    clean_uuid,
    vendor_supported,
)

ROOT = Path("/")
_VIRTUAL_VENDORS = re.compile(
    r"qemu|kvm|vmware|virtualbox|innotek|xen|bochs|parallels|virtual machine",
    re.IGNORECASE,
)
_COMMAND_TIMEOUT = 30.0


def section_functions(root: Path = ROOT) -> dict[str, Callable[[list[str]], dict]]:
    """The section readers of this platform, bound to a file system root."""
    return {
        "system": lambda w: system(w, root),
        "cpu": lambda w: _common.cpu(cpu_model(root), w),
        "memory": lambda w: memory(w, root),
        "disks": lambda w: disks(w, root),
        "network": lambda w: network(w, root),
        "os": lambda w: os_section(w, root),
        "software": lambda w: software(w),
        "battery": lambda w: battery(w, root),
        "monitors": lambda w: monitors(w, root),
    }


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


# system -------------------------------------------------------------------------

_DMI_FIELDS = {
    "manufacturer": "sys_vendor",
    "model": "product_name",
    "serial": "product_serial",
    "uuid": "product_uuid",
    "board_vendor": "board_vendor",
    "board_name": "board_name",
    "board_serial": "board_serial",
    "bios_version": "bios_version",
    "bios_date": "bios_date",
}


def system(warnings: list[str], root: Path = ROOT) -> dict[str, Any]:
    """The ``system`` section: DMI identity, host name, machine id, boot time."""
    dmi = read_dmi(root / "sys/class/dmi/id", warnings)
    board = " ".join(v for v in (dmi["board_vendor"], dmi["board_name"]) if v)
    return {
        "hostname": _common.hostname(),
        "manufacturer": dmi["manufacturer"],
        "model": dmi["model"],
        "serial": dmi["serial"],
        "uuid": clean_uuid(dmi["uuid"]),
        "board": board or None,
        "board_serial": dmi["board_serial"],
        "bios_version": dmi["bios_version"],
        "bios_date": parse_bios_date(dmi["bios_date"]),
        "virtual": is_virtual(dmi["manufacturer"], dmi["model"], root),
        "machine_id": clean_hw(_read(root / "etc/machine-id")),
        "boot_time": _common.boot_time(),
    }


def read_dmi(dmi_dir: Path, warnings: list[str]) -> dict[str, str | None]:
    """Read DMI values from sysfs; missing or unreadable ones are None, warned."""
    if not dmi_dir.is_dir():
        warnings.append(
            f"system: {dmi_dir} is not present (no DMI on this machine); "
            "manufacturer, model, serial, uuid, board and bios are unknown"
        )
        return dict.fromkeys(_DMI_FIELDS)

    values = {key: clean_hw(_read(dmi_dir / name)) for key, name in _DMI_FIELDS.items()}
    hidden = [
        key
        for key, name in _DMI_FIELDS.items()
        if (dmi_dir / name).exists() and not os.access(dmi_dir / name, os.R_OK)
    ]
    if hidden:
        warnings.append(f"system: {', '.join(hidden)} readable by root only")
    return values


def parse_bios_date(text: str | None) -> str | None:
    """DMI writes the BIOS date as MM/DD/YYYY; return it as YYYY-MM-DD."""
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text or "")
    if not match:
        return None
    month, day, year = (int(g) for g in match.groups())
    return f"{year:04d}-{month:02d}-{day:02d}"


def is_virtual(manufacturer: str | None, model: str | None, root: Path = ROOT) -> bool:
    """Tell whether this is a virtual machine (DMI vendor, else the CPU flag)."""
    if _VIRTUAL_VENDORS.search(f"{manufacturer or ''} {model or ''}"):
        return True
    cpuinfo = _read(root / "proc/cpuinfo") or ""
    return re.search(r"^flags\s*:.*\bhypervisor\b", cpuinfo, re.MULTILINE) is not None


def cpu_model(root: Path = ROOT) -> str | None:
    """The processor name from /proc/cpuinfo."""
    cpuinfo = _read(root / "proc/cpuinfo") or ""
    match = re.search(r"^(model name|Hardware|Processor)\s*:\s*(.+)$", cpuinfo, re.M)
    return clean_hw(match.group(2)) if match else None


# memory -------------------------------------------------------------------------


def memory(warnings: list[str], root: Path = ROOT) -> dict[str, Any]:
    """The ``memory`` section: usable bytes always, modules where dmidecode runs."""
    modules = memory_modules(warnings)
    installed = sum(m["size_bytes"] for m in modules) if modules else None
    return {
        "installed_bytes": installed,
        "usable_bytes": _common.usable_memory_bytes(),
        "modules": modules,
    }


def memory_modules(warnings: list[str]) -> list[dict] | None:
    """Memory modules from ``dmidecode -t 17``; None with a warning when unreadable."""
    tool = shutil.which("dmidecode")
    if tool is None:
        warnings.append("memory.modules: dmidecode is not installed")
        return None
    if os.geteuid() != 0:
        warnings.append("memory.modules: dmidecode needs root")
        return None

    result = subprocess.run(
        [tool, "-t", "17"],
        capture_output=True,
        text=True,
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        warnings.append(f"memory.modules: dmidecode failed: {result.stderr.strip()}")
        return None
    return parse_dmidecode_memory(result.stdout)


def parse_dmidecode_memory(text: str) -> list[dict]:
    """Installed modules from ``dmidecode -t 17`` output (empty slots left out)."""
    modules = []
    for block in re.split(r"\n(?=Handle )", text):
        if "Memory Device" not in block:
            continue
        fields = dict(re.findall(r"^\t([^:\n]+):\s*(.*)$", block, re.MULTILINE))
        size = _dmi_size(fields.get("Size", ""))
        if size is None:
            continue
        modules.append(
            {
                "slot": clean_hw(fields.get("Locator")),
                "size_bytes": size,
                "manufacturer": clean_hw(fields.get("Manufacturer")),
                "part_number": clean_hw(fields.get("Part Number")),
                "serial": clean_hw(fields.get("Serial Number")),
                "speed_mhz": _dmi_speed(fields.get("Speed", "")),
            }
        )
    return modules


def _dmi_size(text: str) -> int | None:
    match = re.fullmatch(r"(\d+)\s*(kB|KB|MB|GB|TB)", text.strip())
    if not match:
        return None
    factor = {"kB": 2**10, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}
    return int(match.group(1)) * factor[match.group(2)]


def _dmi_speed(text: str) -> int | None:
    match = re.match(r"(\d+)\s*(MT/s|MHz)", text.strip())
    return int(match.group(1)) if match else None


# disks --------------------------------------------------------------------------


def disks(warnings: list[str], root: Path = ROOT) -> dict[str, Any]:
    """The ``disks`` section: physical disks from sysfs, fixed volumes from psutil."""
    physical = physical_disks(root / "sys/block", warnings)
    removable = {f"/dev/{d['name']}" for d in physical if d["removable"]}
    for disk in physical:
        del disk["name"]
    volumes = _common.fixed_volumes("/", _with_partitions(removable, root))
    return {"physical": physical, "volumes": volumes}


def physical_disks(block_dir: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """Physical disks under /sys/block (loop, zram, dm and other virtual ones skipped).

    Sizes come from the sector count in ``size`` (always 512-byte units).
    """
    found = []
    names = sorted(p.name for p in block_dir.iterdir()) if block_dir.is_dir() else []
    for name in names:
        real = str((block_dir / name).resolve())
        if "/devices/virtual/" in real:
            continue
        found.append(_physical_disk(block_dir / name, real, len(found), warnings))
    return found


def _physical_disk(
    disk: Path, real: str, index: int, warnings: list[str]
) -> dict[str, Any]:
    model = clean_hw(_read(disk / "device/model"))
    serial = clean_hw(
        _read(disk / "device/serial") or _read(disk / "serial") or _vpd_serial(disk)
    )
    if model is None:
        warnings.append(f"disks.physical[{disk.name}].model: not reported by the disk")
    sectors = _read(disk / "size")
    rotational = _read(disk / "queue/rotational")
    return {
        "name": disk.name,
        "index": index,
        "model": model,
        "serial": serial,
        "size_bytes": int(sectors) * 512 if sectors and sectors.isdigit() else None,
        "media": {"1": "hdd", "0": "ssd"}.get(rotational or ""),
        "removable": _read(disk / "removable") == "1" or "/usb" in real,
        "interface": disk_interface(real),
    }


def _vpd_serial(disk: Path) -> str | None:
    """The unit serial number from SCSI VPD page 0x80 (SATA disks via libata)."""
    try:
        page = (disk / "device/vpd_pg80").read_bytes()
    except OSError:
        return None
    return (
        page[4 : 4 + page[3]].decode("ascii", errors="replace")
        if len(page) > 4
        else None
    )


def disk_interface(real_path: str) -> str | None:
    """The bus a block device hangs on, from its resolved sysfs path."""
    for marker, interface in (
        ("/usb", "usb"),
        ("/nvme", "nvme"),
        ("/ata", "sata"),
        ("/virtio", "virtio"),
        ("/mmc", "mmc"),
        ("/host", "scsi"),
    ):
        if marker in real_path:
            return interface
    return None


def _with_partitions(devices: set[str], root: Path) -> set[str]:
    expanded = set(devices)
    for device in devices:
        block = root / "sys/block" / device.removeprefix("/dev/")
        expanded.update(f"/dev/{p.name}" for p in block.glob(f"{block.name}*"))
    return expanded


# network ------------------------------------------------------------------------


def network(warnings: list[str], root: Path = ROOT) -> dict[str, Any]:
    """The ``network`` section: psutil interfaces with kind and bus from sysfs."""
    adapters = []
    for interface in _common.interfaces():
        facts = adapter_facts(root / "sys/class/net" / interface["name"])
        kind = adapter_kind(interface["name"], **facts)
        adapters.append({**interface, "kind": kind, "bus": facts["bus"]})
    return {"adapters": adapters}


def adapter_facts(net_dir: Path) -> dict[str, Any]:
    """What sysfs says about one interface, as keyword arguments of adapter_kind."""
    device = net_dir / "device"
    if_type = _read(net_dir / "type")
    return {
        "bus": device_bus(device) if device.exists() else None,
        "wireless": (net_dir / "wireless").exists() or (net_dir / "phy80211").exists(),
        "if_type": int(if_type) if if_type and if_type.isdigit() else None,
        "tun": (net_dir / "tun_flags").exists(),
        "bridge": (net_dir / "bridge").exists(),
        "bond": (net_dir / "bonding").exists(),
    }


def device_bus(device: Path) -> str | None:
    """The bus of a sysfs device (``pci``, ``usb``, ``virtio``...) from its links."""
    subsystem = device / "subsystem"
    if subsystem.exists():
        bus = subsystem.resolve().name
        return "usb" if bus == "usb" or "/usb" in str(device.resolve()) else bus
    return None


# os -----------------------------------------------------------------------------


def os_section(warnings: list[str], root: Path = ROOT) -> dict[str, Any]:
    """The ``os`` section from /etc/os-release and the running kernel."""
    release = parse_os_release(_read(root / "etc/os-release") or "")
    if not release:
        warnings.append("os: /etc/os-release is missing; name and version unknown")
    name = release.get("NAME")
    version = release.get("VERSION_ID")
    today = datetime.now(UTC).date()
    return {
        "family": "linux",
        "name": name,
        "version": version,
        "build": clean_text(platform.release()),
        "architecture": clean_text(platform.machine()),
        "install_date": None,
        "vendor_supported": vendor_supported("linux", name, version, today),
        "languages": _languages(),
    }


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release ``KEY=value`` lines (quotes removed)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("\"'")
    return values


def _languages() -> list[str]:
    lang = os.environ.get("LANG") or os.environ.get("LC_ALL") or ""
    code = lang.split(".", 1)[0].replace("_", "-")
    return [code] if code and code not in ("C", "POSIX") else []


# software -----------------------------------------------------------------------


def software(warnings: list[str]) -> dict[str, Any]:
    """The ``software`` section from dpkg or rpm, whichever this system has."""
    if shutil.which("dpkg-query"):
        text = _run(["dpkg-query", "-W", "-f", DPKG_FORMAT])
        return {"source": "dpkg", "programs": parse_dpkg(text)}
    if shutil.which("rpm"):
        text = _run(["rpm", "-qa", "--queryformat", RPM_FORMAT])
        return {"source": "rpm", "programs": parse_rpm(text)}
    warnings.append("software: neither dpkg-query nor rpm is available")
    return {"source": None, "programs": None}


DPKG_FORMAT = "${db:Status-Abbrev}\t${Package}\t${Version}\t${Maintainer}\n"
RPM_FORMAT = "%{NAME}\t%{VERSION}-%{RELEASE}\t%{VENDOR}\t%{INSTALLTIME}\n"


def _run(command: list[str]) -> str:
    result = subprocess.run(
        command,
        capture_output=True,
        timeout=_COMMAND_TIMEOUT,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return result.stdout.decode("utf-8", errors="replace")


def parse_dpkg(text: str) -> list[dict[str, Any]]:
    """Installed packages from dpkg-query output in ``DPKG_FORMAT``."""
    programs = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or not parts[0].startswith("ii"):
            continue
        programs.append(
            {
                "name": parts[1],
                "version": clean_text(parts[2]),
                "publisher": clean_text(parts[3]),
                "install_date": None,
            }
        )
    return sorted(programs, key=lambda p: p["name"])


def parse_rpm(text: str) -> list[dict[str, Any]]:
    """Installed packages from rpm output in ``RPM_FORMAT``."""
    programs = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or not parts[0]:
            continue
        installed = int(parts[3]) if parts[3].isdigit() else None
        programs.append(
            {
                "name": parts[0],
                "version": clean_text(parts[1]),
                "publisher": clean_hw(parts[2]),
                "install_date": _common.iso_utc(installed)[:10] if installed else None,
            }
        )
    return sorted(programs, key=lambda p: p["name"])


# battery ------------------------------------------------------------------------


def battery(warnings: list[str], root: Path = ROOT) -> dict[str, Any]:
    """The ``battery`` section: psutil plus capacities from power_supply."""
    data = {
        **_common.battery(),
        "cycle_count": None,
        "design_capacity_wh": None,
        "full_capacity_wh": None,
    }
    supply = next(iter(sorted((root / "sys/class/power_supply").glob("BAT*"))), None)
    if supply is None or not data["present"]:
        return data
    cycles = _read(supply / "cycle_count")
    data["cycle_count"] = int(cycles) if cycles and cycles.isdigit() else None
    data["design_capacity_wh"] = _microwatt_hours(_read(supply / "energy_full_design"))
    data["full_capacity_wh"] = _microwatt_hours(_read(supply / "energy_full"))
    return data


def _microwatt_hours(text: str | None) -> float | None:
    return int(text) / 1_000_000 if text and text.isdigit() else None


# monitors -----------------------------------------------------------------------


def monitors(warnings: list[str], root: Path = ROOT) -> dict[str, Any]:
    """The ``monitors`` section from EDID blobs under /sys/class/drm."""
    drm = root / "sys/class/drm"
    if not drm.is_dir():
        warnings.append(f"monitors: {drm} is not present (no display driver)")
        return {"monitors": []}
    found = []
    for edid_path in sorted(drm.glob("*/edid")):
        blob = edid_path.read_bytes()
        if blob:
            found.append(parse_edid(blob))
    return {"monitors": found}


def parse_edid(blob: bytes) -> dict[str, Any]:
    """Manufacturer PNP id, model name, serial and year from an EDID block."""
    if len(blob) < 128 or blob[:8] != bytes.fromhex("00ffffffffffff00"):
        raise ValueError(f"not an EDID block ({len(blob)} bytes, bad header)")

    word = int.from_bytes(blob[8:10], "big")
    pnp = "".join(chr(((word >> s) & 0x1F) + 64) for s in (10, 5, 0))
    texts = _edid_descriptors(blob)
    number = int.from_bytes(blob[12:16], "little")
    serial = texts.get(0xFF) or (str(number) if number else None)
    return {
        "manufacturer": clean_hw(pnp),
        "model": clean_hw(texts.get(0xFC)),
        "serial": clean_hw(serial),
        "year": blob[17] + 1990 if blob[17] else None,
    }


def _edid_descriptors(blob: bytes) -> dict[int, str]:
    texts = {}
    for offset in (54, 72, 90, 108):
        block = blob[offset : offset + 18]
        if block[:3] == b"\x00\x00\x00" and block[3] in (0xFC, 0xFF, 0xFE):
            text = block[5:18].split(b"\x0a", 1)[0].decode("cp437").strip()
            texts.setdefault(block[3], text)
    return texts
