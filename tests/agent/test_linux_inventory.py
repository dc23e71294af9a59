"""Linux inventory: captured sysfs trees and tool outputs, and real readings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from schoolmon.agent.inventory import _linux
from schoolmon.agent.inventory.normalize import adapter_kind

from tests.agent.conftest import FIXTURES

LINUX = FIXTURES / "linux"
SYSFS = LINUX / "sysfs-lab-pc"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")


def test_physical_disks_from_sysfs_byte_counts_and_buses():
    """Disks come from sector counts, virtual block devices are skipped."""
    warnings: list[str] = []

    disks = _linux.physical_disks(SYSFS / "sys/block", warnings)

    assert disks == [
        {
            "name": "nvme0n1",
            "index": 0,
            "model": "Samsung SSD 970 EVO Plus 250GB",
            "serial": "S4EUNX0N123456L",
            "size_bytes": 500118192 * 512,
            "media": "ssd",
            "removable": False,
            "interface": "nvme",
        },
        {
            "name": "sda",
            "index": 1,
            "model": "ST500DM002-1BD142",
            "serial": "Z3T4ABCD",
            "size_bytes": 500107862016,
            "media": "hdd",
            "removable": False,
            "interface": "sata",
        },
        {
            "name": "sdb",
            "index": 2,
            "model": "DataTraveler 3.0",
            "serial": None,
            "size_bytes": 30297216 * 512,
            "media": "hdd",
            "removable": True,
            "interface": "usb",
        },
    ]
    assert warnings == []


def test_adapter_kinds_from_sysfs_facts():
    """Each interface of the captured tree gets its kind and bus from sysfs."""
    net = SYSFS / "sys/class/net"
    kinds = {}
    for name in sorted(p.name for p in net.iterdir()):
        facts = _linux.adapter_facts(net / name)
        kinds[name] = (adapter_kind(name, **facts), facts["bus"])

    assert kinds == {
        "bnep0": ("bluetooth", None),
        "bond0": ("virtual", None),
        "docker0": ("virtual", None),
        "enp3s0": ("ethernet", "pci"),
        "enx0a1b2c3d4e5f": ("usb", "usb"),
        "eth0": ("ethernet", "virtio"),
        "lo": ("loopback", None),
        "tun0": ("vpn", None),
        "veth1a2b3c": ("virtual", None),
        "wg0": ("vpn", None),
        "wlp2s0": ("wifi", "pci"),
        "wlx00c0ca123456": ("wifi", "usb"),
    }


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "edid-dell-e1916h-serial-descriptor.bin",
            {
                "manufacturer": "DEL",
                "model": "DELL E1916H",
                "serial": "CN0J9727",
                "year": 2014,
            },
        ),
        (
            "edid-samsung-numeric-serial-model-year.bin",
            {
                "manufacturer": "SAM",
                "model": "S22F350",
                "serial": "1129796690",
                "year": 2019,
            },
        ),
    ],
)
def test_edid_gives_manufacturer_model_serial_and_year(fixture, expected):
    """EDID blobs decode to the PNP id, the name and serial descriptors and the year."""
    assert _linux.parse_edid((LINUX / fixture).read_bytes()) == expected


def test_edid_rejects_a_blob_without_header():
    """A truncated or foreign blob is an error naming what is wrong."""
    with pytest.raises(ValueError, match="not an EDID block"):
        _linux.parse_edid(b"\x00" * 128)


def test_dmidecode_modules_skip_empty_slots_and_placeholders():
    """Installed modules only, with sizes in bytes and filler values as null."""
    text = (LINUX / "dmidecode-two-dimms-one-empty-slot.txt").read_text()

    assert _linux.parse_dmidecode_memory(text) == [
        {
            "slot": "ChannelA-DIMM0",
            "size_bytes": 4 * 2**30,
            "manufacturer": "Kingston",
            "part_number": "99U5595-005.A00LF",
            "serial": "0E2B3C4D",
            "speed_mhz": 1600,
        },
        {
            "slot": "ChannelB-DIMM0",
            "size_bytes": 4 * 2**30,
            "manufacturer": None,
            "part_number": None,
            "serial": None,
            "speed_mhz": 1600,
        },
    ]


def test_dpkg_lists_only_installed_packages_with_unicode_intact():
    """Removed and half-installed packages are left out; names stay byte-exact."""
    text = (LINUX / "dpkg-query-installed-removed-and-unicode.txt").read_text("utf-8")

    assert [(p["name"], p["version"]) for p in _linux.parse_dpkg(text)] == [
        ("adduser", "3.118ubuntu5"),
        ("ibus-unikey", "0.7.0~beta1-1"),
        ("phần-mềm-thư-viện", "2.1.0"),
    ]


def test_os_release_ubuntu_is_parsed_without_quotes():
    """os-release values lose their quotes."""
    release = _linux.parse_os_release(
        (LINUX / "os-release-ubuntu-22.04.txt").read_text()
    )

    assert (release["NAME"], release["VERSION_ID"], release["ID"]) == (
        "Ubuntu",
        "22.04",
        "ubuntu",
    )


def test_bios_date_from_dmi_text():
    """DMI's MM/DD/YYYY becomes an ISO date; anything else is unknown."""
    assert [
        _linux.parse_bios_date("06/15/2021"),
        _linux.parse_bios_date("2021"),
        _linux.parse_bios_date(None),
    ] == ["2021-06-15", None, None]


