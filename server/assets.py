"""Asset history: what changed in a device between two complete inventories.

Pure functions over inventory sections as they travel on the wire (envelopes with a
``status`` and ``data``, see design.md). Only sections that are ``ok`` on both sides
are compared, so a section that failed this time never reads as "component removed";
``merge_sections`` keeps the last good values of a failed section for storage.

Values that wobble from run to run (usable memory, free space, addresses, link speed,
the hostname) never make an event. A rename is returned by ``renamed`` so the device
record can follow it; it is not an asset event, because the event kinds are a metric
label set that alert rules read as hardware changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schoolmon.agent.inventory.normalize import (
    canonical_hash,
    clean_hw,
    clean_text,
    counts_for_identity,
    normalize_mac,
)

logger = logging.getLogger(__name__)

EVENT_KINDS = (
    "component_added",
    "component_removed",
    "component_changed",
    "device_moved",
    "identity_conflict",
)
COMPONENTS = ("memory", "disk", "cpu", "network", "monitor", "os", "device")
GIB = 1024**3
MIB = 1024**2

Sections = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class AssetEvent:
    """One change of a device, with a summary a technician can read as is.

    ``before``/``after`` hold the component's attributes (None on the missing side).
    """

    kind: str
    component: str
    key: str | None
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    summary_en: str
    summary_vi: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form for storage and the API."""
        return {
            "kind": self.kind,
            "component": self.component,
            "key": self.key,
            "before": dict(self.before) if self.before is not None else None,
            "after": dict(self.after) if self.after is not None else None,
            "summary_en": self.summary_en,
            "summary_vi": self.summary_vi,
        }


# Sizes --------------------------------------------------------------------------


def format_binary(size_bytes: int | None, decimal_mark: str = ".") -> str:
    """Memory size in binary units: ``4 GiB``, ``1.7 GiB``, ``512 MiB``."""
    if size_bytes is None:
        return "?"
    if size_bytes >= GIB:
        return _number(size_bytes / GIB, decimal_mark) + " GiB"
    return _number(size_bytes / MIB, decimal_mark) + " MiB"


def format_decimal(size_bytes: int | None, decimal_mark: str = ".") -> str:
    """Disk size in decimal units as vendors label them: ``500 GB``, ``3 TB``."""
    if size_bytes is None:
        return "?"
    if size_bytes >= 1e12:
        return _number(size_bytes / 1e12, decimal_mark) + " TB"
    gigabytes = size_bytes / 1e9
    if gigabytes >= 10:
        return f"{round(gigabytes)} GB"
    return _number(gigabytes, decimal_mark) + " GB"


def _number(value: float, decimal_mark: str) -> str:
    text = f"{value:.1f}".removesuffix(".0")
    return text.replace(".", decimal_mark)


# Merging sections for storage ---------------------------------------------------


def merge_sections(
    previous: Sections | None, new: Sections
) -> dict[str, dict[str, Any]]:
    """Return the sections to store after receiving ``new``.

    An ``ok`` section replaces the stored one; ``unchanged`` (data null, same hash)
    keeps the stored data under the new envelope; a failed section keeps the last good
    one and records the failure under ``last_failure``.
    """
    previous = previous or {}
    merged = {name: dict(section) for name, section in previous.items()}
    for name, section in new.items():
        merged[name] = _merge_one(previous.get(name), section)
    return merged


def needs_full_inventory(previous: Sections | None, new: Sections) -> list[str]:
    """Names of sections sent as ``unchanged`` whose data the collector does not hold.

    A non-empty answer means the agent gets the ``send_full_inventory`` instruction.
    """
    previous = previous or {}
    missing = []
    for name, section in new.items():
        if _is_unchanged(section) and not _has_data(previous.get(name)):
            missing.append(name)
    return sorted(missing)


