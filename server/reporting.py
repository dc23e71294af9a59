"""The periodic IT report a district sends to the province.

``build_report`` turns plain per-school rows into a report with district totals for
the two promises (share of schools connected; share of schools with an equipped-lab
target that are equipped) and the thresholds in force; ``render`` writes it as CSV,
XLSX or JSON, with Vietnamese or English headers and labels.

- CSV is UTF-8 with a BOM, one header row, CRLF line ends. For ``vi`` it is written
  the way Excel on a Vietnamese Windows reads a CSV: semicolon separators and a
  decimal comma (that locale's list separator and decimal symbol); for ``en``, commas
  and a decimal point. CSV holds the school rows only; totals and thresholds are in
  the XLSX and JSON forms.
- XLSX keeps real types: numbers as numbers, ratios as fractions with a percent
  format, dates as dates (local time of the report's time zone), yes/no as text. A
  "Schools" sheet (frozen header, filter), a "Totals" sheet and a "Parameters" sheet
  (period and thresholds).
- JSON has the same content in base units (bytes/s, seconds, ratios), English keys,
  and the human texts in the chosen language.

Speeds are shown in Mbit/s and latency in ms in CSV and XLSX: the units the
education office's targets are written in.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from schoolmon.server.policy import (
    LAB_LEVELS,
    ConnectedVerdict,
    ConnectivityVerdict,
    LabVerdict,
    Policy,
    Text,
)

logger = logging.getLogger(__name__)

FORMATS = ("csv", "xlsx", "json")
LANGS = ("vi", "en")
ROLES = ("lab", "office", "teacher", "other")
LEVEL_LABELS = {
    "preschool": Text("Preschool", "Mầm non"),
    "primary": Text("Primary", "Tiểu học"),
    "lower_secondary": Text("Lower secondary", "Trung học cơ sở"),
    "upper_secondary": Text("Upper secondary", "Trung học phổ thông"),
    "other": Text("Other", "Khác"),
}
CLASS_LABELS = {
    "good": Text("Good", "Tốt"),
    "moderate": Text("Moderate", "Trung bình"),
    "poor": Text("Poor", "Kém"),
    "unknown": Text("Unknown", "Chưa rõ"),
}
YES, NO, NOT_APPLICABLE = (
    Text("Yes", "Có"),
    Text("No", "Không"),
    Text("n/a", "Không áp dụng"),
)
_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass(frozen=True)
class SchoolRow:
    """One school's line of the report (base units; None: unknown)."""

    code: str
    name: str
    level: str
    commune: str
    connected: bool
    connected_why: Text
    uptime_ratio: float | None
    download_bytes_per_second: float | None
    upload_bytes_per_second: float | None
    latency_seconds: float | None
    connectivity_class: str
    lab_pcs_compliant: int | None
    lab_pcs_required: int | None
    lab_equipped: bool | None
    lab_equipped_why: Text
    pcs_by_role: Mapping[str, int]
    devices_unsupported_os: int
    asset_events: int
    last_seen_at: datetime | None

    @classmethod
    def from_verdicts(
        cls,
        *,
        code: str,
        name: str,
        level: str,
        commune: str,
        connectivity: ConnectivityVerdict,
        connected: ConnectedVerdict,
        lab: LabVerdict,
        pcs_by_role: Mapping[str, int],
        asset_events: int,
        last_seen_at: datetime | None,
    ) -> SchoolRow:
        """Assemble a row from the policy verdicts of one school."""
        return cls(
            code=code,
            name=name,
            level=level,
            commune=commune,
            connected=connected.connected,
            connected_why=connected.why,
            uptime_ratio=connected.uptime_ratio,
            download_bytes_per_second=connectivity.median_download_bytes_per_second,
            upload_bytes_per_second=connectivity.median_upload_bytes_per_second,
            latency_seconds=connectivity.median_latency_seconds,
            connectivity_class=connectivity.connectivity_class,
            lab_pcs_compliant=lab.compliant if lab.required is not None else None,
            lab_pcs_required=lab.required,
            lab_equipped=lab.equipped,
            lab_equipped_why=lab.why,
            pcs_by_role={role: pcs_by_role.get(role, 0) for role in ROLES},
            devices_unsupported_os=lab.unsupported_os,
            asset_events=asset_events,
            last_seen_at=last_seen_at,
        )


