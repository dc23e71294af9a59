"""Pure normalisation shared by the agent and the collector.

Everything here is a pure function of its arguments: placeholder values become
``None``, MAC addresses get one spelling, network adapters get a kind, identity
signals are derived from inventory sections, and section data gets a canonical hash.
The collector imports this module to apply the same rules to what older agents sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

ADAPTER_KINDS = ("ethernet", "wifi", "virtual", "bluetooth", "loopback", "vpn", "usb")

# Keys are the placeholder with everything but letters and digits removed, lower-case,
# so "To Be Filled By O.E.M.", "to be filled by oem" and "TO_BE_FILLED_BY_OEM" match.
_PLACEHOLDER_KEYS = frozenset(
    {
        "tobefilledbyoem",
        "tobefilledbyoemtobefilledbyoem",
        "filledbyoem",
        "oem",
        "systemserialnumber",
        "systemproductname",
        "systemmanufacturer",
        "systemversion",
        "systemname",
        "chassisserialnumber",
        "chassismanufacturer",
        "chassisversion",
        "baseboardserialnumber",
        "baseboardproductname",
        "baseboardmanufacturer",
        "baseboardversion",
        "defaultstring",
        "notspecified",
        "notapplicable",
        "notavailable",
        "none",
        "null",
        "na",
        "unknown",
        "invalid",
        "empty",
        "default",
        "serialnumber",
        "serial",
        "sn",
        "123456789",
        "0123456789",
        "1234567890",
        "type1productconfigid",
        "sku",
        "oemserial",
    }
)
_REPEATED_FILLER = re.compile(r"^(.)\1*$")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_HEX = re.compile(r"^[0-9A-F]{32}$")
_MAC_DIGITS = re.compile(r"^[0-9A-F]{12}$")


def clean_text(value: object) -> str | None:
    """Strip padding (spaces, NUL, control characters) from text; empty -> None.

    Non-text values are returned as ``None`` except numbers, which become text.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", " ").strip()
    text = re.sub(r"[\x00-\x1f\x7f]", "", text).strip()
    return text or None


def is_placeholder(value: object) -> bool:
    """Tell whether a hardware value is OEM filler text rather than a real value."""
    text = clean_text(value)
    if text is None:
        return True

    key = _NON_ALNUM.sub("", text.lower())
    if not key:
        return True
    return key in _PLACEHOLDER_KEYS or bool(_REPEATED_FILLER.match(key))


def clean_hw(value: object) -> str | None:
    """Normalise a hardware text value (serial, model, vendor): placeholder -> None."""
    return None if is_placeholder(value) else clean_text(value)


def clean_uuid(value: object) -> str | None:
    """Normalise an SMBIOS UUID to upper case with dashes; filler UUIDs -> None.

    Filler UUIDs are all one digit (zeros, F) or mostly zeros, such as the
    ``03000200-0400-0500-0006-000700080009`` that many consumer boards carry.
    """
    text = clean_text(value)
    if text is None:
        return None

    digits = re.sub(r"[^0-9A-Fa-f]", "", text).upper()
    if not _HEX.match(digits):
        return clean_hw(text)
    if _REPEATED_FILLER.match(digits) or digits.count("0") >= 24:
        return None
    return "-".join(
        (digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:])
    )


def normalize_mac(value: object) -> str | None:
    """Return a MAC as ``AA:BB:CC:DD:EE:FF``; None for invalid, zero or broadcast."""
    text = clean_text(value)
    if text is None:
        return None

    digits = re.sub(r"[:\-.\s]", "", text).upper()
    if not _MAC_DIGITS.match(digits) or digits in ("0" * 12, "F" * 12):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def is_locally_administered(mac: str) -> bool:
    """Tell whether a normalised MAC has the locally administered bit set."""
    return bool(int(mac[:2], 16) & 0x02)


# Adapter kinds ------------------------------------------------------------------

_PNP_BUSES = {
    "PCI": "pci",
    "USB": "usb",
    "BTH": "bluetooth",
    "BTHENUM": "bluetooth",
    "ROOT": "root",
    "SWD": "swd",
    "VMBUS": "vmbus",
    "ACPI": "platform",
    "SD": "sdio",
}
_VPN_WORDS = re.compile(
    r"\b(tap|tun|wintun|wireguard|openvpn|vpn|anyconnect|fortinet|forticlient|"
    r"pangp|globalprotect|zerotier|tailscale|hamachi|softether|ppp|wan miniport)\b"
    r"|^(tun|tap|wg|ppp|ipsec|vti|gre|zt|tailscale)\d*",
    re.IGNORECASE,
)
_VIRTUAL_WORDS = re.compile(
    r"virtualbox|vmware|hyper-v|vethernet|npcap|loopback adapter|kernel debug|"
    r"teredo|isatap|6to4|virtual|pseudo|docker|\bvirbr|\bveth|\bvnet|\bbr-|"
    r"^(br|virbr|docker|veth|vnet|ifb|dummy|bond|team|macvlan|macvtap|vmnet|vboxnet)",
    re.IGNORECASE,
)
_WIFI_WORDS = re.compile(r"wi-?fi|wireless|wlan|802\.11|^wl", re.IGNORECASE)
_LINUX_PHYSICAL_BUSES = ("pci", "platform", "virtio", "sdio", "mmc", "usb")


