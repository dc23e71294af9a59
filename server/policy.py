"""The education office's promises as verdicts: connectivity class, connected school,
equipped lab.

Pure functions over plain data; every threshold comes from a ``Policy`` (SPEC.md
defaults, or the collector's configuration through ``Policy.from_config``) and every
verdict says which values were in force and why, in English and Vietnamese.

Decisions where SPEC.md leaves room:

- Memory: a lab PC meets "4 GiB RAM" when the installed capacity (sum of modules) is
  at least 4 GiB; when the modules are unknown, when the usable memory the OS sees is
  at least 4 GiB minus ``usable_memory_tolerance_bytes`` (512 MiB by default: a 4 GiB
  PC shows 3.2-3.9 GiB after firmware and integrated graphics take their share).
- System disk: the fixed physical disk with the lowest index (the disk Windows and
  Linux boot from on lab PCs), else the volume marked ``system``; 64 GB is decimal.
- A value that is unknown fails its check with the reason saying "unknown", never a
  pass and never a zero.
- A lab PC not seen for 7 days fails ``not_seen_7d`` (and any specification check its
  last inventory fails), not ``no_internet``.
- Preschools have no lab figure; their target is "computers and Internet": at least
  ``preschool_min_devices`` device (any role) seen in 7 days that reached the Internet.
- ``has_informatics`` unknown counts as teaching Informatics (the 2018 curriculum
  teaches it from grade 3 of primary on); only an explicit false removes the target.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schoolmon.agent.inventory.normalize import clean_text, section_data

logger = logging.getLogger(__name__)

GIB = 1024**3
MIB = 1024**2
CLASSES = ("good", "moderate", "poor", "unknown")
LAB_LEVELS = ("primary", "lower_secondary")
NONCOMPLIANT_REASONS = ("cpu", "memory", "disk", "not_seen_7d", "no_internet")


@dataclass(frozen=True)
class Text:
    """A sentence in English and Vietnamese."""

    en: str
    vi: str

    def in_lang(self, lang: str) -> str:
        """The sentence in ``lang`` (``en`` or ``vi``)."""
        if lang not in ("en", "vi"):
            raise ValueError(f"language {lang!r} is unknown; accepted: vi, en")
        return self.vi if lang == "vi" else self.en


@dataclass(frozen=True)
class Policy:
    """Thresholds of the headline figures, SPEC.md defaults; base units."""

    window: timedelta = timedelta(days=7)
    good_download_bytes_per_second: float = 20e6 / 8
    good_download_bytes_per_second_per_student: float = 50e3 / 8
    per_student_above_students: int = 400
    moderate_download_bytes_per_second: float = 1e6 / 8
    connected_uptime_ratio: float = 0.95
    min_logical_cpus: int = 2
    min_memory_bytes: int = 4 * GIB
    usable_memory_tolerance_bytes: int = 512 * MIB
    min_system_disk_bytes: int = 64 * 10**9
    lab_pcs_required: Mapping[str, int] = field(
        default_factory=lambda: {"primary": 18, "lower_secondary": 23}
    )
    preschool_min_devices: int = 1

    @classmethod
    def from_config(cls, config: Any) -> Policy:
        """Build from ``schoolmon.server.config.Config`` (its policy and lab parts)."""
        policy, lab = config.policy, config.lab
        return cls(
            window=policy.uptime_window,
            good_download_bytes_per_second=policy.good_download_bytes_per_second,
            good_download_bytes_per_second_per_student=(
                policy.good_download_bytes_per_second_per_student
            ),
            per_student_above_students=policy.per_student_above_students,
            moderate_download_bytes_per_second=policy.moderate_download_bytes_per_second,
            connected_uptime_ratio=policy.connected_uptime_ratio,
            min_logical_cpus=lab.min_logical_cpus,
            min_memory_bytes=lab.min_memory_bytes,
            min_system_disk_bytes=lab.min_system_disk_bytes,
            lab_pcs_required=dict(lab.pcs_required),
        )

    def good_threshold_for(self, students: int | None) -> float:
        """Download rate (bytes/s) a school of ``students`` needs for class good."""
        base = self.good_download_bytes_per_second
        if students is None or students <= self.per_student_above_students:
            return base
        return max(base, students * self.good_download_bytes_per_second_per_student)

    def thresholds(self) -> dict[str, float]:
        """Every threshold in force by name (``schoolmon_policy_threshold{name}``)."""
        values = {
            "window_seconds": self.window.total_seconds(),
            "good_download_bytes_per_second": self.good_download_bytes_per_second,
            "good_download_bytes_per_second_per_student": (
                self.good_download_bytes_per_second_per_student
            ),
            "per_student_above_students": self.per_student_above_students,
            "moderate_download_bytes_per_second": (
                self.moderate_download_bytes_per_second
            ),
            "uptime_ratio": self.connected_uptime_ratio,
            "min_logical_cpus": self.min_logical_cpus,
            "min_memory_bytes": self.min_memory_bytes,
            "usable_memory_tolerance_bytes": self.usable_memory_tolerance_bytes,
            "min_system_disk_bytes": self.min_system_disk_bytes,
            "preschool_min_devices": self.preschool_min_devices,
        }
        for level, count in sorted(self.lab_pcs_required.items()):
            values[f"lab_pcs_required_{level}"] = count
        return {name: float(value) for name, value in values.items()}


# Connectivity class ---------------------------------------------------------------


@dataclass(frozen=True)
class SpeedTest:
    """One stored speed test: the fields the class needs (wire names)."""

    at: datetime
    ok: bool
    download_bytes_per_second: float | None
    upload_bytes_per_second: float | None = None
    latency_seconds: float | None = None
    in_session: bool = True
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectivityVerdict:
    """The school's class from its valid session speed tests of the window."""

    connectivity_class: str
    median_download_bytes_per_second: float | None
    median_upload_bytes_per_second: float | None
    median_latency_seconds: float | None
    valid_tests: int
    excluded: Mapping[str, int]
    good_threshold_bytes_per_second: float
    moderate_threshold_bytes_per_second: float


