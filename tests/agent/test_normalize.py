"""Normalisation shared with the collector: placeholders, MACs, kinds, identity."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from schoolmon.agent.inventory.normalize import (
    adapter_kind,
    canonical_hash,
    canonical_json,
    clean_hw,
    clean_uuid,
    identity_signals,
    normalize_mac,
    pnp_bus,
    vendor_supported,
)

# Case inv-placeholder-serials, every value as given.
PLACEHOLDER_SERIALS = [
    "To Be Filled By O.E.M.",
    "To be filled by O.E.M.",
    "System Serial Number",
    "Not Specified",
    "None",
    "N/A",
    "00000000",
    "Chassis Serial Number",
    "",
    "  ",
]
PLACEHOLDER_UUIDS = [
    "03000200-0400-0500-0006-000700080009",
    "00000000-0000-0000-0000-000000000000",
    "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
]
OEM_FILLER = [
    "Default string",
    "System Product Name",
    "Base Board Serial Number",
    "System manufacturer",
    "TO BE FILLED BY OEM",
    "to_be_filled_by_o.e.m",
]


def test_case_placeholder_serials_all_become_null():
    """Every serial and UUID of case inv-placeholder-serials is stored as null."""
    serials = [clean_hw(value) for value in PLACEHOLDER_SERIALS + OEM_FILLER]
    uuids = [clean_uuid(value) for value in PLACEHOLDER_UUIDS]

    assert serials + uuids == [None] * (len(serials) + len(uuids))


@given(
    st.sampled_from(PLACEHOLDER_SERIALS[:8] + OEM_FILLER),
    st.lists(st.sampled_from([" ", "\t", "\x00"]), max_size=4).map("".join),
    st.booleans(),
)
def test_placeholders_in_any_case_and_padding_are_null(text, padding, upper):
    """OEM filler stays null whatever its letter case and surrounding padding."""
    variant = (text.upper() if upper else text.lower()) + padding

    assert clean_hw(padding + variant) is None


@given(st.sampled_from("0123456789FfXx"), st.integers(min_value=1, max_value=24))
def test_repeated_digit_serials_are_null(char, length):
    """Serials made of one repeated character (0000, FFFF, 1111) are filler."""
    assert clean_hw(char * length) is None


@given(st.uuids())
def test_random_uuids_survive_normalisation_upper_case(value):
    """A real (random) UUID is kept, upper case, with dashes, in any input case."""
    text = str(value)

    assert clean_uuid(text.lower()) == clean_uuid(text.upper()) == text.upper()


def test_real_values_keep_their_text_without_padding():
    """Real serials, UUIDs and names are kept with their padding stripped."""
    values = [
        clean_hw("            Z3T4ABCD"),
        clean_hw("HMT451U6AFR8C-PB  "),
        clean_hw("Microsoft Windows 7 Ultimate "),
        clean_uuid(" 4c4c4544-0058-4b10-8032-b8c04f513332\x00"),
    ]

    assert values == [
        "Z3T4ABCD",
        "HMT451U6AFR8C-PB",
        "Microsoft Windows 7 Ultimate",
        "4C4C4544-0058-4B10-8032-B8C04F513332",
    ]


@given(st.binary(min_size=6, max_size=6), st.sampled_from([":", "-", ""]))
def test_mac_normalisation_round_trips_any_spelling(raw, separator):
    """Any spelling of a MAC gives upper case with colons; zero/broadcast give None."""
    text = separator.join(f"{b:02x}" for b in raw)
    expected = ":".join(f"{b:02X}" for b in raw)
    if raw in (bytes(6), b"\xff" * 6):
        expected = None

    assert normalize_mac(text) == expected


def test_invalid_macs_are_none():
    """Wrong lengths, non-hex text and non-strings are not MACs."""
    values = ["00:00:00:00:00:00", "FF:FF:FF:FF:FF:FF", "12:34", "zz" * 6, None, 42]

    assert [normalize_mac(v) for v in values] == [None] * 6


WINDOWS_ADAPTERS = [
    ("Realtek PCIe GBE Family Controller", "PCI\\VEN_10EC&DEV_8168\\4&1C", "ethernet"),
    ("Intel(R) Wi-Fi 6 AX201 160MHz", "PCI\\VEN_8086&DEV_A0F0\\3&11", "wifi"),
    ("Bluetooth Device (Personal Area Network)", "BTH\\MS_BTHPAN\\6&2B", "bluetooth"),
    ("TAP-Windows Adapter V9", "ROOT\\NET\\0000", "vpn"),
    ("WireGuard Tunnel", "SWD\\WireGuard\\{ABC}", "vpn"),
    ("OpenVPN Data Channel Offload", "ROOT\\NET\\0001", "vpn"),
    ("VirtualBox Host-Only Ethernet Adapter", "ROOT\\NET\\0002", "virtual"),
    ("VMware Virtual Ethernet Adapter for VMnet8", "ROOT\\VMWARE\\0000", "virtual"),
    ("Hyper-V Virtual Ethernet Adapter", "ROOT\\VMS_MP\\0000", "virtual"),
    ("vEthernet (Default Switch)", "ROOT\\VMS_MP\\0001", "virtual"),
    ("Npcap Loopback Adapter", "ROOT\\NET\\0003", "virtual"),
    ("Microsoft Wi-Fi Direct Virtual Adapter", "SWD\\MSRRAS\\MS_NDISWANIP", "virtual"),
    (
        "Remote NDIS based Internet Sharing Device",
        "USB\\VID_18D1&PID_4EE4\\6&1F",
        "usb",
    ),
    ("Realtek RTL8188EU Wireless LAN 802.11n USB 2.0", "USB\\VID_0BDA\\00E0", "wifi"),
    ("Software Loopback Interface 1", None, "loopback"),
]


@pytest.mark.parametrize(("name", "pnp", "kind"), WINDOWS_ADAPTERS)
def test_windows_adapter_kinds_from_pnp_prefix_and_name(name, pnp, kind):
    """Windows adapters are classified from their PNPDeviceID prefix and name."""
    assert adapter_kind(name, bus=pnp_bus(pnp)) == kind


def test_case_shared_bluetooth_mac_gives_two_identities():
    """Two PCs sharing a Bluetooth PAN MAC keep distinct identities (case)."""
    pcs = []
    for host, serial, ethernet in (
        ("LAB-PC07", "System Serial Number", "B8:AC:6F:11:22:01"),
        ("LAB-PC12", "To be filled by O.E.M.", "B8:AC:6F:11:22:02"),
    ):
        adapters = [
            _adapter("Bluetooth PAN", "00:1A:7D:DA:71:0A", "BTH\\MS_BTHPAN\\1"),
            _adapter("Ethernet", ethernet, "PCI\\VEN_10EC\\1"),
        ]
        system = {"hostname": host, "serial": serial}
        pcs.append(
            identity_signals({"system": system, "network": {"adapters": adapters}})
        )

    assert [(p["system_serial"], p["macs"], p["hostname"]) for p in pcs] == [
        (None, ["B8:AC:6F:11:22:01"], "LAB-PC07"),
        (None, ["B8:AC:6F:11:22:02"], "LAB-PC12"),
    ]


def test_case_vpn_adapter_does_not_change_identity():
    """A new TAP adapter leaves the identity unchanged (inv-vpn-adds-adapter)."""
    ethernet = _adapter("Ethernet", "94:65:9C:10:20:30", "PCI\\VEN_8086\\1")
    tap = _adapter("TAP-Windows Adapter V9", "00:FF:4E:AA:BB:CC", "ROOT\\NET\\0000")
    run_1 = identity_signals({"network": {"adapters": [ethernet]}})
    run_2 = identity_signals({"network": {"adapters": [ethernet, tap]}})

    assert (
        run_1
        == run_2
        == {
            "machine_id": None,
            "smbios_uuid": None,
            "system_serial": None,
            "board_serial": None,
            "disk_serial": None,
            "macs": ["94:65:9C:10:20:30"],
            "hostname": None,
        }
    )


def test_identity_from_envelopes_ignores_local_macs_and_uses_system_disk():
    """Envelopes work; locally administered MACs and removable disks do not count."""
    sections = {
        "system": {
            "status": "ok",
            "data": {"uuid": "4c4c4544-0058-4b10-8032-b8c04f513332"},
        },
        "network": {
            "status": "ok",
            "data": {
                "adapters": [
                    {"mac": "02:FC:00:00:00:01", "kind": "ethernet", "bus": "pci"},
                    {"mac": "1c:6f:65:aa:00:07", "kind": "ethernet", "bus": "pci"},
                    {"mac": "B8:CA:3A:11:22:33", "kind": "usb", "bus": "usb"},
                ]
            },
        },
        "disks": {
            "status": "ok",
            "data": {
                "physical": [
                    {"index": 1, "serial": "USB123", "removable": True},
                    {"index": 0, "serial": "   ", "removable": False},
                    {"index": 2, "serial": "WD-WCC2EAB12345", "removable": False},
                ]
            },
        },
    }

    assert identity_signals(sections) == {
        "machine_id": None,
        "smbios_uuid": "4C4C4544-0058-4B10-8032-B8C04F513332",
        "system_serial": None,
        "board_serial": None,
        "disk_serial": "WD-WCC2EAB12345",
        "macs": ["1C:6F:65:AA:00:07"],
        "hostname": None,
    }


def _adapter(name: str, mac: str, pnp: str) -> dict:
    bus = pnp_bus(pnp)
    return {"name": name, "mac": mac, "bus": bus, "kind": adapter_kind(name, bus=bus)}


NOW = date(2026, 12, 3)


@pytest.mark.parametrize(
    ("family", "name", "version", "expected"),
    [
        ("windows", "Microsoft Windows 7 Ultimate", "6.1.7601", False),
        ("windows", "Microsoft Windows 8.1 Pro", "6.3.9600", False),
        ("windows", "Microsoft Windows 10 Pro", "10.0.19045", False),
        ("windows", "Microsoft Windows 10 Enterprise LTSC", "10.0.17763", True),
        ("windows", "Microsoft Windows 11 Pro", "10.0.22631", False),
        ("windows", "Microsoft Windows 11 Education", "10.0.26100", True),
        ("windows", "Microsoft Windows 11 Education", "10.0.22631", False),
        ("windows", "Microsoft Windows 11 Pro", "10.0.26100", False),
        ("windows", "Microsoft Windows 11 Pro", "10.0.26200", True),
        ("windows", "Microsoft Windows 11 Home", "10.0.22000", False),
        ("windows", "Microsoft Windows 11 Pro", "10.0.29999", None),
        ("windows", "Microsoft Windows Server 2019", "10.0.17763", None),
        ("windows", "Microsoft Windows 11 Pro Education", "10.0.22631", False),
        ("windows", "Microsoft Windows 11 Pro Education", "10.0.26200", True),
        ("windows", "Microsoft Windows 11 Enterprise", "10.0.26100", True),
        ("windows", "Microsoft Windows 11 Home", "10.0.26100", False),
        ("windows", "Microsoft Windows 11 Home", "10.0.26200", True),
        ("windows", "Microsoft Windows 10 Enterprise LTSC", "10.0.19044", True),
        ("windows", "Microsoft Windows 10 IoT Enterprise LTSC", "10.0.19044", True),
        ("windows", "Microsoft Windows 10 Enterprise 2016 LTSB", "10.0.14393", False),
        ("windows", "Microsoft Windows 10 Enterprise LTSC", "10.0.18362", None),
        ("windows", "Microsoft Windows 10 Pro", "10.0.18363", False),
        ("windows", None, None, None),
        ("linux", "Ubuntu", "24.04", True),
        ("linux", "Ubuntu", "22.04", True),
        ("linux", "Ubuntu", "20.04", False),
        ("linux", "Ubuntu", "23.10", None),
        ("linux", "Ubuntu", "26.04", None),
        ("linux", "Debian GNU/Linux", "13", True),
        ("linux", "Debian GNU/Linux", "12", True),
        ("linux", "Debian GNU/Linux", "11", False),
        ("linux", "Debian GNU/Linux", "10", False),
        ("linux", "Debian GNU/Linux", "14", None),
        ("linux", "Debian GNU/Linux", None, None),
        ("linux", None, "12", None),
        ("linux", "Linux Mint", "21.3", None),
        ("other", "macOS", "14.1", None),
    ],
)
def test_vendor_support_on_december_2026(family, name, version, expected):
    """Support is decided from the vendor's end dates; unknown releases are None."""
    assert vendor_supported(family, name, version, NOW) is expected


