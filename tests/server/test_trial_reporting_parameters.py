"""The XLSX Parameters sheet: every value in the unit its Unit column names, shown
without a second unit from its number format."""

from __future__ import annotations

import io

import openpyxl
import pytest
from schoolmon.server.reporting import render

from tests.server.test_reporting import make_report


@pytest.mark.parametrize(
    ("lang", "rows"),
    [
        (
            "en",
            [
                ("Window", 7, "days", "General"),
                ("Good: median download at least", 20, "Mbit/s", "General"),
                (
                    "Good: per student (large schools)",
                    50,
                    "kbit/s per student",
                    "General",
                ),
                ("Per-student rate applies above", 400, "students", "General"),
                ("Moderate: median download at least", 1, "Mbit/s", "General"),
                ("Connected: Internet uptime at least", 95, "%", "General"),
                ("Lab PC: logical CPUs at least", 2, "CPUs", "General"),
                ("Lab PC: RAM at least", 4, "GiB", "General"),
                (
                    "Lab PC: tolerance when only usable RAM is known",
                    512,
                    "MiB",
                    "General",
                ),
                ("Lab PC: system disk at least", 64, "GB", "General"),
                ("Preschool: PCs with Internet at least", 1, "PCs", "General"),
                ("Lab PCs required: Lower secondary", 23, "PCs", "General"),
                ("Lab PCs required: Primary", 18, "PCs", "General"),
            ],
        ),
        (
            "vi",
            [
                ("Khoảng thời gian xét", 7, "ngày", "General"),
                ("Tốt: tốc độ tải xuống trung vị từ", 20, "Mbit/s", "General"),
                (
                    "Tốt: theo mỗi học sinh (trường lớn)",
                    50,
                    "kbit/s mỗi học sinh",
                    "General",
                ),
                (
                    "Áp dụng theo học sinh khi trường có trên",
                    400,
                    "học sinh",
                    "General",
                ),
                ("Trung bình: tốc độ tải xuống trung vị từ", 1, "Mbit/s", "General"),
                ("Đạt kết nối: thời gian có Internet từ", 95, "%", "General"),
                ("Máy phòng tin học: số CPU logic từ", 2, "CPU", "General"),
                ("Máy phòng tin học: RAM từ", 4, "GiB", "General"),
                (
                    "Máy phòng tin học: dung sai khi chỉ biết RAM khả dụng",
                    512,
                    "MiB",
                    "General",
                ),
                ("Máy phòng tin học: ổ đĩa hệ thống từ", 64, "GB", "General"),
                ("Mầm non: số máy tính có Internet từ", 1, "máy", "General"),
                ("Số máy phòng tin học cần có: Trung học cơ sở", 23, "máy", "General"),
                ("Số máy phòng tin học cần có: Tiểu học", 18, "máy", "General"),
            ],
        ),
    ],
)
def test_every_threshold_row_carries_its_unit_once(lang, rows):
    """Value in display units, unit in its column, a plain number format: 95 %."""
    book = openpyxl.load_workbook(io.BytesIO(render(make_report(), "xlsx", lang)))
    sheet = book.worksheets[2]

    thresholds = [
        (label.value, value.value, unit.value, value.number_format)
        for label, value, unit in sheet.iter_rows(min_row=6)
    ]

    assert thresholds == rows