def connectivity(
    tests: Sequence[SpeedTest],
    *,
    now: datetime,
    students: int | None = None,
    policy: Policy | None = None,
) -> ConnectivityVerdict:
    """Classify by the median download of valid session tests in the window.

    Failed, flagged, out-of-session and out-of-window tests are left out and counted
    under ``excluded`` by reason.
    """
    policy = policy or Policy()
    valid, excluded = _valid_tests(tests, now - policy.window, now)
    good = policy.good_threshold_for(students)
    moderate = policy.moderate_download_bytes_per_second
    download = _median(t.download_bytes_per_second for t in valid)
    return ConnectivityVerdict(
        connectivity_class=_classify(download, good, moderate),
        median_download_bytes_per_second=download,
        median_upload_bytes_per_second=_median(
            t.upload_bytes_per_second for t in valid
        ),
        median_latency_seconds=_median(t.latency_seconds for t in valid),
        valid_tests=len(valid),
        excluded=excluded,
        good_threshold_bytes_per_second=good,
        moderate_threshold_bytes_per_second=moderate,
    )


def _valid_tests(
    tests: Sequence[SpeedTest], since: datetime, until: datetime
) -> tuple[list[SpeedTest], dict[str, int]]:
    valid: list[SpeedTest] = []
    excluded = {"failed": 0, "flagged": 0, "outside_session": 0, "outside_window": 0}
    for test in tests:
        if not test.ok or test.download_bytes_per_second is None:
            excluded["failed"] += 1
        elif test.flags:
            excluded["flagged"] += 1
        elif not test.in_session:
            excluded["outside_session"] += 1
        elif not since <= test.at <= until:
            excluded["outside_window"] += 1
        else:
            valid.append(test)
    return valid, excluded


def _median(values: Any) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def _classify(download: float | None, good: float, moderate: float) -> str:
    if download is None:
        return "unknown"
    if download >= good:
        return "good"
    return "moderate" if download >= moderate else "poor"


# Connected school -------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectedVerdict:
    """Whether the school counts as connected, and why."""

    connected: bool
    why: Text
    uptime_ratio: float | None
    connectivity_class: str
    uptime_threshold: float


_CLASS_VI = {
    "good": "tốt",
    "moderate": "trung bình",
    "poor": "kém",
    "unknown": "chưa rõ",
}


def connected(
    uptime_ratio: float | None, connectivity_class: str, policy: Policy | None = None
) -> ConnectedVerdict:
    """Connected: uptime at least the threshold and class good or moderate."""
    if connectivity_class not in CLASSES:
        raise ValueError(
            f"connectivity class {connectivity_class!r} is unknown; "
            f"accepted: {', '.join(CLASSES)}"
        )
    policy = policy or Policy()
    limit = policy.connected_uptime_ratio
    uptime_ok = uptime_ratio is not None and uptime_ratio >= limit
    class_ok = connectivity_class in ("good", "moderate")
    parts = [_uptime_text(uptime_ratio, limit), _class_text(connectivity_class)]
    why = Text("; ".join(p.en for p in parts), "; ".join(p.vi for p in parts))
    return ConnectedVerdict(
        uptime_ok and class_ok, why, uptime_ratio, connectivity_class, limit
    )