def pnp_bus(pnp_device_id: object) -> str | None:
    """Map a Windows PNPDeviceID prefix (``PCI\\``, ``USB\\``, ...) to a bus name."""
    text = clean_text(pnp_device_id)
    if text is None:
        return None
    prefix = text.split("\\", 1)[0].upper()
    return _PNP_BUSES.get(prefix, prefix.lower())


def adapter_kind(
    name: str,
    *,
    bus: str | None = None,
    wireless: bool = False,
    if_type: int | None = None,
    tun: bool = False,
    bridge: bool = False,
    bond: bool = False,
    description: str | None = None,
) -> str:
    """Classify a network adapter as one of ``ADAPTER_KINDS``.

    ``bus`` is ``pci``/``usb``/``bluetooth``/``root``/``swd``/``virtio``/... from a
    PNP prefix (Windows) or the sysfs device link (Linux), ``None`` when the adapter
    has no device (a software interface). ``if_type`` is the Linux ARPHRD type.
    """
    words = f"{name} {description or ''}"
    if if_type == 772 or name == "lo" or "loopback interface" in words.lower():
        return "loopback"
    if bus == "bluetooth" or "bluetooth" in words.lower() or name.startswith("bnep"):
        return "bluetooth"
    if tun or if_type in (65534, 512) or _VPN_WORDS.search(words):
        return "vpn"
    if bridge or bond or bus in (None, "root", "swd") or _VIRTUAL_WORDS.search(words):
        return "virtual"

    if wireless or _WIFI_WORDS.search(words):
        return "wifi"
    if bus == "usb":
        return "usb"
    return "ethernet"


def counts_for_identity(adapter: Mapping[str, Any]) -> bool:
    """Tell whether an adapter's MAC is a hardware identity signal.

    Only onboard or card adapters count: kind ethernet or wifi on a PCI/SoC bus, with
    a universally administered MAC (randomised and virtual MACs are local).
    """
    mac = normalize_mac(adapter.get("mac"))
    if mac is None or is_locally_administered(mac):
        return False
    if adapter.get("kind") not in ("ethernet", "wifi"):
        return False
    return adapter.get("bus") in ("pci", "platform", "sdio", "virtio", "vmbus")


# Identity -----------------------------------------------------------------------