def _merge_one(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    if new.get("status") == "ok":
        if _is_unchanged(new) and _has_data(old):
            return {**new, "data": old["data"]}
        return dict(new)

    if not _has_data(old):
        return dict(new)
    failure = {key: new.get(key) for key in ("status", "error", "collected_at")}
    logger.debug("section kept its last good data after %s", new.get("status"))
    return {**old, "last_failure": failure}


def _is_unchanged(section: Mapping[str, Any]) -> bool:
    return section.get("status") == "ok" and section.get("data") is None


def _has_data(section: Mapping[str, Any] | None) -> bool:
    return (
        bool(section)
        and section.get("status") == "ok"
        and section.get("data") is not None
    )


# What the asset history keeps ----------------------------------------------------

VOLATILE_FIELDS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "system": (("boot_time",),),
    "memory": (("usable_bytes",),),
    "disks": (("volumes", "free_bytes"),),
    "network": (
        ("adapters", "addresses"),
        ("adapters", "speed_bps"),
        ("adapters", "up"),
    ),
    "battery": (("percent",), ("plugged",), ("full_capacity_wh",)),
}
"""Per section, the data fields that wobble from run to run: ``(field,)`` or
``(list field, field of each item)``."""


def history_hash(sections: Sections | None) -> str:
    """A hash of the sections' data without ``VOLATILE_FIELDS`` (and without the
    envelopes: collection times, section hashes, a failure's last_failure): it
    changes when the device changed, not when a volume filled or an address moved.
    A new inventory snapshot is kept only when it changes."""
    stable = {
        name: _without_volatile(name, section.get("data"))
        for name, section in sorted((sections or {}).items())
    }
    return canonical_hash(stable)


def _without_volatile(name: str, data: Any) -> Any:
    if not isinstance(data, Mapping):
        return data
    data = dict(data)
    for path in VOLATILE_FIELDS.get(name, ()):
        if len(path) == 1:
            data.pop(path[0], None)
        elif isinstance(data.get(path[0]), list):
            data[path[0]] = [
                {k: v for k, v in item.items() if k != path[1]}
                if isinstance(item, Mapping)
                else item
                for item in data[path[0]]
            ]
    return data


# Diffing ------------------------------------------------------------------------


def diff_inventories(previous: Sections | None, new: Sections) -> list[AssetEvent]:
    """Asset events between two inventories (section envelopes keyed by name).

    Sections not ``ok`` with data on both sides are skipped: a failed or unchanged
    section says nothing about the hardware.
    """
    previous = previous or {}
    events: list[AssetEvent] = []
    for name, differ in _DIFFERS.items():
        old, cur = previous.get(name), new.get(name)
        if _has_data(old) and _has_data(cur):
            events.extend(differ(old["data"], cur["data"]))
    if events:
        logger.debug("inventory diff: %d asset events", len(events))
    return events


def renamed(previous: Sections | None, new: Sections) -> tuple[str, str] | None:
    """``(old, new)`` hostname when the PC was renamed, else None."""
    old = (previous or {}).get("system")
    cur = new.get("system")
    if not (_has_data(old) and _has_data(cur)):
        return None
    before = clean_text(old["data"].get("hostname"))
    after = clean_text(cur["data"].get("hostname"))
    if before and after and before != after:
        return before, after
    return None


# Memory: modules by slot; one event for the total when sizes change in place.


def _memory_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[AssetEvent]:
    before, after = _modules_by_slot(old), _modules_by_slot(new)
    if not before or not after:
        return _memory_total_events(
            old.get("installed_bytes"), new.get("installed_bytes")
        )

    removed = [slot for slot in before if slot not in after]
    added = [slot for slot in after if slot not in before]
    resized = [s for s in before if s in after and before[s] != after[s]]
    if removed and not added and not resized:
        return [_memory_slot_event("component_removed", s, before[s]) for s in removed]
    if added and not removed and not resized:
        return [_memory_slot_event("component_added", s, after[s]) for s in added]
    return _memory_total_events(sum(before.values()), sum(after.values()))


def _modules_by_slot(memory: Mapping[str, Any]) -> dict[str, int]:
    slots: dict[str, int] = {}
    for index, module in enumerate(memory.get("modules") or []):
        size = module.get("size_bytes")
        if size:
            slot = clean_text(module.get("slot")) or f"#{index}"
            slots[slot] = int(size)
    return slots


def _memory_total_events(before: int | None, after: int | None) -> list[AssetEvent]:
    if before is None or after is None or before == after:
        return []
    old, new = format_binary(before), format_binary(after)
    old_vi, new_vi = format_binary(before, ","), format_binary(after, ",")
    return [
        AssetEvent(
            kind="component_changed",
            component="memory",
            key=None,
            before={"installed_bytes": before},
            after={"installed_bytes": after},
            summary_en=f"Memory changed {old} -> {new}",
            summary_vi=f"Bộ nhớ thay đổi {old_vi} -> {new_vi}",
        )
    ]