@dataclass(frozen=True)
class Totals:
    """Counts for the two promises over one scope (``all`` or a level).

    For ``all``, the lab target counts primary and lower-secondary schools that teach
    Informatics (the province's promise); a level's line counts that level's targets
    (a preschool's is "computers and Internet").
    """

    scope: str
    schools: int
    connected: int
    connected_share: float | None
    with_lab_target: int
    equipped: int
    equipped_share: float | None


@dataclass(frozen=True)
class Report:
    """Everything a rendered report holds."""

    period_start: datetime
    period_end: datetime
    generated_at: datetime
    timezone: str
    rows: tuple[SchoolRow, ...]
    totals: tuple[Totals, ...]
    thresholds: Mapping[str, float]


def build_report(
    rows: Sequence[SchoolRow],
    *,
    period_start: datetime,
    period_end: datetime,
    generated_at: datetime,
    policy: Policy,
    timezone: str = "Asia/Ho_Chi_Minh",
) -> Report:
    """Order rows by school code and add district totals and thresholds."""
    ordered = tuple(sorted(rows, key=lambda row: row.code))
    levels = [level for level in LEVEL_LABELS if any(r.level == level for r in ordered)]
    totals = [_totals("all", ordered, lambda r: r.level in LAB_LEVELS)]
    for level in levels:
        same = [r for r in ordered if r.level == level]
        totals.append(_totals(level, same, lambda r: True))
    return Report(
        period_start=period_start,
        period_end=period_end,
        generated_at=generated_at,
        timezone=timezone,
        rows=ordered,
        totals=tuple(totals),
        thresholds=policy.thresholds(),
    )


def _totals(
    scope: str, rows: Sequence[SchoolRow], counts_lab: Callable[[SchoolRow], bool]
) -> Totals:
    connected = sum(1 for r in rows if r.connected)
    targets = [r for r in rows if counts_lab(r) and r.lab_equipped is not None]
    equipped = sum(1 for r in targets if r.lab_equipped)
    return Totals(
        scope=scope,
        schools=len(rows),
        connected=connected,
        connected_share=connected / len(rows) if rows else None,
        with_lab_target=len(targets),
        equipped=equipped,
        equipped_share=equipped / len(targets) if targets else None,
    )