def _uptime_text(ratio: float | None, limit: float) -> Text:
    if ratio is None:
        return Text(
            "uptime unknown (no session time measured)",
            "chưa đo được thời gian có Internet",
        )
    value_en, limit_en = _percent(ratio), _percent(limit)
    value_vi, limit_vi = _percent(ratio, ","), _percent(limit, ",")
    if ratio >= limit:
        return Text(
            f"uptime {value_en} >= {limit_en}",
            f"thời gian có Internet {value_vi} ≥ {limit_vi}",
        )
    return Text(
        f"uptime {value_en} below {limit_en}",
        f"thời gian có Internet {value_vi} dưới {limit_vi}",
    )


def _class_text(connectivity_class: str) -> Text:
    if connectivity_class == "unknown":
        return Text(
            "no valid speed test in 7 days",
            "không có kết quả đo tốc độ hợp lệ trong 7 ngày",
        )
    return Text(
        f"connectivity class {connectivity_class}",
        f"chất lượng kết nối {_CLASS_VI[connectivity_class]}",
    )


def _percent(ratio: float, decimal_mark: str = ".") -> str:
    return f"{ratio * 100:.1f} %".replace(".", decimal_mark)


# Equipped lab -------------------------------------------------------------------------


@dataclass(frozen=True)
class School:
    """What the registry says about a school that the lab figure needs."""

    code: str
    level: str
    has_informatics: bool | None = None
    lab_pcs_required: int | None = None
    students: int | None = None


@dataclass(frozen=True)
class DeviceFacts:
    """What the lab figure needs to know about one device (None: unknown)."""

    device_id: str
    role: str
    last_seen_at: datetime | None
    last_internet_at: datetime | None
    logical_cpus: int | None = None
    installed_memory_bytes: int | None = None
    usable_memory_bytes: int | None = None
    system_disk_bytes: int | None = None
    os_name: str | None = None
    os_vendor_supported: bool | None = None

    @classmethod
    def from_sections(
        cls,
        device_id: str,
        role: str,
        sections: Mapping[str, Any],
        *,
        last_seen_at: datetime | None,
        last_internet_at: datetime | None,
    ) -> DeviceFacts:
        """Build from stored inventory sections (envelopes or bare data)."""
        cpu, memory = section_data(sections, "cpu"), section_data(sections, "memory")
        os_data = section_data(sections, "os")
        return cls(
            device_id=device_id,
            role=role,
            last_seen_at=last_seen_at,
            last_internet_at=last_internet_at,
            logical_cpus=cpu.get("logical_cores"),
            installed_memory_bytes=memory.get("installed_bytes"),
            usable_memory_bytes=memory.get("usable_bytes"),
            system_disk_bytes=system_disk_bytes(section_data(sections, "disks")),
            os_name=_os_name(os_data),
            os_vendor_supported=os_data.get("vendor_supported"),
        )


def system_disk_bytes(disks: Mapping[str, Any]) -> int | None:
    """Size of the system disk: lowest-index fixed disk, else the system volume."""
    fixed = [d for d in disks.get("physical") or [] if not d.get("removable")]
    fixed = [d for d in fixed if d.get("size_bytes")]
    if fixed:
        first = min(fixed, key=lambda d: (d.get("index") is None, d.get("index") or 0))
        return int(first["size_bytes"])
    for volume in disks.get("volumes") or []:
        if volume.get("system") and volume.get("size_bytes"):
            return int(volume["size_bytes"])
    return None


def _os_name(os_data: Mapping[str, Any]) -> str | None:
    name, version = clean_text(os_data.get("name")), clean_text(os_data.get("version"))
    return " ".join(p for p in (name, version) if p) or None


@dataclass(frozen=True)
class Failure:
    """One failed check of a device: the metric reason, the value and the limit."""

    reason: str
    value: Any
    limit: Any


@dataclass(frozen=True)
class DeviceResult:
    """A lab device against the minimum specification."""

    device_id: str
    compliant: bool
    failures: tuple[Failure, ...]
    unsupported_os: bool


@dataclass(frozen=True)
class LabVerdict:
    """The equipped-lab figure of one school.

    ``equipped`` is None when the school has no target. ``noncompliant`` counts lab
    devices per metric reason (a device can fail several).
    """

    school: str
    equipped: bool | None
    compliant: int
    required: int | None
    why: Text
    reasons: tuple[Text, ...]
    noncompliant: Mapping[str, int]
    devices: tuple[DeviceResult, ...]
    unsupported_os: int
    pcs_seen: int
    pcs_per_student: float | None
    thresholds: Mapping[str, float]