def _memory_slot_event(kind: str, slot: str, size: int) -> AssetEvent:
    attrs = {"slot": slot, "size_bytes": size}
    en, vi = format_binary(size), format_binary(size, ",")
    if kind == "component_removed":
        texts = (
            f"Memory module removed from slot {slot} ({en})",
            f"Tháo thanh bộ nhớ ở khe {slot} ({vi})",
        )
        before, after = attrs, None
    else:
        texts = (
            f"Memory module added in slot {slot} ({en})",
            f"Lắp thêm thanh bộ nhớ vào khe {slot} ({vi})",
        )
        before, after = None, attrs
    return AssetEvent(kind, "memory", slot, before, after, *texts)


# Keyed components: disks, network adapters, monitors. A removal and an addition of
# the same component type in one diff is a replacement: one component_changed.


@dataclass(frozen=True)
class _Part:
    key: str
    attrs: Mapping[str, Any]
    label_en: str
    label_vi: str


@dataclass(frozen=True)
class _Words:
    component: str
    added: tuple[str, str]
    removed: tuple[str, str]
    changed: tuple[str, str]


def _keyed_events(
    before: Sequence[_Part], after: Sequence[_Part], words: _Words
) -> list[AssetEvent]:
    old_keys = {part.key for part in before}
    new_keys = {part.key for part in after}
    removed = [part for part in before if part.key not in new_keys]
    added = [part for part in after if part.key not in old_keys]

    events = [
        _replaced(old, cur, words) for old, cur in zip(removed, added, strict=False)
    ]
    pairs = min(len(removed), len(added))
    events += [_single("component_removed", p, words) for p in removed[pairs:]]
    events += [_single("component_added", p, words) for p in added[pairs:]]
    return events


def _single(kind: str, part: _Part, words: _Words) -> AssetEvent:
    en, vi = words.removed if kind == "component_removed" else words.added
    before, after = (
        (part.attrs, None) if kind == "component_removed" else (None, part.attrs)
    )
    return AssetEvent(
        kind,
        words.component,
        part.key,
        before,
        after,
        f"{en}: {part.label_en}",
        f"{vi}: {part.label_vi}",
    )


def _replaced(old: _Part, new: _Part, words: _Words) -> AssetEvent:
    en, vi = words.changed
    return AssetEvent(
        "component_changed",
        words.component,
        new.key,
        old.attrs,
        new.attrs,
        f"{en} {old.label_en} -> {new.label_en}",
        f"{vi} {old.label_vi} -> {new.label_vi}",
    )


def _disk_parts(disks: Mapping[str, Any]) -> list[_Part]:
    parts = []
    fixed = [d for d in disks.get("physical") or [] if not d.get("removable")]
    for disk in fixed:
        model, serial, size = (
            clean_hw(disk.get("model")),
            clean_hw(disk.get("serial")),
            disk.get("size_bytes"),
        )
        key = serial or f"{model or '?'}/{size}"
        attrs = {"model": model, "serial": serial, "size_bytes": size}
        serial_part = f", serial {serial}" if serial else ""
        parts.append(
            _Part(
                key,
                attrs,
                f"{model or '?'} ({format_decimal(size)}{serial_part})",
                f"{model or '?'} ({format_decimal(size, ',')}{serial_part})",
            )
        )
    return parts


def _network_parts(network: Mapping[str, Any]) -> list[_Part]:
    parts = []
    for adapter in network.get("adapters") or []:
        if not counts_for_identity(adapter):
            continue
        mac = normalize_mac(adapter.get("mac"))
        name = clean_text(adapter.get("name")) or "?"
        attrs = {"mac": mac, "name": name, "kind": adapter.get("kind")}
        parts.append(_Part(mac, attrs, f"{name} ({mac})", f"{name} ({mac})"))
    return parts