# Columns ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column: its headers, how to read a value and how to show it.

    ``kind``: text, percent, mbps, ms, int, datetime.
    """

    key: str
    header: Text
    kind: str
    value: Callable[[Any, str], Any]


def _text(attr: str) -> Callable[[Any, str], Any]:
    return lambda row, lang: getattr(row, attr)


def _label(attr: str, labels: Mapping[str, Text]) -> Callable[[Any, str], Any]:
    def value(row: Any, lang: str) -> str:
        raw = getattr(row, attr)
        return labels[raw].in_lang(lang) if raw in labels else raw

    return value


def _yes_no(attr: str) -> Callable[[Any, str], Any]:
    def value(row: Any, lang: str) -> str:
        raw = getattr(row, attr)
        return (NOT_APPLICABLE if raw is None else YES if raw else NO).in_lang(lang)

    return value


def _why(attr: str) -> Callable[[Any, str], Any]:
    return lambda row, lang: getattr(row, attr).in_lang(lang)


def _role(role: str) -> Callable[[Any, str], Any]:
    return lambda row, lang: row.pcs_by_role.get(role, 0)


SCHOOL_COLUMNS = (
    Column("code", Text("School code", "Mã trường"), "text", _text("code")),
    Column("name", Text("School name", "Tên trường"), "text", _text("name")),
    Column("level", Text("Level", "Cấp học"), "text", _label("level", LEVEL_LABELS)),
    Column("commune", Text("Commune", "Xã/phường"), "text", _text("commune")),
    Column("connected", Text("Connected", "Đạt kết nối"), "text", _yes_no("connected")),
    Column(
        "connected_why",
        Text("Connected: why", "Lý do (kết nối)"),
        "text",
        _why("connected_why"),
    ),
    Column(
        "uptime_ratio",
        Text("Internet uptime", "Tỉ lệ thời gian có Internet"),
        "percent",
        _text("uptime_ratio"),
    ),
    Column(
        "download",
        Text("Median download (Mbit/s)", "Tốc độ tải xuống trung vị (Mbit/s)"),
        "mbps",
        _text("download_bytes_per_second"),
    ),
    Column(
        "upload",
        Text("Median upload (Mbit/s)", "Tốc độ tải lên trung vị (Mbit/s)"),
        "mbps",
        _text("upload_bytes_per_second"),
    ),
    Column(
        "latency",
        Text("Median latency (ms)", "Độ trễ trung vị (ms)"),
        "ms",
        _text("latency_seconds"),
    ),
    Column(
        "connectivity_class",
        Text("Connectivity class", "Chất lượng kết nối"),
        "text",
        _label("connectivity_class", CLASS_LABELS),
    ),
    Column(
        "lab_pcs_compliant",
        Text("Compliant lab PCs", "Số máy phòng tin học đạt chuẩn"),
        "int",
        _text("lab_pcs_compliant"),
    ),
    Column(
        "lab_pcs_required",
        Text("Required lab PCs", "Số máy phòng tin học cần có"),
        "int",
        _text("lab_pcs_required"),
    ),
    Column(
        "lab_equipped",
        Text("Equipped lab", "Phòng tin học đạt chuẩn"),
        "text",
        _yes_no("lab_equipped"),
    ),
    Column(
        "lab_equipped_why",
        Text("Equipped lab: why", "Lý do (phòng tin học)"),
        "text",
        _why("lab_equipped_why"),
    ),
    Column("pcs_lab", Text("Lab PCs", "Số máy phòng tin học"), "int", _role("lab")),
    Column(
        "pcs_office", Text("Office PCs", "Số máy văn phòng"), "int", _role("office")
    ),
    Column(
        "pcs_teacher", Text("Teacher PCs", "Số máy giáo viên"), "int", _role("teacher")
    ),
    Column("pcs_other", Text("Other PCs", "Số máy khác"), "int", _role("other")),
    Column(
        "devices_unsupported_os",
        Text("PCs on unsupported OS", "Số máy dùng hệ điều hành hết hỗ trợ"),
        "int",
        _text("devices_unsupported_os"),
    ),
    Column(
        "asset_events",
        Text("Asset events in period", "Số thay đổi thiết bị trong kỳ"),
        "int",
        _text("asset_events"),
    ),
    Column(
        "last_seen_at",
        Text("Last report", "Lần báo cáo gần nhất"),
        "datetime",
        _text("last_seen_at"),
    ),
)

_ALL_SCOPE = Text(
    "District (primary and lower-secondary schools for the lab target)",
    "Toàn địa bàn (chỉ tiêu phòng tin học: trường tiểu học và THCS)",
)
TOTAL_COLUMNS = (
    Column(
        "scope",
        Text("Scope", "Phạm vi"),
        "text",
        lambda t, lang: (
            _ALL_SCOPE if t.scope == "all" else LEVEL_LABELS[t.scope]
        ).in_lang(lang),
    ),
    Column("schools", Text("Schools", "Số trường"), "int", _text("schools")),
    Column(
        "connected",
        Text("Connected schools", "Số trường đạt kết nối"),
        "int",
        _text("connected"),
    ),
    Column(
        "connected_share",
        Text("Share connected", "Tỉ lệ trường đạt kết nối"),
        "percent",
        _text("connected_share"),
    ),
    Column(
        "with_lab_target",
        Text("Schools with a lab target", "Số trường có chỉ tiêu phòng tin học"),
        "int",
        _text("with_lab_target"),
    ),
    Column(
        "equipped",
        Text("Equipped schools", "Số trường có phòng tin học đạt chuẩn"),
        "int",
        _text("equipped"),
    ),
    Column(
        "equipped_share",
        Text("Share equipped", "Tỉ lệ trường có phòng tin học đạt chuẩn"),
        "percent",
        _text("equipped_share"),
    ),
)


# Parameters (period and thresholds) in display units --------------------------------


@dataclass(frozen=True)
class Parameter:
    """One line of the parameters sheet: label, value in display units, unit."""

    name: str
    label: Text
    value: Any
    unit: Text
    kind: str


_THRESHOLD_DISPLAY: Mapping[str, tuple[Text, float, Text, str]] = {
    "window_seconds": (
        Text("Window", "Khoảng thời gian xét"),
        86400,
        Text("days", "ngày"),
        "number",
    ),
    "good_download_bytes_per_second": (
        Text("Good: median download at least", "Tốt: tốc độ tải xuống trung vị từ"),
        1e6 / 8,
        Text("Mbit/s", "Mbit/s"),
        "number",
    ),
    "good_download_bytes_per_second_per_student": (
        Text(
            "Good: per student (large schools)", "Tốt: theo mỗi học sinh (trường lớn)"
        ),
        1e3 / 8,
        Text("kbit/s per student", "kbit/s mỗi học sinh"),
        "number",
    ),
    "per_student_above_students": (
        Text(
            "Per-student rate applies above", "Áp dụng theo học sinh khi trường có trên"
        ),
        1,
        Text("students", "học sinh"),
        "number",
    ),
    "moderate_download_bytes_per_second": (
        Text(
            "Moderate: median download at least",
            "Trung bình: tốc độ tải xuống trung vị từ",
        ),
        1e6 / 8,
        Text("Mbit/s", "Mbit/s"),
        "number",
    ),
    "uptime_ratio": (
        Text(
            "Connected: Internet uptime at least",
            "Đạt kết nối: thời gian có Internet từ",
        ),
        0.01,
        Text("%", "%"),
        "number",
    ),
    "min_logical_cpus": (
        Text("Lab PC: logical CPUs at least", "Máy phòng tin học: số CPU logic từ"),
        1,
        Text("CPUs", "CPU"),
        "number",
    ),
    "min_memory_bytes": (
        Text("Lab PC: RAM at least", "Máy phòng tin học: RAM từ"),
        1024**3,
        Text("GiB", "GiB"),
        "number",
    ),
    "usable_memory_tolerance_bytes": (
        Text(
            "Lab PC: tolerance when only usable RAM is known",
            "Máy phòng tin học: dung sai khi chỉ biết RAM khả dụng",
        ),
        1024**2,
        Text("MiB", "MiB"),
        "number",
    ),
    "min_system_disk_bytes": (
        Text("Lab PC: system disk at least", "Máy phòng tin học: ổ đĩa hệ thống từ"),
        1e9,
        Text("GB", "GB"),
        "number",
    ),
    "preschool_min_devices": (
        Text(
            "Preschool: PCs with Internet at least",
            "Mầm non: số máy tính có Internet từ",
        ),
        1,
        Text("PCs", "máy"),
        "number",
    ),
}


_NO_UNIT = Text("", "")
_TIME_LABELS = {
    "period_start": Text("Period from", "Kỳ báo cáo từ"),
    "period_end": Text("Period to", "Kỳ báo cáo đến"),
    "generated_at": Text("Generated at", "Thời điểm lập"),
}


def parameters(report: Report) -> list[Parameter]:
    """The period and every threshold in force, in display units."""
    zone = ZoneInfo(report.timezone)
    lines = [
        Parameter(
            name, label, _local(getattr(report, name), zone), _NO_UNIT, "datetime"
        )
        for name, label in _TIME_LABELS.items()
    ]
    zone_label = Text("Time zone", "Múi giờ")
    lines.append(Parameter("timezone", zone_label, report.timezone, _NO_UNIT, "text"))
    return lines + [_threshold_parameter(n, v) for n, v in report.thresholds.items()]


def _threshold_parameter(name: str, value: float) -> Parameter:
    if name.startswith("lab_pcs_required_"):
        level = name.removeprefix("lab_pcs_required_")
        label = LEVEL_LABELS.get(level, Text(level, level))
        return Parameter(
            name,
            Text(
                f"Lab PCs required: {label.en}",
                f"Số máy phòng tin học cần có: {label.vi}",
            ),
            int(value),
            Text("PCs", "máy"),
            "number",
        )
    if name not in _THRESHOLD_DISPLAY:
        return Parameter(name, Text(name, name), value, _NO_UNIT, "number")
    label, scale, unit, kind = _THRESHOLD_DISPLAY[name]
    return Parameter(name, label, _tidy(value / scale), unit, kind)


def _tidy(value: float) -> float | int:
    rounded = round(value, 6)
    return int(rounded) if rounded == int(rounded) else rounded


def _local(instant: datetime | None, zone: ZoneInfo) -> datetime | None:
    if instant is None:
        return None
    return instant.astimezone(zone).replace(tzinfo=None)


# Rendering ----------------------------------------------------------------------------


def render(report: Report, fmt: str, lang: str) -> bytes:
    """The report as ``csv``, ``xlsx`` or ``json`` bytes, in ``vi`` or ``en``."""
    if fmt not in FORMATS:
        raise ValueError(
            f"report format {fmt!r} is unknown; accepted: {', '.join(FORMATS)}"
        )
    if lang not in LANGS:
        raise ValueError(
            f"report language {lang!r} is unknown; accepted: {', '.join(LANGS)}"
        )
    content = {"csv": _render_csv, "xlsx": _render_xlsx, "json": _render_json}[fmt](
        report, lang
    )
    logger.info(
        "report rendered: %s/%s, %d schools, %d bytes",
        fmt,
        lang,
        len(report.rows),
        len(content),
    )
    return content


def display_value(column: Column, row: Any, lang: str, zone: ZoneInfo) -> Any:
    """A cell's typed value for XLSX (speeds in Mbit/s, latency in ms, local dates)."""
    raw = column.value(row, lang)
    if raw is None:
        return None
    if column.kind == "mbps":
        return raw * 8 / 1e6
    if column.kind == "ms":
        return raw * 1000
    if column.kind == "datetime":
        return _local(raw, zone)
    return raw