def section_data(sections: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """Return a section's data from either envelopes or bare data (empty if none)."""
    section = sections.get(name) or {}
    if isinstance(section, Mapping) and "status" in section and "data" in section:
        section = section.get("data") or {}
    return section if isinstance(section, Mapping) else {}


def identity_signals(sections: Mapping[str, Any]) -> dict[str, Any]:
    """Derive the identity signals of design.md from inventory sections.

    Accepts section envelopes (``{"status": ..., "data": ...}``) or bare data.
    """
    system = section_data(sections, "system")
    adapters = section_data(sections, "network").get("adapters") or []
    macs = {normalize_mac(a.get("mac")) for a in adapters if counts_for_identity(a)}
    return {
        "machine_id": clean_hw(system.get("machine_id")),
        "smbios_uuid": clean_uuid(system.get("uuid")),
        "system_serial": clean_hw(system.get("serial")),
        "board_serial": clean_hw(system.get("board_serial")),
        "disk_serial": system_disk_serial(section_data(sections, "disks")),
        "macs": sorted(m for m in macs if m),
        "hostname": clean_text(system.get("hostname")),
    }


def system_disk_serial(disks: Mapping[str, Any]) -> str | None:
    """Serial of the first fixed physical disk (lowest index) that has a real one."""
    physical = [d for d in disks.get("physical") or [] if not d.get("removable")]
    physical.sort(key=lambda d: (d.get("index") is None, d.get("index") or 0))
    for disk in physical:
        serial = clean_hw(disk.get("serial"))
        if serial:
            return serial
    return None


# Vendor support -----------------------------------------------------------------

_WINDOWS_UNSUPPORTED = ("6.0", "6.1", "6.2", "6.3")
# Build -> (end for Home/Pro, end for Enterprise/Education), from Microsoft's
# published lifecycle pages. Pro Education and Pro for Workstations follow Home/Pro
# (24 months for Windows 11); Enterprise, Education and IoT Enterprise get 36.
_WINDOWS_BUILD_END = {
    19042: (date(2022, 5, 10), date(2023, 5, 9)),  # Windows 10 20H2
    19043: (date(2022, 12, 13), date(2022, 12, 13)),  # Windows 10 21H1
    19044: (date(2023, 6, 13), date(2024, 6, 11)),  # Windows 10 21H2
    19045: (date(2025, 10, 14), date(2025, 10, 14)),  # Windows 10 22H2
    22000: (date(2023, 10, 10), date(2024, 10, 8)),  # Windows 11 21H2
    22621: (date(2024, 10, 8), date(2025, 10, 14)),  # Windows 11 22H2
    22631: (date(2025, 11, 11), date(2026, 11, 10)),  # Windows 11 23H2
    26100: (date(2026, 10, 13), date(2027, 10, 12)),  # Windows 11 24H2
    26200: (date(2027, 10, 12), date(2028, 10, 10)),  # Windows 11 25H2
}
# Long-term servicing builds -> (end, end for IoT Enterprise LTSC).
_WINDOWS_LTSC_END = {
    10240: (date(2025, 10, 14), date(2025, 10, 14)),  # 2015 LTSB
    14393: (date(2026, 10, 13), date(2026, 10, 13)),  # 2016 LTSB
    17763: (date(2029, 1, 9), date(2029, 1, 9)),  # 2019 LTSC
    19044: (date(2027, 1, 12), date(2032, 1, 13)),  # 2021 LTSC
    26100: (date(2029, 10, 9), date(2034, 10, 10)),  # 2024 LTSC
}
# End of standard support of Ubuntu LTS releases (Expanded Security Maintenance,
# a paid subscription, is not counted).
_UBUNTU_LTS_END = {
    "14.04": date(2019, 4, 30),
    "16.04": date(2021, 4, 30),
    "18.04": date(2023, 5, 31),
    "20.04": date(2025, 5, 31),
    "22.04": date(2027, 6, 1),
    "24.04": date(2029, 5, 31),
}
# End of Debian LTS (security support by the Debian LTS team after the regular
# security support ends), by major version.
_DEBIAN_END = {
    "9": date(2022, 6, 30),
    "10": date(2024, 6, 30),
    "11": date(2026, 8, 31),
    "12": date(2028, 6, 30),
    "13": date(2030, 6, 30),
}


def vendor_supported(
    family: str | None, name: str | None, version: str | None, on_date: date
) -> bool | None:
    """Tell whether the OS vendor still supports this release on ``on_date``.

    ``None`` when the release is not in the table (unknown, never a guess).
    """
    if family == "windows":
        end = _windows_end(name or "", version or "")
    elif family == "linux":
        end = _linux_end(name or "", version or "")
    else:
        return None
    if end is None:
        return None
    return end if isinstance(end, bool) else on_date <= end


def _windows_end(name: str, version: str) -> date | bool | None:
    if "Server" in name:
        return None
    if version.startswith(_WINDOWS_UNSUPPORTED) or re.search(r"Windows (XP|7|8)", name):
        return False
    match = re.match(r"10\.0\.(\d+)", version)
    if not match:
        return None

    build = int(match.group(1))
    if re.search(r"LTS[BC]", name):
        ends = _WINDOWS_LTSC_END.get(build)
        return None if ends is None else ends[1 if "IoT" in name else 0]
    ends = _WINDOWS_BUILD_END.get(build)
    if ends is None:
        return False if build < min(_WINDOWS_BUILD_END) else None
    return ends[1] if _windows_business_edition(name) else ends[0]


def _windows_business_edition(name: str) -> bool:
    """Enterprise and Education editions; Pro Education is serviced as Pro."""
    if "Pro Education" in name:
        return False
    return re.search(r"Enterprise|Education", name) is not None


def _linux_end(name: str, version: str) -> date | None:
    lowered = name.lower()
    if "ubuntu" in lowered:
        return _UBUNTU_LTS_END.get(version.strip()[:5])
    if "debian" in lowered:
        return _DEBIAN_END.get(version.strip().split(".")[0])
    return None


# Hashes -------------------------------------------------------------------------


def canonical_json(data: object) -> str:
    """Serialise data canonically: sorted keys, no spaces, UTF-8 text kept as is."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_hash(data: object) -> str:
    """SHA-256 (hex) of the canonical JSON of ``data`` as sent."""
    return hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()
