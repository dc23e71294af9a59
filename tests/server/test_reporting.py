"""The province report: totals, and the CSV, XLSX and JSON renderings."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from schoolmon.server.clock import parse_wire
from schoolmon.server.policy import (
    ConnectedVerdict,
    ConnectivityVerdict,
    LabVerdict,
    Policy,
    Text,
)
from schoolmon.server.reporting import (
    Report,
    SchoolRow,
    Totals,
    build_report,
    render,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "assets"
LOCAL = timedelta(hours=7)  # Asia/Ho_Chi_Minh, no daylight saving

HEADERS_VI = [
    "Mã trường",
    "Tên trường",
    "Cấp học",
    "Xã/phường",
    "Đạt kết nối",
    "Lý do (kết nối)",
    "Tỉ lệ thời gian có Internet",
    "Tốc độ tải xuống trung vị (Mbit/s)",
    "Tốc độ tải lên trung vị (Mbit/s)",
    "Độ trễ trung vị (ms)",
    "Chất lượng kết nối",
    "Số máy phòng tin học đạt chuẩn",
    "Số máy phòng tin học cần có",
    "Phòng tin học đạt chuẩn",
    "Lý do (phòng tin học)",
    "Số máy phòng tin học",
    "Số máy văn phòng",
    "Số máy giáo viên",
    "Số máy khác",
    "Số máy dùng hệ điều hành hết hỗ trợ",
    "Số thay đổi thiết bị trong kỳ",
    "Lần báo cáo gần nhất",
]
HEADERS_EN = [
    "School code",
    "School name",
    "Level",
    "Commune",
    "Connected",
    "Connected: why",
    "Internet uptime",
    "Median download (Mbit/s)",
    "Median upload (Mbit/s)",
    "Median latency (ms)",
    "Connectivity class",
    "Compliant lab PCs",
    "Required lab PCs",
    "Equipped lab",
    "Equipped lab: why",
    "Lab PCs",
    "Office PCs",
    "Teacher PCs",
    "Other PCs",
    "PCs on unsupported OS",
    "Asset events in period",
    "Last report",
]
LEVELS_VI = {"primary": "Tiểu học", "lower_secondary": "Trung học cơ sở"}
LEVELS_VI["preschool"] = "Mầm non"
CLASSES_VI = {"good": "Tốt", "moderate": "Trung bình", "unknown": "Chưa rõ"}


def load() -> dict[str, Any]:
    path = FIXTURES / "report-three-schools.json"
    return json.loads(path.read_text(encoding="utf-8"))


def row_from(entry: dict[str, Any]) -> SchoolRow:
    seen = entry["last_seen_at"]
    return SchoolRow(
        **{
            **entry,
            "connected_why": Text(**entry["connected_why"]),
            "lab_equipped_why": Text(**entry["lab_equipped_why"]),
            "last_seen_at": parse_wire(seen) if seen else None,
        }
    )


def make_report() -> Report:
    case = load()
    return build_report(
        [row_from(entry) for entry in case["rows"]],
        period_start=parse_wire(case["period_start"]),
        period_end=parse_wire(case["period_end"]),
        generated_at=parse_wire(case["generated_at"]),
        policy=Policy(),
    )


def entries_by_code() -> list[dict[str, Any]]:
    return sorted(load()["rows"], key=lambda entry: entry["code"])


def yes_no_vi(value: bool | None) -> str:
    return {True: "Có", False: "Không", None: "Không áp dụng"}[value]


def local(wire: str | None) -> datetime | None:
    return None if wire is None else (parse_wire(wire) + LOCAL).replace(tzinfo=None)


def scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def expected_xlsx_row(entry: dict[str, Any]) -> list[Any]:
    """The Vietnamese XLSX row of a fixture entry, typed as Excel should hold it."""
    roles = entry["pcs_by_role"]
    return [
        entry["code"],
        entry["name"],
        LEVELS_VI[entry["level"]],
        entry["commune"],
        yes_no_vi(entry["connected"]),
        entry["connected_why"]["vi"],
        entry["uptime_ratio"],
        scaled(entry["download_bytes_per_second"], 8 / 1e6),
        scaled(entry["upload_bytes_per_second"], 8 / 1e6),
        scaled(entry["latency_seconds"], 1000),
        CLASSES_VI[entry["connectivity_class"]],
        entry["lab_pcs_compliant"],
        entry["lab_pcs_required"],
        yes_no_vi(entry["lab_equipped"]),
        entry["lab_equipped_why"]["vi"],
        roles["lab"],
        roles["office"],
        roles["teacher"],
        roles["other"],
        entry["devices_unsupported_os"],
        entry["asset_events"],
        local(entry["last_seen_at"]),
    ]


def sheet_values(sheet: Any) -> list[list[Any]]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_totals_cover_both_promises_per_district_and_level():
    """Share connected over all schools; share equipped over schools with a target."""
    report = make_report()

    assert [row.code for row in report.rows] == ["C01", "C02", "C03"]
    assert report.totals == (
        Totals("all", 3, 1, 1 / 3, 2, 1, 0.5),
        Totals("preschool", 1, 0, 0.0, 1, 0, 0.0),
        Totals("primary", 1, 1, 1.0, 1, 1, 1.0),
        Totals("lower_secondary", 1, 0, 0.0, 1, 0, 0.0),
    )


def test_xlsx_cells_match_the_input_rows():
    """Every cell of the schools sheet holds the typed value of its input row."""
    book = openpyxl.load_workbook(io.BytesIO(render(make_report(), "xlsx", "vi")))
    sheet = book["Trường"]

    assert book.sheetnames == ["Trường", "Tổng hợp", "Thông số"]
    assert sheet_values(sheet) == [HEADERS_VI] + [
        expected_xlsx_row(entry) for entry in entries_by_code()
    ]
    assert (sheet.freeze_panes, sheet.auto_filter.ref) == ("C2", "A1:V4")
    assert [sheet.cell(2, col).number_format for col in (7, 8, 10, 12, 22)] == [
        "0.0%",
        "0.00",
        "0.0",
        "0",
        "yyyy-mm-dd hh:mm",
    ]
    assert sheet.column_dimensions["F"].width == 60
    assert sheet.column_dimensions["A"].width == 11


def test_xlsx_totals_and_parameters_sheets():
    """The totals and parameters sheets hold the promises and thresholds in force."""
    book = openpyxl.load_workbook(io.BytesIO(render(make_report(), "xlsx", "en")))

    assert sheet_values(book["Totals"]) == [
        [
            "Scope",
            "Schools",
            "Connected schools",
            "Share connected",
            "Schools with a lab target",
            "Equipped schools",
            "Share equipped",
        ],
        [
            "District (primary and lower-secondary schools for the lab target)",
            3, 1, 1 / 3, 2, 1, 0.5,
        ],
        ["Preschool", 1, 0, 0, 1, 0, 0],
        ["Primary", 1, 1, 1, 1, 1, 1],
        ["Lower secondary", 1, 0, 0, 1, 0, 0],
    ]  # fmt: skip
    assert book["Totals"].cell(2, 4).number_format == "0.0%"
    assert sheet_values(book["Parameters"]) == [
        ["Parameter", "Value", "Unit"],
        ["Period from", datetime(2026, 11, 26, 11, 0), None],
        ["Period to", datetime(2026, 12, 3, 11, 0), None],
        ["Generated at", datetime(2026, 12, 3, 11, 5), None],
        ["Time zone", "Asia/Ho_Chi_Minh", None],
        ["Window", 7, "days"],
        ["Good: median download at least", 20, "Mbit/s"],
        ["Good: per student (large schools)", 50, "kbit/s per student"],
        ["Per-student rate applies above", 400, "students"],
        ["Moderate: median download at least", 1, "Mbit/s"],
        ["Connected: Internet uptime at least", 95, "%"],
        ["Lab PC: logical CPUs at least", 2, "CPUs"],
        ["Lab PC: RAM at least", 4, "GiB"],
        ["Lab PC: tolerance when only usable RAM is known", 512, "MiB"],
        ["Lab PC: system disk at least", 64, "GB"],
        ["Preschool: PCs with Internet at least", 1, "PCs"],
        ["Lab PCs required: Lower secondary", 23, "PCs"],
        ["Lab PCs required: Primary", 18, "PCs"],
    ]


def test_csv_in_vietnamese_opens_in_excel_on_vietnamese_windows():
    """UTF-8 with BOM, semicolons, decimal commas, CRLF, Có/Không."""
    content = render(make_report(), "csv", "vi")
    text = content.decode("utf-8")

    assert content.startswith(b"\xef\xbb\xbf")
    assert "Trường THCS Cẩm Phúc".encode() in content
    assert text.count("\r\n") == 4
    assert list(csv.reader(io.StringIO(text[1:]), delimiter=";")) == [
        HEADERS_VI,
        [
            "C01", "Trường Tiểu học Cẩm Phúc", "Tiểu học", "Cẩm Phúc", "Có",
            "thời gian có Internet 97,3 % ≥ 95,0 %; chất lượng kết nối tốt",
            "97,3%", "28,00", "9,60", "21,0", "Tốt", "18", "18", "Có",
            "18/18 máy phòng tin học theo yêu cầu đạt chuẩn: 2 máy có RAM dưới 4 GiB",
            "20", "2", "1", "0", "3", "2", "2026-12-03 10:55",
        ],
        [
            "C02", "Trường THCS Cẩm Phúc", "Trung học cơ sở", "Cẩm Phúc", "Không",
            "thời gian có Internet 91,2 % dưới 95,0 %; chất lượng kết nối trung bình",
            "91,2%", "12,50", "5,00", "38,5", "Trung bình", "14", "23", "Không",
            "14/23 máy phòng tin học theo yêu cầu đạt chuẩn: 6 máy có RAM dưới 4 GiB, "
            "3 máy không hoạt động trong 7 ngày",
            "23", "1", "0", "0", "8", "1", "2026-12-03 10:58",
        ],
        [
            "C03", "Trường Mầm non Cẩm Điền", "Mầm non", "Cẩm Điền", "Không",
            "chưa đo được thời gian có Internet; "
            "không có kết quả đo tốc độ hợp lệ trong 7 ngày",
            "", "", "", "", "Chưa rõ", "0", "1", "Không",
            "0/1 máy tính theo yêu cầu hoạt động và có Internet trong 7 ngày "
            "(mầm non: có máy tính và Internet)",
            "0", "0", "0", "0", "0", "0", "",
        ],
    ]  # fmt: skip


def test_csv_in_english_uses_commas_and_decimal_points():
    """The English CSV has English headers, comma separators and decimal points."""
    text = render(make_report(), "csv", "en").decode("utf-8-sig")

    rows = list(csv.reader(io.StringIO(text)))

    assert rows[0] == HEADERS_EN
    assert rows[1][:13] == [
        "C01", "Trường Tiểu học Cẩm Phúc", "Primary", "Cẩm Phúc", "Yes",
        "uptime 97.3 % >= 95.0 %; connectivity class good",
        "97.3%", "28.00", "9.60", "21.0", "Good", "18", "18",
    ]  # fmt: skip


def test_json_holds_the_same_content_in_base_units():
    """The JSON report has every row, the totals, thresholds and period."""
    document = json.loads(render(make_report(), "json", "vi"))
    entries = entries_by_code()

    assert document["schools"] == [
        {
            **{k: v for k, v in entry.items() if not k.endswith("_why")},
            "level_label": LEVELS_VI[entry["level"]],
            "connectivity_label": CLASSES_VI[entry["connectivity_class"]],
            "connected_why": entry["connected_why"]["vi"],
            "lab_equipped_why": entry["lab_equipped_why"]["vi"],
        }
        for entry in entries
    ]
    assert {k: v for k, v in document.items() if k not in ("schools", "headers")} == {
        "lang": "vi",
        "period": {"start": "2026-11-26T04:00:00Z", "end": "2026-12-03T04:00:00Z"},
        "generated_at": "2026-12-03T04:05:00Z",
        "timezone": "Asia/Ho_Chi_Minh",
        "thresholds": Policy().thresholds(),
        "totals": [
            {
                "scope": "all",
                "scope_label": "Toàn địa bàn (chỉ tiêu phòng tin học: "
                "trường tiểu học và THCS)",
                "schools": 3,
                "connected": 1,
                "connected_share": 1 / 3,
                "with_lab_target": 2,
                "equipped": 1,
                "equipped_share": 0.5,
            },
            {
                "scope": "preschool",
                "scope_label": "Mầm non",
                "schools": 1,
                "connected": 0,
                "connected_share": 0.0,
                "with_lab_target": 1,
                "equipped": 0,
                "equipped_share": 0.0,
            },
            {
                "scope": "primary",
                "scope_label": "Tiểu học",
                "schools": 1,
                "connected": 1,
                "connected_share": 1.0,
                "with_lab_target": 1,
                "equipped": 1,
                "equipped_share": 1.0,
            },
            {
                "scope": "lower_secondary",
                "scope_label": "Trung học cơ sở",
                "schools": 1,
                "connected": 0,
                "connected_share": 0.0,
                "with_lab_target": 1,
                "equipped": 0,
                "equipped_share": 0.0,
            },
        ],
    }
    assert list(document["headers"].values()) == HEADERS_VI


@pytest.mark.parametrize(
    ("fmt", "lang", "message"),
    [
        ("pdf", "vi", "report format 'pdf' is unknown; accepted: csv, xlsx, json"),
        ("csv", "fr", "report language 'fr' is unknown; accepted: vi, en"),
    ],
)
def test_unknown_format_or_language_is_refused(fmt, lang, message):
    """A bad format or language is an error naming it and what is accepted."""
    with pytest.raises(ValueError) as raised:
        render(make_report(), fmt, lang)

    assert str(raised.value) == message


def test_row_from_verdicts_takes_the_policy_outputs():
    """A row assembled from verdicts carries their values unchanged."""
    why = Text("uptime 97.3 % >= 95.0 %; connectivity class good", "...")
    lab_why = Text("No equipped-lab target for level upper_secondary", "...")
    row = SchoolRow.from_verdicts(
        code="C09",
        name="Trường THPT Cẩm Bình",
        level="upper_secondary",
        commune="Cẩm Bình",
        connectivity=ConnectivityVerdict("good", 3e6, 1e6, 0.02, 4, {}, 2.5e6, 1.25e5),
        connected=ConnectedVerdict(True, why, 0.973, "good", 0.95),
        lab=LabVerdict("C09", None, 0, None, lab_why, (), {}, (), 1, 30, 0.03, {}),
        pcs_by_role={"office": 3, "lab": 27},
        asset_events=4,
        last_seen_at=None,
    )

    assert row == SchoolRow(
        code="C09",
        name="Trường THPT Cẩm Bình",
        level="upper_secondary",
        commune="Cẩm Bình",
        connected=True,
        connected_why=why,
        uptime_ratio=0.973,
        download_bytes_per_second=3e6,
        upload_bytes_per_second=1e6,
        latency_seconds=0.02,
        connectivity_class="good",
        lab_pcs_compliant=None,
        lab_pcs_required=None,
        lab_equipped=None,
        lab_equipped_why=lab_why,
        pcs_by_role={"lab": 27, "office": 3, "teacher": 0, "other": 0},
        devices_unsupported_os=1,
        asset_events=4,
        last_seen_at=None,
    )


SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed")
def test_libreoffice_reads_the_xlsx(tmp_path):
    """LibreOffice converts the XLSX's first sheet to CSV with the same cells."""
    source = tmp_path / "report.xlsx"
    source.write_bytes(render(make_report(), "xlsx", "en"))

    target = "csv:Text - txt - csv (StarCalc):44,34,76"
    command = [SOFFICE, "--headless", "--convert-to", target, "--outdir", str(tmp_path)]
    subprocess.run(
        [*command, str(source)], check=True, capture_output=True, timeout=120
    )
    rows = list(csv.reader(io.StringIO((tmp_path / "report.csv").read_text("utf-8"))))

    assert rows[0] == HEADERS_EN
    assert [row[0] for row in rows[1:]] == ["C01", "C02", "C03"]
    assert rows[2][1] == "Trường THCS Cẩm Phúc"