def test_missing_dmi_gives_nulls_and_one_warning_naming_it(tmp_path):
    """Without /sys/class/dmi the system values are null and a warning names it."""
    warnings: list[str] = []

    values = _linux.read_dmi(tmp_path / "sys/class/dmi/id", warnings)

    assert set(values.values()) == {None}
    assert warnings == [
        f"system: {tmp_path}/sys/class/dmi/id is not present (no DMI on this machine); "
        "manufacturer, model, serial, uuid, board and bios are unknown"
    ]


# This machine's real readings against the system's own tools ----------------


@linux_only
def test_cpu_count_matches_nproc():
    """logical_cores equals what nproc reports (no tolerance: both count CPUs)."""
    nproc = int(
        subprocess.run(["nproc", "--all"], capture_output=True, text=True).stdout
    )

    assert _linux.section_functions()["cpu"]([])["logical_cores"] == nproc


@linux_only
def test_usable_memory_matches_proc_meminfo_within_one_mib():
    """usable_bytes equals MemTotal of /proc/meminfo within 1 MiB."""
    meminfo = Path("/proc/meminfo").read_text(encoding="ascii")
    total_kib = int(re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M).group(1))

    usable = _linux.memory([])["usable_bytes"]

    assert abs(usable - total_kib * 1024) <= 2**20


@linux_only
def test_system_volume_matches_df_within_one_percent():
    """The system volume's size equals df's for / (free space within 1 %)."""
    df = subprocess.run(
        ["df", "-B1", "--output=size,avail", "/"], capture_output=True, text=True
    ).stdout.split()
    size, avail = int(df[2]), int(df[3])

    volumes = _linux.disks([])["volumes"]
    system = [v for v in volumes if v["system"]]

    assert len(system) == 1 and system[0]["mount"] == "/"
    assert system[0]["size_bytes"] == size
    assert abs(system[0]["free_bytes"] - avail) <= size * 0.01


@linux_only
def test_network_section_classifies_this_machine_interfaces():
    """Every interface psutil sees is listed, lo as loopback, with a known kind."""
    adapters = _linux.network([])["adapters"]

    assert sorted(a["name"] for a in adapters) == sorted(psutil.net_if_addrs())
    assert {a["name"]: a["kind"] for a in adapters}["lo"] == "loopback"
    assert {a["kind"] for a in adapters} <= {
        "ethernet",
        "wifi",
        "virtual",
        "bluetooth",
        "loopback",
        "vpn",
        "usb",
    }


@linux_only
def test_software_from_dpkg_matches_dpkg_query_count():
    """The programs listed equal dpkg-query's installed packages."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("no dpkg on this machine")
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\n"],
        capture_output=True,
        text=True,
    ).stdout
    installed = sum(1 for line in out.splitlines() if line.startswith("ii"))

    software = _linux.software([])

    assert (software["source"], len(software["programs"])) == ("dpkg", installed)


@linux_only
def test_memory_modules_null_with_warning_without_dmidecode_or_root():
    """Without dmidecode (or root) the modules are null and a warning says why."""
    warnings: list[str] = []
    modules = _linux.memory_modules(warnings)
    if shutil.which("dmidecode") and os.geteuid() == 0:
        pytest.skip("dmidecode usable here")

    assert modules is None
    assert len(warnings) == 1 and warnings[0].startswith("memory.modules: dmidecode")