def lab_verdict(
    school: School,
    devices: Sequence[DeviceFacts],
    *,
    now: datetime,
    policy: Policy | None = None,
) -> LabVerdict:
    """Judge the school's lab from all its devices (any role)."""
    policy = policy or Policy()
    seen = [d for d in devices if _within(d.last_seen_at, now, policy)]
    common = {
        "unsupported_os": sum(1 for d in seen if d.os_vendor_supported is False),
        "pcs_seen": len(seen),
        "pcs_per_student": len(seen) / school.students if school.students else None,
    }
    if school.level == "preschool":
        return _preschool_verdict(school, seen, now, policy, common)

    required = _required(school, policy)
    if required is None:
        return _no_target(school, policy, common)
    lab = [d for d in devices if d.role == "lab"]
    results = tuple(_check_device(d, now, policy) for d in lab)
    return _lab_target_verdict(school, required, results, policy, common)


def _within(instant: datetime | None, now: datetime, policy: Policy) -> bool:
    return instant is not None and now - policy.window <= instant <= now


def _required(school: School, policy: Policy) -> int | None:
    if school.level not in LAB_LEVELS or school.has_informatics is False:
        return None
    if school.lab_pcs_required is not None:
        return school.lab_pcs_required
    return policy.lab_pcs_required.get(school.level)


def _check_device(device: DeviceFacts, now: datetime, policy: Policy) -> DeviceResult:
    failures = [f for f in _spec_failures(device, policy) if f is not None]
    if not _within(device.last_seen_at, now, policy):
        failures.append(Failure("not_seen_7d", device.last_seen_at, policy.window))
    elif not _within(device.last_internet_at, now, policy):
        failures.append(Failure("no_internet", device.last_internet_at, policy.window))
    return DeviceResult(
        device.device_id,
        not failures,
        tuple(failures),
        device.os_vendor_supported is False,
    )


def _spec_failures(device: DeviceFacts, policy: Policy) -> list[Failure | None]:
    return [
        _at_least("cpu", device.logical_cpus, policy.min_logical_cpus),
        _memory_failure(device, policy),
        _at_least("disk", device.system_disk_bytes, policy.min_system_disk_bytes),
    ]


def _at_least(reason: str, value: int | None, limit: int) -> Failure | None:
    return (
        None if value is not None and value >= limit else Failure(reason, value, limit)
    )


def _memory_failure(device: DeviceFacts, policy: Policy) -> Failure | None:
    if device.installed_memory_bytes is not None:
        value, limit = device.installed_memory_bytes, policy.min_memory_bytes
    elif device.usable_memory_bytes is not None:
        value = device.usable_memory_bytes
        limit = policy.min_memory_bytes - policy.usable_memory_tolerance_bytes
    else:
        return Failure("memory", None, policy.min_memory_bytes)
    return None if value >= limit else Failure("memory", value, limit)


def _lab_target_verdict(
    school: School,
    required: int,
    results: tuple[DeviceResult, ...],
    policy: Policy,
    common: Mapping[str, Any],
) -> LabVerdict:
    compliant = sum(1 for r in results if r.compliant)
    failures = [f for r in results for f in r.failures]
    noncompliant = {
        reason: sum(1 for r in results if any(f.reason == reason for f in r.failures))
        for reason in NONCOMPLIANT_REASONS
    }
    reasons = _failure_texts(failures, policy) + _unsupported_texts(results)
    head = Text(
        f"{compliant} of {required} required lab PCs compliant",
        f"{compliant}/{required} máy phòng tin học theo yêu cầu đạt chuẩn",
    )
    verdict = LabVerdict(
        school=school.code,
        equipped=compliant >= required,
        compliant=compliant,
        required=required,
        why=_join(head, reasons),
        reasons=tuple(reasons),
        noncompliant=noncompliant,
        devices=results,
        thresholds=_lab_thresholds(policy, required),
        **common,
    )
    logger.debug("lab verdict %s: %s", school.code, verdict.why.en)
    return verdict


def _join(head: Text, reasons: Sequence[Text]) -> Text:
    if not reasons:
        return head
    return Text(
        head.en + ": " + ", ".join(r.en for r in reasons),
        head.vi + ": " + ", ".join(r.vi for r in reasons),
    )


# Reason sentences, in the order of NONCOMPLIANT_REASONS; "unknown" values separate.
def _failure_texts(failures: Sequence[Failure], policy: Policy) -> list[Text]:
    counts: dict[tuple[str, bool], int] = {}
    for failure in failures:
        key = (
            failure.reason,
            failure.value is None and failure.reason in ("cpu", "memory", "disk"),
        )
        counts[key] = counts.get(key, 0) + 1
    order = [(r, unknown) for r in NONCOMPLIANT_REASONS for unknown in (False, True)]
    return [
        _reason_text(r, unknown, counts[(r, unknown)], policy)
        for r, unknown in order
        if (r, unknown) in counts
    ]


