"""Headline figures per school, computed from stored data at a given instant.

This covers what the stored reports tell directly: registry facts, session, last
report, devices by role and state, the latest Internet verdict, offline now.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schoolmon.server.auth import ROLES
from schoolmon.server.clock import to_wire
from schoolmon.server.config import Config
from schoolmon.server.sessions import in_session
from schoolmon.server.storage import Storage

DEVICE_STATES = ("online", "seen_7d")


@dataclass(frozen=True)
class SchoolFigures:
    """What the collector knows about one registered school at one instant."""

    info: dict[str, Any]
    in_session: bool
    last_seen: datetime | None
    devices: dict[tuple[str, str], int]
    internet_up: bool | None
    offline_now: bool

    @property
    def code(self) -> str:
        return self.info["code"]

    def as_json(self) -> dict[str, Any]:
        """The figures as the API shows them."""
        devices = {role: {} for role in ROLES}
        for (role, state), count in self.devices.items():
            devices[role][state] = count
        return {
            "in_session": self.in_session,
            "last_seen": to_wire(self.last_seen) if self.last_seen else None,
            "offline_now": self.offline_now,
            "internet_up": self.internet_up,
            "devices": devices,
        }


def school_figures(
    storage: Storage, config: Config, now: datetime
) -> dict[str, SchoolFigures]:
    """Figures of every active school, by code."""
    devices_by_school: dict[str, list[dict[str, Any]]] = {}
    for device in storage.devices():
        devices_by_school.setdefault(device["school"], []).append(device)
    return {
        school["code"]: figures_for(
            school, devices_by_school.get(school["code"], []), storage, config, now
        )
        for school in storage.schools()
    }


def figures_for(
    school: dict[str, Any],
    devices: list[dict[str, Any]],
    storage: Storage,
    config: Config,
    now: datetime,
) -> SchoolFigures:
    """Figures of one school from its row and its devices."""
    session = in_session(config.sessions, now, school.get("timezone"))
    seen = [d["last_seen_at"] for d in devices if d["last_seen_at"] is not None]
    last_seen = max(seen, default=None)
    silent = last_seen is None or now - last_seen >= config.policy.offline_after
    cycle = storage.latest_cycle(school["code"])

    return SchoolFigures(
        info=school,
        in_session=session,
        last_seen=last_seen,
        devices=device_counts(devices, config, now),
        internet_up=cycle_reached_internet(cycle) if cycle else None,
        offline_now=session and silent,
    )


def device_counts(
    devices: Iterable[dict[str, Any]], config: Config, now: datetime
) -> dict[tuple[str, str], int]:
    """Devices per (role, state) for every role and state, zeros included.

    ``online``: reported within the offline window; ``seen_7d``: within the uptime
    window (7 days by default).
    """
    counts = {(role, state): 0 for role in ROLES for state in DEVICE_STATES}
    windows = {
        "online": config.policy.offline_after,
        "seen_7d": config.policy.uptime_window,
    }
    for device in devices:
        seen = device["last_seen_at"]
        for state, window in windows.items():
            if seen is not None and now - seen < window and device["role"] in ROLES:
                counts[(device["role"], state)] += 1
    return counts


def cycle_reached_internet(samples: Iterable[dict[str, Any]]) -> bool:
    """True when a probe cycle reached the Internet (design.md).

    Any ok ``https`` sample of scope ``internet`` counts; a cycle that probed no
    internet-scope target is judged by its ``collector`` samples instead.
    """
    samples = list(samples)
    internet = [s for s in samples if s["scope"] == "internet"]
    judged = internet or [s for s in samples if s["scope"] == "collector"]
    return any(s["kind"] == "https" and s["ok"] for s in judged)
