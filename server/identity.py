"""Which known device an incoming report (or enrollment) belongs to.

The decision is a score over cleaned identity signals (design.md "Identity signals").
Each signal present on both sides adds its weight when it matches and subtracts it
when it differs; a signal missing on either side is neutral. Weights follow how
unique a value is in the field:

- onboard MACs (any overlap) and the system disk serial are set at the factory and
  differ on every PC, even on cloned images: the strongest evidence;
- SMBIOS UUID (compared in both byte orders: firmware and tools disagree about the
  first three groups), system and board serials are unique on branded PCs but some
  vendors ship a whole batch with one value;
- the OS machine id only counts when it matches: a reinstalled OS has a new one, a
  cloned image shares one;
- the hostname is shown in the reasons and never counts.

A value that several known devices share (a batch-duplicated serial, the machine id
of a cloned image) identifies nobody and is ignored. Placeholders are already null.

Another known device is recognised only when its matching signals outnumber the
signals that contradict it, a differing machine id included: one signal alone
against another (a virtual disk serial such as ``overlayblk`` on two VMs with their
own machine ids, a USB network adapter moved to a PC with its own SMBIOS UUID) is a
coincidence, not the same machine. A reinstalled PC still matches on its hardware.

Outcomes:

- ``same``: the report is the credential's device;
- ``other_known``: a different known device (reboot-to-restore brought back another
  PC's credential, a reinstalled PC enrolled again, a PC moved to another school);
- ``new_machine_on_shared_credential``: the credential's device has a clearly
  different hardware fingerprint and no known device matches: a cloned image. The
  caller creates a device and hands it its own credential;
- ``new_machine``: at enrollment (no credential yet), no known device matches.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any

from schoolmon.agent.inventory.normalize import (
    clean_hw,
    clean_text,
    clean_uuid,
    identity_signals,
    normalize_mac,
)
from schoolmon.server.assets import (
    AssetEvent,
    device_moved_event,
    identity_conflict_event,
)

logger = logging.getLogger(__name__)

OUTCOMES = ("same", "other_known", "new_machine_on_shared_credential", "new_machine")

WEIGHTS: Mapping[str, int] = {
    "macs": 40,
    "disk_serial": 35,
    "smbios_uuid": 20,
    "system_serial": 20,
    "board_serial": 20,
    "machine_id": 10,
}
# Signals whose mismatch is evidence of another machine (machine_id is not: a
# reinstalled OS gets a new one on the same hardware).
_MISMATCH_COUNTS = frozenset(WEIGHTS) - {"machine_id"}
# The credential's own device is kept unless its score falls below this: one changed
# part (a replaced network card) on a PC with few other signals scores about -5. It
# is also left when more signals contradict it than match (a cloned VM: another MAC
# and machine id, the same virtual disk serial).
STRONGLY_DIFFERENT_BELOW = -10
# Another known device is recognised only with positive, corroborated evidence.
RECOGNISED_ABOVE = 0


@dataclass(frozen=True)
class Signals:
    """Cleaned identity signals of one machine (None: unknown)."""

    machine_id: str | None = None
    smbios_uuid: str | None = None
    system_serial: str | None = None
    board_serial: str | None = None
    disk_serial: str | None = None
    macs: frozenset[str] = frozenset()
    hostname: str | None = None

    @classmethod
    def from_wire(cls, signals: Mapping[str, Any] | None) -> Signals:
        """Build from the wire's ``identity`` object, cleaning it again.

        The same normalisation as the agent's, so an older agent cannot bring
        placeholders in.
        """
        signals = signals or {}
        macs = (normalize_mac(mac) for mac in signals.get("macs") or [])
        return cls(
            machine_id=clean_hw(signals.get("machine_id")),
            smbios_uuid=clean_uuid(signals.get("smbios_uuid")),
            system_serial=clean_hw(signals.get("system_serial")),
            board_serial=clean_hw(signals.get("board_serial")),
            disk_serial=clean_hw(signals.get("disk_serial")),
            macs=frozenset(mac for mac in macs if mac),
            hostname=clean_text(signals.get("hostname")),
        )

    @classmethod
    def from_sections(cls, sections: Mapping[str, Any]) -> Signals:
        """Recompute from inventory sections, as the collector does when it has them."""
        return cls.from_wire(identity_signals(sections))

    @cached_property
    def values(self) -> dict[str, tuple[str, ...]]:
        """The comparable values of each weighted signal (an SMBIOS UUID in both byte
        orders), worked out once per object: a scan compares every known device.
        Tuples, not sets: parsed signals are kept for every device."""
        return {name: tuple(_values_of(self, name)) for name in WEIGHTS}

    def to_wire(self) -> dict[str, Any]:
        """The design.md JSON shape, for storage."""
        return {
            "machine_id": self.machine_id,
            "smbios_uuid": self.smbios_uuid,
            "system_serial": self.system_serial,
            "board_serial": self.board_serial,
            "disk_serial": self.disk_serial,
            "macs": sorted(self.macs),
            "hostname": self.hostname,
        }


@dataclass(frozen=True)
class KnownDevice:
    """A device the collector already has: its stored signals and school.

    ``conflict_reported`` is True once an identity_conflict was raised for this
    device's credential, so a cloned image of 24 PCs raises it once.
    """

    device_id: str
    school: str
    signals: Signals
    conflict_reported: bool = False


@dataclass(frozen=True)
class Comparison:
    """Score of incoming signals against one known device, with the reasons."""

    device_id: str
    score: int
    reasons: tuple[str, ...]
    hardware_differs: bool
    matched: int = 0
    contradicted: int = 0

    @property
    def corroborated(self) -> bool:
        """More signals agree than disagree (a differing machine id disagrees)."""
        return self.matched > self.contradicted


@dataclass(frozen=True)
class Decision:
    """Which device a report belongs to, and what the caller must do about it.

    ``device_id`` is None when a new device must be created. ``moved_from`` is the
    recognised device's old school when it now reports for ``school``.
    """

    outcome: str
    device_id: str | None
    school: str
    score: int | None
    reasons: tuple[str, ...]
    credential_device_id: str | None = None
    moved_from: str | None = None
    raise_conflict: bool = False

    def events(self, new_device_id: str | None = None) -> list[AssetEvent]:
        """Asset events of this decision (device_moved, identity_conflict).

        ``new_device_id`` is the device the caller created for a new machine.
        """
        events = []
        if self.moved_from is not None and self.device_id is not None:
            events.append(
                device_moved_event(self.device_id, self.moved_from, self.school)
            )
        if self.raise_conflict and self.credential_device_id is not None:
            events.append(
                identity_conflict_event(
                    self.credential_device_id, new_device_id, self.reasons
                )
            )
        return events


def identify(
    incoming: Signals,
    *,
    school: str,
    credential: KnownDevice | None = None,
    candidates: Sequence[KnownDevice] = (),
) -> Decision:
    """Decide which device ``incoming`` is.

    ``school`` is the school of the credential (report) or of the enrollment token;
    ``credential`` the credential's device (None at enrollment); ``candidates`` the
    district's known devices (the credential's device may be among them).
    """
    shared = shared_values([*candidates, *([credential] if credential else [])])
    own = compare(incoming, credential, shared) if credential else None
    if credential is not None and _still_the_credential_device(own):
        return _decision("same", credential, school, own, credential)

    own_id = credential.device_id if credential else None
    mine = _unshared(incoming, shared)
    others = [c for c in candidates if c.device_id != own_id and _holds_one_of(c, mine)]
    best = _best_match(incoming, others, shared, school)
    if best is not None:
        device, comparison = best
        return _decision("other_known", device, school, comparison, credential)
    return _new_machine(school, credential, own)


def _unshared(
    signals: Signals, shared: Mapping[str, frozenset[str]]
) -> dict[str, frozenset[str]]:
    """The values of ``signals`` that no two known devices share, by signal."""
    values = {
        n: frozenset(v) - shared.get(n, frozenset()) for n, v in signals.values.items()
    }
    return {name: value for name, value in values.items() if value}


def _holds_one_of(device: KnownDevice, values: Mapping[str, frozenset[str]]) -> bool:
    """True when the device holds one of ``values``. One that holds none matches on
    no signal, so it cannot be corroborated: comparing it is left out."""
    theirs = device.signals.values
    return any(not mine.isdisjoint(theirs[name]) for name, mine in values.items())


def _still_the_credential_device(own: Comparison) -> bool:
    """True unless the hardware clearly differs or contradictions outnumber matches."""
    return own.score >= STRONGLY_DIFFERENT_BELOW and own.contradicted <= own.matched


def compare(
    incoming: Signals,
    known: KnownDevice,
    shared: Mapping[str, frozenset[str]] | None = None,
) -> Comparison:
    """Score ``incoming`` against one known device."""
    shared = shared or {}
    verdicts = {
        name: _compare_signal(name, incoming, known.signals, shared) for name in WEIGHTS
    }
    matched = [name for name, (verdict, _) in verdicts.items() if verdict == "match"]
    differ = [name for name, (verdict, _) in verdicts.items() if verdict == "differ"]
    against = [name for name in differ if name in _MISMATCH_COUNTS]

    score = sum(WEIGHTS[n] for n in matched) - sum(WEIGHTS[n] for n in against)
    reasons = [f"{n} {detail}" for n, (v, detail) in verdicts.items() if v != "neutral"]
    hostname = _hostname_reason(incoming.hostname, known.signals.hostname)
    reasons += [hostname] if hostname else []
    return Comparison(
        known.device_id,
        score,
        tuple(reasons),
        hardware_differs=bool(against),
        matched=len(matched),
        contradicted=len(differ),
    )


def shared_values(devices: Iterable[KnownDevice]) -> dict[str, frozenset[str]]:
    """Signal values held by more than one known device, per signal name."""
    unique: dict[str, Signals] = {}
    for device in devices:  # a device listed twice counts once (its first listing)
        unique.setdefault(device.device_id, device.signals)
    return {
        name: _held_twice(signals.values[name] for signals in unique.values())
        for name in WEIGHTS
    }


def _held_twice(value_sets: Iterable[tuple[str, ...]]) -> frozenset[str]:
    counts = Counter(chain.from_iterable(value_sets))
    return frozenset(value for value, n in counts.items() if n > 1)


def uuid_forms(uuid: str) -> frozenset[str]:
    """An SMBIOS UUID and its twin with the first three groups byte-swapped."""
    groups = uuid.split("-")
    if len(groups) != 5:
        return frozenset({uuid})
    swapped = [_swap_bytes(g) for g in groups[:3]] + groups[3:]
    return frozenset({uuid, "-".join(swapped)})


def _swap_bytes(group: str) -> str:
    return "".join(reversed([group[i : i + 2] for i in range(0, len(group), 2)]))


def _values(signals: Signals, name: str) -> frozenset[str]:
    return frozenset(signals.values[name])


def _values_of(signals: Signals, name: str) -> frozenset[str]:
    if name == "macs":
        return signals.macs
    value = getattr(signals, name)
    if value is None:
        return frozenset()
    return uuid_forms(value) if name == "smbios_uuid" else frozenset({value})


def _compare_signal(
    name: str, incoming: Signals, known: Signals, shared: Mapping[str, frozenset[str]]
) -> tuple[str, str]:
    mine = _values(incoming, name) - shared.get(name, frozenset())
    theirs = _values(known, name) - shared.get(name, frozenset())
    if not mine or not theirs:
        return "neutral", ""

    if not mine & theirs:
        return "differ", _differ_detail(name, incoming, known)
    if name == "macs":
        return "match", f"matches ({', '.join(sorted(mine & theirs))})"
    if name == "smbios_uuid" and incoming.smbios_uuid != known.smbios_uuid:
        pair = f"{incoming.smbios_uuid} vs {known.smbios_uuid}"
        return "match", f"matches byte-swapped ({pair})"
    return "match", f"matches ({getattr(incoming, name)})"


def _differ_detail(name: str, incoming: Signals, known: Signals) -> str:
    if name == "macs":
        mine, theirs = sorted(incoming.macs), sorted(known.macs)
        return f"differ ({', '.join(mine)} vs {', '.join(theirs)})"
    return f"differs ({getattr(incoming, name)} vs {getattr(known, name)})"


def _hostname_reason(mine: str | None, theirs: str | None) -> str | None:
    if mine == theirs:
        return f"hostname {mine} (not used for identity)" if mine else None
    return f"hostname {theirs} -> {mine} (not used for identity)"


def _best_match(
    incoming: Signals,
    candidates: Sequence[KnownDevice],
    shared: Mapping[str, frozenset[str]],
    school: str,
) -> tuple[KnownDevice, Comparison] | None:
    """The highest-scoring corroborated candidate above RECOGNISED_ABOVE; ties go
    to ``school``."""
    scored = [(compare(incoming, c, shared), c) for c in candidates]
    scored = [
        (comp, c)
        for comp, c in scored
        if comp.score > RECOGNISED_ABOVE and comp.corroborated
    ]
    if not scored:
        return None
    comparison, device = max(
        scored, key=lambda pair: (pair[0].score, pair[1].school == school)
    )
    return device, comparison


def _decision(
    outcome: str,
    device: KnownDevice,
    school: str,
    comparison: Comparison,
    credential: KnownDevice | None,
) -> Decision:
    moved_from = device.school if device.school != school else None
    decision = Decision(
        outcome=outcome,
        device_id=device.device_id,
        school=school,
        score=comparison.score,
        reasons=comparison.reasons,
        credential_device_id=credential.device_id if credential else None,
        moved_from=moved_from,
    )
    if outcome != "same" or moved_from:
        logger.info(
            "identity: %s device %s (score %d, school %s, moved from %s)",
            outcome,
            device.device_id,
            comparison.score,
            school,
            moved_from,
        )
    return decision


def _new_machine(
    school: str, credential: KnownDevice | None, own: Comparison | None
) -> Decision:
    if credential is None or own is None:
        logger.info("identity: new machine for school %s", school)
        return Decision("new_machine", None, school, None, ())

    raise_conflict = not credential.conflict_reported
    logger.info(
        "identity: credential of %s used by another machine (score %d, conflict %s)",
        credential.device_id,
        own.score,
        "raised" if raise_conflict else "known",
    )
    return Decision(
        outcome="new_machine_on_shared_credential",
        device_id=None,
        school=school,
        score=own.score,
        reasons=own.reasons,
        credential_device_id=credential.device_id,
        raise_conflict=raise_conflict,
    )