def _render_csv(report: Report, lang: str) -> bytes:
    delimiter, mark = (";", ",") if lang == "vi" else (",", ".")
    zone = ZoneInfo(report.timezone)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([c.header.in_lang(lang) for c in SCHOOL_COLUMNS])
    for row in report.rows:
        writer.writerow(
            [
                _csv_text(c, display_value(c, row, lang, zone), mark)
                for c in SCHOOL_COLUMNS
            ]
        )
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _csv_text(column: Column, value: Any, mark: str) -> str:
    if value is None:
        return ""
    if column.kind == "percent":
        return f"{value * 100:.1f}%".replace(".", mark)
    if column.kind == "mbps":
        return f"{value:.2f}".replace(".", mark)
    if column.kind == "ms":
        return f"{value:.1f}".replace(".", mark)
    if column.kind == "datetime":
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


_NUMBER_FORMATS = {
    "percent": "0.0%",
    "mbps": "0.00",
    "ms": "0.0",
    "int": "0",
    "datetime": "yyyy-mm-dd hh:mm",
}
_SHEET_NAMES = {
    "schools": Text("Schools", "Trường"),
    "totals": Text("Totals", "Tổng hợp"),
    "parameters": Text("Parameters", "Thông số"),
}


def _render_xlsx(report: Report, lang: str) -> bytes:
    zone = ZoneInfo(report.timezone)
    book = Workbook()
    schools = book.active
    schools.title = _SHEET_NAMES["schools"].in_lang(lang)
    _write_table(schools, SCHOOL_COLUMNS, report.rows, lang, zone)
    schools.freeze_panes = "C2"
    schools.auto_filter.ref = schools.dimensions

    totals = book.create_sheet(_SHEET_NAMES["totals"].in_lang(lang))
    _write_table(totals, TOTAL_COLUMNS, report.totals, lang, zone)
    totals.freeze_panes = "A2"
    _write_parameters(
        book.create_sheet(_SHEET_NAMES["parameters"].in_lang(lang)), report, lang
    )

    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _write_table(
    sheet: Any,
    columns: Sequence[Column],
    items: Sequence[Any],
    lang: str,
    zone: ZoneInfo,
) -> None:
    sheet.append([c.header.in_lang(lang) for c in columns])
    for item in items:
        sheet.append([_xlsx_safe(display_value(c, item, lang, zone)) for c in columns])
    for index, column in enumerate(columns, start=1):
        for cell in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
            cell[0].number_format = _NUMBER_FORMATS.get(column.kind, "General")
    _style_header(sheet)
    _fit_widths(sheet)