_REASON_TEXTS = {
    "cpu": (
        "{n} {have} fewer than {cpus} logical CPUs",
        "{n} máy có dưới {cpus} CPU logic",
    ),
    "memory": ("{n} {have} under {memory} RAM", "{n} máy có RAM dưới {memory}"),
    "disk": (
        "{n} {have} a system disk under {disk}",
        "{n} máy có ổ đĩa hệ thống dưới {disk}",
    ),
    "not_seen_7d": (
        "{n} not seen for {days} days",
        "{n} máy không hoạt động trong {days} ngày",
    ),
    "no_internet": (
        "{n} did not reach the Internet for {days} days",
        "{n} máy không vào được Internet trong {days} ngày",
    ),
}
_UNKNOWN_TEXTS = {
    "cpu": ("{n} with an unknown CPU count", "{n} máy chưa rõ số CPU"),
    "memory": ("{n} with unknown RAM", "{n} máy chưa rõ dung lượng RAM"),
    "disk": (
        "{n} with an unknown system disk size",
        "{n} máy chưa rõ dung lượng ổ đĩa hệ thống",
    ),
}


def _reason_text(reason: str, unknown: bool, n: int, policy: Policy) -> Text:
    en, vi = (_UNKNOWN_TEXTS if unknown else _REASON_TEXTS)[reason]
    values = {
        "n": n,
        "have": "has" if n == 1 else "have",
        "cpus": policy.min_logical_cpus,
        "memory": f"{policy.min_memory_bytes / GIB:g} GiB",
        "disk": f"{policy.min_system_disk_bytes / 1e9:g} GB",
        "days": f"{policy.window.total_seconds() / 86400:g}",
    }
    return Text(en.format(**values), vi.format(**values))


def _unsupported_texts(results: Sequence[DeviceResult]) -> list[Text]:
    n = sum(1 for r in results if r.unsupported_os)
    if not n:
        return []
    return [
        Text(
            f"{n} on an OS no longer supported by its vendor (not counted against)",
            f"{n} máy dùng hệ điều hành đã hết hỗ trợ (không tính là không đạt)",
        )
    ]


def _lab_thresholds(policy: Policy, required: int) -> dict[str, float]:
    return {
        "lab_pcs_required": float(required),
        "min_logical_cpus": float(policy.min_logical_cpus),
        "min_memory_bytes": float(policy.min_memory_bytes),
        "usable_memory_tolerance_bytes": float(policy.usable_memory_tolerance_bytes),
        "min_system_disk_bytes": float(policy.min_system_disk_bytes),
        "window_seconds": policy.window.total_seconds(),
    }


def _no_target(school: School, policy: Policy, common: Mapping[str, Any]) -> LabVerdict:
    if school.level in LAB_LEVELS:
        why = Text(
            "No equipped-lab target: the school does not teach Informatics",
            "Không có chỉ tiêu phòng tin học: trường không dạy môn Tin học",
        )
    else:
        why = Text(
            f"No equipped-lab target for level {school.level}",
            f"Không có chỉ tiêu phòng tin học cho cấp học {school.level}",
        )
    return LabVerdict(
        school.code,
        None,
        0,
        None,
        why,
        (),
        dict.fromkeys(NONCOMPLIANT_REASONS, 0),
        (),
        thresholds={"window_seconds": policy.window.total_seconds()},
        **common,
    )


def _preschool_verdict(
    school: School,
    seen: Sequence[DeviceFacts],
    now: datetime,
    policy: Policy,
    common: Mapping[str, Any],
) -> LabVerdict:
    online = sum(1 for d in seen if _within(d.last_internet_at, now, policy))
    required = policy.preschool_min_devices
    days = f"{policy.window.total_seconds() / 86400:g}"
    why = Text(
        f"{online} of {required} required PCs seen with Internet in {days} days "
        "(preschool: computers and Internet)",
        f"{online}/{required} máy tính theo yêu cầu hoạt động và có Internet trong "
        f"{days} ngày (mầm non: có máy tính và Internet)",
    )
    return LabVerdict(
        school.code,
        online >= required,
        online,
        required,
        why,
        (),
        dict.fromkeys(NONCOMPLIANT_REASONS, 0),
        (),
        thresholds={
            "preschool_min_devices": float(required),
            "window_seconds": policy.window.total_seconds(),
        },
        **common,
    )