# (family, name, version, last supported day) as the vendors publish them.
END_OF_SUPPORT = [
    ("linux", "Debian GNU/Linux", "10", date(2024, 6, 30)),
    ("linux", "Debian GNU/Linux", "11", date(2026, 8, 31)),
    ("linux", "Debian GNU/Linux", "12", date(2028, 6, 30)),
    ("linux", "Debian GNU/Linux", "13", date(2030, 6, 30)),
    ("linux", "Ubuntu", "18.04", date(2023, 5, 31)),
    ("linux", "Ubuntu", "20.04", date(2025, 5, 31)),
    ("linux", "Ubuntu", "22.04", date(2027, 6, 1)),
    ("linux", "Ubuntu", "24.04", date(2029, 5, 31)),
    ("windows", "Microsoft Windows 11 Home", "10.0.22000", date(2023, 10, 10)),
    ("windows", "Microsoft Windows 11 Pro", "10.0.22621", date(2024, 10, 8)),
    ("windows", "Microsoft Windows 11 Pro", "10.0.22631", date(2025, 11, 11)),
    ("windows", "Microsoft Windows 11 Pro", "10.0.26100", date(2026, 10, 13)),
    ("windows", "Microsoft Windows 11 Education", "10.0.22000", date(2024, 10, 8)),
    ("windows", "Microsoft Windows 11 Enterprise", "10.0.22621", date(2025, 10, 14)),
    ("windows", "Microsoft Windows 11 Education", "10.0.22631", date(2026, 11, 10)),
    ("windows", "Microsoft Windows 11 Enterprise", "10.0.26100", date(2027, 10, 12)),
    ("windows", "Microsoft Windows 10 Pro", "10.0.19045", date(2025, 10, 14)),
]


@pytest.mark.parametrize(("family", "name", "version", "last_day"), END_OF_SUPPORT)
def test_vendor_support_ends_after_the_published_last_day(
    family, name, version, last_day
):
    """Supported on the published last day, unsupported the day after."""
    assert [
        vendor_supported(family, name, version, last_day),
        vendor_supported(family, name, version, last_day + timedelta(days=1)),
    ] == [True, False]


def test_canonical_hash_keeps_unicode_byte_exact_and_ignores_key_order():
    """The hash is over UTF-8 canonical JSON: key order does not matter, text does."""
    first = {"name": "Bộ gõ tiếng Việt Unikey 4.3", "b": [1, 2]}
    second = {"b": [1, 2], "name": "Bộ gõ tiếng Việt Unikey 4.3"}
    other = {"b": [1, 2], "name": "Bo go tieng Viet Unikey 4.3"}

    assert canonical_json(first) == '{"b":[1,2],"name":"Bộ gõ tiếng Việt Unikey 4.3"}'
    assert canonical_hash(first) == canonical_hash(second) != canonical_hash(other)