def _write_parameters(sheet: Any, report: Report, lang: str) -> None:
    headers = [
        Text("Parameter", "Thông số"),
        Text("Value", "Giá trị"),
        Text("Unit", "Đơn vị"),
    ]
    sheet.append([h.in_lang(lang) for h in headers])
    for line in parameters(report):
        sheet.append([line.label.in_lang(lang), line.value, line.unit.in_lang(lang)])
        cell = sheet.cell(row=sheet.max_row, column=2)
        cell.number_format = _NUMBER_FORMATS.get(line.kind, "General")
    sheet.freeze_panes = "A2"
    _style_header(sheet)
    _fit_widths(sheet)


def _style_header(sheet: Any) -> None:
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")


def _fit_widths(sheet: Any) -> None:
    for cells in sheet.iter_cols():
        longest = max(len(_shown(cell.value)) for cell in cells)
        letter = get_column_letter(cells[0].column)
        sheet.column_dimensions[letter].width = min(max(longest + 2, 8), 60)


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return "yyyy-mm-dd hh:mm"
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def _xlsx_safe(value: Any) -> Any:
    if isinstance(value, str):
        return _ILLEGAL_XLSX.sub("", value)
    return value


def _render_json(report: Report, lang: str) -> bytes:
    document = {
        "lang": lang,
        "period": {
            "start": _wire(report.period_start),
            "end": _wire(report.period_end),
        },
        "generated_at": _wire(report.generated_at),
        "timezone": report.timezone,
        "thresholds": dict(report.thresholds),
        "totals": [_total_json(t, lang) for t in report.totals],
        "schools": [_row_json(r, lang) for r in report.rows],
        "headers": {c.key: c.header.in_lang(lang) for c in SCHOOL_COLUMNS},
    }
    text = json.dumps(document, ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


def _row_json(row: SchoolRow, lang: str) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name,
        "level": row.level,
        "level_label": LEVEL_LABELS[row.level].in_lang(lang),
        "commune": row.commune,
        "connected": row.connected,
        "connected_why": row.connected_why.in_lang(lang),
        "uptime_ratio": row.uptime_ratio,
        "download_bytes_per_second": row.download_bytes_per_second,
        "upload_bytes_per_second": row.upload_bytes_per_second,
        "latency_seconds": row.latency_seconds,
        "connectivity_class": row.connectivity_class,
        "connectivity_label": CLASS_LABELS[row.connectivity_class].in_lang(lang),
        "lab_pcs_compliant": row.lab_pcs_compliant,
        "lab_pcs_required": row.lab_pcs_required,
        "lab_equipped": row.lab_equipped,
        "lab_equipped_why": row.lab_equipped_why.in_lang(lang),
        "pcs_by_role": dict(row.pcs_by_role),
        "devices_unsupported_os": row.devices_unsupported_os,
        "asset_events": row.asset_events,
        "last_seen_at": _wire(row.last_seen_at),
    }


def _total_json(totals: Totals, lang: str) -> dict[str, Any]:
    label = _ALL_SCOPE if totals.scope == "all" else LEVEL_LABELS[totals.scope]
    return {
        "scope": totals.scope,
        "scope_label": label.in_lang(lang),
        "schools": totals.schools,
        "connected": totals.connected,
        "connected_share": totals.connected_share,
        "with_lab_target": totals.with_lab_target,
        "equipped": totals.equipped,
        "equipped_share": totals.equipped_share,
    }


def _wire(instant: datetime | None) -> str | None:
    if instant is None:
        return None
    return instant.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