def _monitor_parts(monitors: Mapping[str, Any]) -> list[_Part]:
    parts = []
    for monitor in monitors.get("monitors") or []:
        maker, model = (
            clean_hw(monitor.get("manufacturer")),
            clean_hw(monitor.get("model")),
        )
        serial = clean_hw(monitor.get("serial"))
        key = serial or f"{maker or '?'}/{model or '?'}"
        attrs = {"manufacturer": maker, "model": model, "serial": serial}
        serial_part = f" (serial {serial})" if serial else ""
        label = f"{model or maker or '?'}{serial_part}"
        parts.append(_Part(key, attrs, label, label))
    return parts


_DISK_WORDS = _Words(
    "disk",
    ("Disk added", "Thêm ổ đĩa"),
    ("Disk removed", "Tháo ổ đĩa"),
    ("Disk changed", "Ổ đĩa thay đổi"),
)
_NETWORK_WORDS = _Words(
    "network",
    ("Network adapter added", "Thêm card mạng"),
    ("Network adapter removed", "Tháo card mạng"),
    ("Network adapter changed", "Card mạng thay đổi"),
)
_MONITOR_WORDS = _Words(
    "monitor",
    ("Monitor added", "Thêm màn hình"),
    ("Monitor removed", "Tháo màn hình"),
    ("Monitor changed", "Màn hình thay đổi"),
)


def _parts_differ(
    parts: Callable[[Mapping[str, Any]], list[_Part]], words: _Words
) -> Callable[[Mapping[str, Any], Mapping[str, Any]], list[AssetEvent]]:
    def differ(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[AssetEvent]:
        return _keyed_events(parts(old), parts(new), words)

    return differ


# Single-valued components: CPU model, operating system.


def _cpu_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[AssetEvent]:
    before, after = clean_hw(old.get("model")), clean_hw(new.get("model"))
    if before is None or after is None or before == after:
        return []
    return [
        AssetEvent(
            "component_changed",
            "cpu",
            None,
            {"model": before},
            {"model": after},
            f"CPU changed {before} -> {after}",
            f"CPU thay đổi {before} -> {after}",
        )
    ]


def _os_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[AssetEvent]:
    before, after = _os_attrs(old), _os_attrs(new)
    if before["name"] is None or after["name"] is None or before == after:
        return []
    old_label, new_label = _os_label(before), _os_label(after)
    return [
        AssetEvent(
            "component_changed",
            "os",
            None,
            before,
            after,
            f"OS changed {old_label} -> {new_label}",
            f"Hệ điều hành thay đổi {old_label} -> {new_label}",
        )
    ]


def _os_attrs(os_data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: clean_text(os_data.get(key)) for key in ("family", "name", "version")}


def _os_label(attrs: Mapping[str, Any]) -> str:
    return " ".join(part for part in (attrs["name"], attrs["version"]) if part)


_DIFFERS: dict[
    str, Callable[[Mapping[str, Any], Mapping[str, Any]], list[AssetEvent]]
] = {
    "memory": _memory_events,
    "disks": _parts_differ(_disk_parts, _DISK_WORDS),
    "cpu": _cpu_events,
    "network": _parts_differ(_network_parts, _NETWORK_WORDS),
    "monitors": _parts_differ(_monitor_parts, _MONITOR_WORDS),
    "os": _os_events,
}


# Events about the device itself (built by the identity decision).


def device_moved_event(device_id: str, from_school: str, to_school: str) -> AssetEvent:
    """The device was recognised under a credential of another school."""
    return AssetEvent(
        "device_moved",
        "device",
        device_id,
        {"school": from_school},
        {"school": to_school},
        f"Device moved from school {from_school} to {to_school}",
        f"Thiết bị chuyển từ trường {from_school} sang trường {to_school}",
    )


def identity_conflict_event(
    device_id: str, new_device_id: str | None, reasons: Iterable[str] = ()
) -> AssetEvent:
    """One credential speaks for a second machine (a cloned disk image)."""
    other = new_device_id or "?"
    return AssetEvent(
        "identity_conflict",
        "device",
        device_id,
        {"device_id": device_id},
        {"device_id": new_device_id, "reasons": list(reasons)},
        f"The credential of device {device_id} is also used by another machine "
        f"(new device {other}); it gets its own credential",
        f"Khóa xác thực của thiết bị {device_id} đang được một máy khác dùng "
        f"(thiết bị mới {other}); máy đó được cấp khóa riêng",
    )
