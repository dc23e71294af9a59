"""Inventory parts that psutil reads the same way on every platform.

Only the platform modules import this one (and so psutil), when an inventory is
collected: a cycle that collects none does not load psutil.
"""

from __future__ import annotations

import platform
import socket
from typing import Any

import psutil
from schoolmon.agent.inventory import iso_utc
from schoolmon.agent.inventory.normalize import clean_text, normalize_mac

# File systems that live on a fixed local disk; network, memory and pseudo file
# systems (nfs, tmpfs, overlay, squashfs of snaps...) are not volumes of the PC.
FIXED_FILESYSTEMS = frozenset(
    {
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "f2fs",
        "jfs",
        "reiserfs",
        "zfs",
        "ntfs",
        "ntfs3",
        "fuseblk",
        "vfat",
        "exfat",
        "refs",
        "fat32",
        "hfs",
        "apfs",
    }
)


def hostname() -> str | None:
    """This machine's host name."""
    return clean_text(socket.gethostname())


def boot_time() -> str | None:
    """When this machine booted, as a wire time."""
    return iso_utc(psutil.boot_time())


def cpu(model: str | None, warnings: list[str]) -> dict[str, Any]:
    """The ``cpu`` section from psutil, with the model name read by the platform."""
    frequency = _max_frequency(warnings)
    if model is None:
        warnings.append("cpu.model: the processor name could not be read")
    return {
        "model": model,
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "max_frequency_mhz": frequency,
        "architecture": clean_text(platform.machine()),
    }


def _max_frequency(warnings: list[str]) -> float | None:
    try:
        frequency = psutil.cpu_freq()
    except (OSError, NotImplementedError) as exc:
        warnings.append(f"cpu.max_frequency_mhz: {exc}")
        return None
    if frequency is None or not frequency.max:
        warnings.append("cpu.max_frequency_mhz: the system does not report it")
        return None
    return float(frequency.max)


def usable_memory_bytes() -> int:
    """Memory the operating system can use (below the installed capacity)."""
    return int(psutil.virtual_memory().total)


def fixed_volumes(system_mount: str, removable_devices: set[str]) -> list[dict]:
    """Mounted volumes on fixed disks, with sizes from byte counts.

    A device mounted twice (bind mounts) is listed once, at its shortest mount path.
    """
    volumes = []
    seen = set()
    parts = sorted(psutil.disk_partitions(all=False), key=lambda p: len(p.mountpoint))
    for part in parts:
        if part.device in seen or not _is_fixed(part, removable_devices):
            continue
        seen.add(part.device)
        usage = psutil.disk_usage(part.mountpoint)
        volumes.append(
            {
                "device": part.device,
                "mount": part.mountpoint,
                "filesystem": part.fstype,
                "size_bytes": int(usage.total),
                "free_bytes": int(usage.free),
                "system": part.mountpoint == system_mount,
            }
        )
    return volumes


def _is_fixed(part: Any, removable_devices: set[str]) -> bool:
    options = set(part.opts.split(","))
    if "cdrom" in options or "removable" in options:
        return False
    if part.device in removable_devices:
        return False
    return part.fstype.lower() in FIXED_FILESYSTEMS


def interfaces() -> list[dict[str, Any]]:
    """Network interfaces from psutil: name, MAC, addresses, speed, up."""
    addresses = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    found = []
    for name in sorted(set(addresses) | set(stats)):
        found.append(_interface(name, addresses.get(name, []), stats.get(name)))
    return found


def _interface(name: str, addrs: list[Any], stat: Any) -> dict[str, Any]:
    mac = None
    ips = []
    for addr in addrs:
        if addr.family == psutil.AF_LINK:
            mac = normalize_mac(addr.address)
        elif addr.family in (socket.AF_INET, socket.AF_INET6):
            ips.append(addr.address.split("%", 1)[0])
    speed = stat.speed if stat is not None and stat.speed > 0 else None
    return {
        "name": name,
        "mac": mac,
        "addresses": ips,
        "speed_bps": speed * 1_000_000 if speed else None,
        "up": bool(stat.isup) if stat is not None else None,
    }


def battery() -> dict[str, Any]:
    """The ``battery`` section's psutil part (``present`` false on desktops)."""
    try:
        reading = psutil.sensors_battery()
    except (OSError, NotImplementedError):
        reading = None
    if reading is None:
        return {"present": False, "percent": None, "plugged": None}
    return {
        "present": True,
        "percent": float(reading.percent),
        "plugged": reading.power_plugged,
    }
