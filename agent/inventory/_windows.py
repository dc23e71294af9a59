"""Inventory sections read on Windows through PowerShell CIM queries.

Each CIM class is one PowerShell invocation printing ``ConvertTo-Json`` text; the
parsers below take that exact text, so they are tested on captured outputs with all
their quirks (one object instead of an array, ``/Date(ms)/`` dates, padded serials,
speed sentinels, monitor names as character codes, uninstall keys).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from schoolmon.agent.inventory import _common
from schoolmon.agent.inventory.normalize import (
    adapter_kind,
    clean_hw,
    clean_text,
    clean_uuid,
    normalize_mac,
    pnp_bus,
    vendor_supported,
)

Fetch = Callable[[str], list[dict[str, Any]]]

_UNINSTALL_KEYS = ", ".join(
    f"'{hive}\\Software\\{node}Microsoft\\Windows\\CurrentVersion\\Uninstall\\*'"
    for hive, node in (
        ("HKLM:", ""),
        ("HKLM:", "WOW6432Node\\"),
        ("HKCU:", ""),
    )
)
QUERIES = {
    "Win32_ComputerSystem": "Name,Manufacturer,Model,TotalPhysicalMemory,"
    "NumberOfProcessors,NumberOfLogicalProcessors,PCSystemType,Workgroup",
    "Win32_BIOS": "SerialNumber,SMBIOSBIOSVersion,Manufacturer,ReleaseDate,"
    "SMBIOSPresent",
    "Win32_ComputerSystemProduct": "UUID,IdentifyingNumber,Vendor,Name",
    "Win32_BaseBoard": "Manufacturer,Product,SerialNumber",
    "Win32_Processor": "Name,NumberOfCores,NumberOfLogicalProcessors,MaxClockSpeed",
    "Win32_PhysicalMemory": "Capacity,DeviceLocator,Manufacturer,PartNumber,"
    "SerialNumber,Speed",
    "Win32_DiskDrive": "Index,Model,SerialNumber,Size,MediaType,InterfaceType",
    "Win32_LogicalDisk": "DeviceID,DriveType,FileSystem,Size,FreeSpace,VolumeName",
    "Win32_OperatingSystem": "Caption,Version,BuildNumber,OSArchitecture,"
    "InstallDate,LastBootUpTime,MUILanguages,TotalVisibleMemorySize",
    "Win32_NetworkAdapter": "Name,MACAddress,PhysicalAdapter,NetConnectionStatus,"
    "Speed,PNPDeviceID",
}
_SCRIPTS = {
    **{
        name: f"Get-CimInstance {name} | Select-Object {props} | ConvertTo-Json"
        for name, props in QUERIES.items()
    },
    "WmiMonitorID": "Get-CimInstance -Namespace root/wmi WmiMonitorID | "
    "Select-Object ManufacturerName,UserFriendlyName,SerialNumberID,"
    "YearOfManufacture | ConvertTo-Json",
    "Uninstall": f"Get-ItemProperty {_UNINSTALL_KEYS} -ErrorAction SilentlyContinue "
    "| Select-Object DisplayName,DisplayVersion,Publisher,InstallDate,"
    "SystemComponent,ParentKeyName,ReleaseType | ConvertTo-Json",
    "MachineGuid": "Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Cryptography' "
    "| Select-Object MachineGuid | ConvertTo-Json",
}
_UTF8_FIRST = "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8\n"
SPEED_UNKNOWN = 9223372036854775807
_VIRTUAL_MODELS = re.compile(
    r"virtual|vmware|virtualbox|qemu|kvm|xen|hvm domu|parallels", re.IGNORECASE
)


# Running PowerShell -------------------------------------------------------------


class PowerShellError(RuntimeError):
    """A PowerShell query failed or timed out."""


def run_query(name: str, timeout: float = 60.0) -> str:
    """Run one query in a windowless PowerShell and return its UTF-8 text."""
    script = _UTF8_FIRST + _SCRIPTS[name]
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    command = [_powershell(), "-NoProfile", "-NonInteractive", "-NoLogo"]
    command += ["-ExecutionPolicy", "Bypass", "-EncodedCommand", encoded]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PowerShellError(f"{name}: PowerShell took over {timeout} s") from exc
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", errors="replace").strip()
        raise PowerShellError(f"{name}: PowerShell exit {result.returncode}: {stderr}")
    return result.stdout.decode("utf-8-sig", errors="replace")


def _powershell() -> str:
    root = os.environ.get("SYSTEMROOT", r"C:\Windows")
    builtin = os.path.join(
        root, "System32", "WindowsPowerShell", "v1.0", "powershell.exe"
    )
    return builtin if os.path.exists(builtin) else shutil.which("pwsh") or "powershell"


def live_fetch(timeout: float = 60.0) -> Fetch:
    """A fetch function that runs each query once and remembers its parsed answer."""
    cache: dict[str, list[dict[str, Any]]] = {}

    def fetch(name: str) -> list[dict[str, Any]]:
        if name not in cache:
            cache[name] = parse_cim(run_query(name, timeout))
        return cache[name]

    return fetch


def section_functions(timeout: float = 60.0) -> dict[str, Callable[[list[str]], dict]]:
    """The section readers of this platform, sharing one query cache."""
    fetch = live_fetch(timeout)
    return {
        "system": lambda w: system(fetch, w),
        "cpu": lambda w: cpu(fetch, w, platform.machine()),
        "memory": lambda w: memory(fetch, w),
        "disks": lambda w: disks(fetch, w, os.environ.get("SYSTEMDRIVE", "C:")),
        "network": lambda w: network(fetch, w, _addresses_by_mac()),
        "os": lambda w: os_section(fetch, w, datetime.now(UTC)),
        "software": lambda w: software(fetch, w),
        "battery": lambda w: _battery(),
        "monitors": lambda w: monitors(fetch, w),
    }


def _addresses_by_mac() -> dict[str, list[str]]:
    return {i["mac"]: i["addresses"] for i in _common.interfaces() if i["mac"]}


def _battery() -> dict[str, Any]:
    extra = {"cycle_count": None, "design_capacity_wh": None, "full_capacity_wh": None}
    return {**_common.battery(), **extra}


# Parsing ------------------------------------------------------------------------


def parse_cim(text: str) -> list[dict[str, Any]]:
    """Parse ConvertTo-Json text: one object, an array, or nothing (no instance)."""
    text = text.strip().lstrip("\ufeff")
    if not text:
        return []
    parsed = json.loads(text)
    items = parsed if isinstance(parsed, list) else [parsed]
    return [item for item in items if isinstance(item, dict)]


def cim_date(value: object) -> str | None:
    """A CIM date as wire time: ``/Date(ms)/`` (PowerShell 5.1), ISO 8601 (7), DMTF."""
    text = clean_text(value)
    if text is None:
        return None
    match = re.fullmatch(r"/Date\((-?\d+)\)/", text)
    if match:
        return _common.iso_utc(int(match.group(1)) / 1000)
    match = re.fullmatch(r"(\d{14})\.\d{6}([+-]\d{3})", text)
    if match:
        local = datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        return _common.iso_utc(local.timestamp() - int(match.group(2)) * 60)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return _common.iso_utc(aware.timestamp())


def _first(fetch: Fetch, name: str, warnings: list[str]) -> dict[str, Any]:
    items = fetch(name)
    if not items:
        warnings.append(f"{name}: no instance reported")
        return {}
    return items[0]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# Sections -----------------------------------------------------------------------


def system(fetch: Fetch, warnings: list[str]) -> dict[str, Any]:
    """The ``system`` section from ComputerSystem, BIOS, product and base board."""
    cs = _first(fetch, "Win32_ComputerSystem", warnings)
    bios = _first(fetch, "Win32_BIOS", warnings)
    product = _first(fetch, "Win32_ComputerSystemProduct", warnings)
    board = _first(fetch, "Win32_BaseBoard", warnings)
    os_info = _first(fetch, "Win32_OperatingSystem", warnings)
    guid = _first(fetch, "MachineGuid", warnings)

    manufacturer = clean_hw(product.get("Vendor")) or clean_hw(cs.get("Manufacturer"))
    model = clean_hw(product.get("Name")) or clean_hw(cs.get("Model"))
    board_name = [clean_hw(board.get("Manufacturer")), clean_hw(board.get("Product"))]
    bios_date = cim_date(bios.get("ReleaseDate"))
    return {
        "hostname": clean_text(cs.get("Name")),
        "manufacturer": manufacturer,
        "model": model,
        "serial": clean_hw(bios.get("SerialNumber"))
        or clean_hw(product.get("IdentifyingNumber")),
        "uuid": clean_uuid(product.get("UUID")),
        "board": " ".join(n for n in board_name if n) or None,
        "board_serial": clean_hw(board.get("SerialNumber")),
        "bios_version": clean_hw(bios.get("SMBIOSBIOSVersion")),
        "bios_date": bios_date[:10] if bios_date else None,
        "virtual": bool(_VIRTUAL_MODELS.search(f"{manufacturer} {model}")),
        "machine_id": clean_hw(guid.get("MachineGuid")),
        "boot_time": cim_date(os_info.get("LastBootUpTime")),
    }


def cpu(fetch: Fetch, warnings: list[str], architecture: str | None) -> dict[str, Any]:
    """The ``cpu`` section from Win32_Processor (summed over sockets)."""
    processors = fetch("Win32_Processor")
    if not processors:
        warnings.append("Win32_Processor: no instance reported")
    cores = [_int(p.get("NumberOfCores")) for p in processors]
    logical = [_int(p.get("NumberOfLogicalProcessors")) for p in processors]
    first = processors[0] if processors else {}
    return {
        "model": clean_hw(first.get("Name")),
        "physical_cores": sum(cores) if cores and None not in cores else None,
        "logical_cores": sum(logical) if logical and None not in logical else None,
        "max_frequency_mhz": _int(first.get("MaxClockSpeed")),
        "architecture": clean_text(architecture),
    }


def memory(fetch: Fetch, warnings: list[str]) -> dict[str, Any]:
    """The ``memory`` section: installed (modules) and usable (OS) kept apart."""
    modules = [_memory_module(m) for m in fetch("Win32_PhysicalMemory")]
    cs = _first(fetch, "Win32_ComputerSystem", warnings)
    sizes = [m["size_bytes"] for m in modules]
    if not modules:
        warnings.append("memory.modules: Win32_PhysicalMemory reported no module")
    return {
        "installed_bytes": sum(sizes) if sizes and None not in sizes else None,
        "usable_bytes": _int(cs.get("TotalPhysicalMemory")),
        "modules": modules or None,
    }


def _memory_module(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "slot": clean_hw(item.get("DeviceLocator")),
        "size_bytes": _int(item.get("Capacity")),
        "manufacturer": clean_hw(item.get("Manufacturer")),
        "part_number": clean_hw(item.get("PartNumber")),
        "serial": clean_hw(item.get("SerialNumber")),
        "speed_mhz": _int(item.get("Speed")) or None,
    }


def disks(fetch: Fetch, warnings: list[str], system_drive: str) -> dict[str, Any]:
    """The ``disks`` section: physical drives and fixed logical disks (type 3)."""
    drives = sorted(fetch("Win32_DiskDrive"), key=lambda d: _int(d.get("Index")) or 0)
    volumes = [v for v in fetch("Win32_LogicalDisk") if v.get("DriveType") == 3]
    return {
        "physical": [_physical_disk(d) for d in drives],
        "volumes": [_volume(v, system_drive) for v in volumes],
    }


def _physical_disk(item: Mapping[str, Any]) -> dict[str, Any]:
    media = clean_text(item.get("MediaType")) or ""
    interface = clean_text(item.get("InterfaceType"))
    removable = "removable" in media.lower() or "external" in media.lower()
    return {
        "index": _int(item.get("Index")),
        "model": clean_hw(item.get("Model")),
        "serial": clean_hw(item.get("SerialNumber")),
        "size_bytes": _int(item.get("Size")),
        "media": None,
        "removable": removable or interface == "USB",
        "interface": interface.lower() if interface else None,
    }


def _volume(item: Mapping[str, Any], system_drive: str) -> dict[str, Any]:
    device = clean_text(item.get("DeviceID"))
    return {
        "device": device,
        "mount": f"{device}\\" if device else None,
        "filesystem": clean_text(item.get("FileSystem")),
        "size_bytes": _int(item.get("Size")),
        "free_bytes": _int(item.get("FreeSpace")),
        "system": bool(device) and device.upper() == system_drive.upper(),
    }


def network(
    fetch: Fetch, warnings: list[str], addresses: Mapping[str, list[str]]
) -> dict[str, Any]:
    """The ``network`` section from Win32_NetworkAdapter (adapters with a MAC)."""
    adapters = []
    for item in fetch("Win32_NetworkAdapter"):
        mac = normalize_mac(item.get("MACAddress"))
        if mac is not None:
            adapters.append(_adapter(item, mac, addresses.get(mac, [])))
    return {"adapters": adapters}


def _adapter(item: Mapping[str, Any], mac: str, addresses: list[str]) -> dict:
    name = clean_text(item.get("Name")) or ""
    bus = pnp_bus(item.get("PNPDeviceID"))
    speed = _int(item.get("Speed"))
    return {
        "name": name,
        "mac": mac,
        "kind": adapter_kind(name, bus=bus),
        "addresses": list(addresses),
        "speed_bps": None if speed in (None, 0, SPEED_UNKNOWN) else speed,
        "up": item.get("NetConnectionStatus") == 2,
        "bus": bus,
    }


def os_section(fetch: Fetch, warnings: list[str], now: datetime) -> dict[str, Any]:
    """The ``os`` section from Win32_OperatingSystem."""
    item = _first(fetch, "Win32_OperatingSystem", warnings)
    name = clean_text(item.get("Caption"))
    version = clean_text(item.get("Version"))
    languages = item.get("MUILanguages") or []
    return {
        "family": "windows",
        "name": name,
        "version": version,
        "build": clean_text(item.get("BuildNumber")),
        "architecture": clean_text(item.get("OSArchitecture")),
        "install_date": cim_date(item.get("InstallDate")),
        "vendor_supported": vendor_supported("windows", name, version, now.date()),
        "languages": [clean_text(x) for x in languages if clean_text(x)],
    }


def software(fetch: Fetch, warnings: list[str]) -> dict[str, Any]:
    """The ``software`` section from the uninstall keys (64-bit, 32-bit, user)."""
    programs = []
    seen = set()
    for entry in fetch("Uninstall"):
        program = _program(entry)
        key = program and (program["name"].casefold(), program["version"])
        if program and key not in seen:
            seen.add(key)
            programs.append(program)
    return {"source": "windows-uninstall", "programs": programs}


def _program(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    name = clean_text(entry.get("DisplayName"))
    if name is None or entry.get("SystemComponent") == 1:
        return None
    if clean_text(entry.get("ParentKeyName")) or clean_text(entry.get("ReleaseType")):
        return None
    return {
        "name": name,
        "version": clean_text(entry.get("DisplayVersion")),
        "publisher": clean_text(entry.get("Publisher")),
        "install_date": _yyyymmdd(entry.get("InstallDate")),
    }


def _yyyymmdd(value: object) -> str | None:
    text = clean_text(value) or ""
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", text)
    if not match:
        return None
    year, month, day = match.groups()
    try:
        return datetime(int(year), int(month), int(day)).date().isoformat()
    except ValueError:
        return None


def monitors(fetch: Fetch, warnings: list[str]) -> dict[str, Any]:
    """The ``monitors`` section from WmiMonitorID's character-code arrays."""
    return {"monitors": [_monitor(m) for m in fetch("WmiMonitorID")]}


def _monitor(item: Mapping[str, Any]) -> dict[str, Any]:
    year = _int(item.get("YearOfManufacture"))
    return {
        "manufacturer": clean_hw(char_codes(item.get("ManufacturerName"))),
        "model": clean_hw(char_codes(item.get("UserFriendlyName"))),
        "serial": clean_hw(char_codes(item.get("SerialNumberID"))),
        "year": year or None,
    }


def char_codes(value: object) -> str | None:
    """Decode WmiMonitorID's zero-padded arrays of character codes."""
    if not isinstance(value, list):
        return None
    return "".join(chr(c) for c in value if isinstance(c, int) and 0 < c < 0x110000)
