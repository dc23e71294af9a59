"""The school registry import: every quirk of registry.yaml, all or nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from schoolmon.server.registry import RegistryError, import_registry, read_registry
from schoolmon.server.storage import ImportSummary

FIXTURES = Path(__file__).parent.parent / "fixtures" / "registry"
SAMPLE = Path(__file__).parents[2] / "server" / "data" / "sample_registry.csv"


def registry_rows(storage: Any) -> list[tuple[Any, ...]]:
    """The stored registry as (code, name, level, commune, active) tuples."""
    return [
        (s["code"], s["name"], s["level"], s["commune"], s["active"])
        for s in storage.schools(active_only=False)
    ]


def test_excel_bom_semicolon_crlf_file_imports_cleanly(storage, clock):
    """reg-excel-bom-semicolon: no BOM in the first column, every row read."""
    summary = import_registry(
        storage, FIXTURES / "excel_bom_semicolon_crlf.csv", clock()
    )

    assert (summary, [s | {"created_at": None} for s in storage.schools()]) == (
        ImportSummary(added=["C01", "C02", "C03"]),
        [
            _school(
                "C01", "Trường Tiểu học Cẩm Phúc", "primary", "Cẩm Phúc", True, clock
            ),
            _school(
                "C02",
                "Trường THCS Cẩm Phúc",
                "lower_secondary",
                "Cẩm Phúc",
                True,
                clock,
            ),
            _school(
                "C03", "Trường Mầm non Cẩm Điền", "preschool", "Cẩm Điền", False, clock
            ),
        ],
    )


def _school(code, name, level, commune, informatics, clock) -> dict[str, Any]:
    return {
        "code": code,
        "name": name,
        "level": level,
        "commune": commune,
        "has_informatics": informatics,
        "lab_pcs_required": None,
        "students": None,
        "contracted_download_mbps": None,
        "latitude": None,
        "longitude": None,
        "active": True,
        "created_at": None,
        "updated_at": clock(),
        "timezone": None,
    }


def test_bad_rows_are_all_listed_and_nothing_is_imported(registered):
    """reg-bad-rows: every bad line with number, column and what is accepted."""
    before = registry_rows(registered)
    path = FIXTURES / "bad_rows.csv"

    with pytest.raises(RegistryError) as error:
        import_registry(registered, path, registered.schools()[0]["updated_at"])

    assert (error.value.problems, registry_rows(registered)) == (
        [
            f"{path} line 3, column code: 'C01' is already on line 2; each school "
            "code once",
            f"{path} line 4, column level: 'kindergarden' is not a school level; "
            "accepted: preschool, primary, lower_secondary, upper_secondary, other "
            "(or mầm non, tiểu học, THCS, THPT)",
            f"{path} line 5, column name: the name is empty; a name is required",
        ],
        before,
    )


def test_legacy_code_page_is_refused_naming_file_and_line(registered, clock):
    """reg-legacy-encoding: names the file and line, says to save as UTF-8."""
    before = registry_rows(registered)
    path = FIXTURES / "legacy_cp1258.csv"

    with pytest.raises(RegistryError) as error:
        import_registry(registered, path, clock())

    assert (error.value.problems, registry_rows(registered)) == (
        [
            f"{path} line 3: byte 0xFD is not UTF-8 text; save it as UTF-8 (in "
            "Excel: Save As, 'CSV UTF-8') and import again"
        ],
        before,
    )


def test_reimport_renames_keeps_devices_and_deactivates_the_missing(storage, clock):
    """reg-reimport: idempotent upsert; renamed keeps devices; removed kept inactive."""
    import_registry(storage, FIXTURES / "reimport_original.csv", clock())
    storage.add_device(
        {
            "id": "d_1",
            "school": "C02",
            "role": "lab",
            "credential_hash": "h",
            "enrolled_at": clock(),
        }
    )
    storage.add_device(
        {
            "id": "d_2",
            "school": "C03",
            "role": "office",
            "credential_hash": "h2",
            "enrolled_at": clock(),
        }
    )
    clock.advance(days=1)

    second = import_registry(
        storage, FIXTURES / "reimport_renamed_and_removed.csv", clock()
    )
    third = import_registry(
        storage, FIXTURES / "reimport_renamed_and_removed.csv", clock()
    )

    assert (
        second,
        third,
        registry_rows(storage),
        [(d["id"], d["school"]) for d in storage.devices()],
    ) == (
        ImportSummary(
            updated=["C02"], renamed=["C02"], unchanged=["C01"], deactivated=["C03"]
        ),
        ImportSummary(unchanged=["C01", "C02"]),
        [
            ("C01", "Trường Tiểu học Cẩm Phúc", "primary", "Cẩm Phúc", True),
            ("C02", "Trường THCS Nguyễn Trãi", "lower_secondary", "Cẩm Phúc", True),
            ("C03", "Trường Mầm non Cẩm Điền", "preschool", "Cẩm Điền", False),
        ],
        [("d_1", "C02"), ("d_2", "C03")],
    )


def test_a_school_back_in_the_file_is_reactivated(storage, clock):
    """A school missing from one import and listed again is active again."""
    import_registry(storage, FIXTURES / "reimport_original.csv", clock())
    import_registry(storage, FIXTURES / "reimport_renamed_and_removed.csv", clock())

    summary = import_registry(storage, FIXTURES / "reimport_original.csv", clock())

    assert summary == ImportSummary(
        updated=["C02", "C03"], renamed=["C02"], unchanged=["C01"], reactivated=["C03"]
    )


def test_all_optional_columns_and_a_quoted_name_with_a_comma():
    """Optional columns are typed; a quoted name keeps its comma; empty is None."""
    assert read_registry(FIXTURES / "all_columns_quoted_comma.csv") == [
        {
            "code": "30201901",
            "name": "Trường Tiểu học Cẩm Phúc, điểm chính",
            "level": "primary",
            "commune": "Cẩm Phúc",
            "has_informatics": True,
            "lab_pcs_required": 20,
            "students": 612,
            "contracted_download_mbps": 80.0,
            "latitude": 20.9512,
            "longitude": 106.2234,
        },
        {
            "code": "30301901",
            "name": "Trường THCS Cẩm Phúc",
            "level": "lower_secondary",
            "commune": "Cẩm Phúc",
            "has_informatics": True,
            "lab_pcs_required": None,
            "students": 455,
            "contracted_download_mbps": 100.0,
            "latitude": 20.9531,
            "longitude": 106.225,
        },
        {
            "code": "30101901",
            "name": "Trường Mầm non Cẩm Phúc",
            "level": "preschool",
            "commune": "Cẩm Phúc",
            "has_informatics": False,
            "lab_pcs_required": None,
            "students": 210,
            "contracted_download_mbps": 40.5,
            "latitude": None,
            "longitude": None,
        },
    ]


def test_semicolon_file_with_decimal_commas():
    """Excel's Vietnamese locale writes 40,5; it reads as 40.5."""
    assert read_registry(FIXTURES / "semicolon_decimal_comma.csv") == [
        {
            "code": "C01",
            "name": "Trường Tiểu học Cẩm Vũ",
            "level": "primary",
            "commune": "Cẩm Vũ",
            "contracted_download_mbps": 40.5,
            "latitude": 20.9412,
            "longitude": 106.2011,
        }
    ]


def test_vietnamese_level_words_and_flags_and_capitalised_header():
    """Mầm non / Tiểu học / THCS and có / không are understood."""
    assert [
        (row["level"], row["has_informatics"])
        for row in read_registry(FIXTURES / "vietnamese_levels_and_flags.csv")
    ] == [("preschool", False), ("primary", True), ("lower_secondary", True)]


def test_decomposed_unicode_names_are_stored_composed():
    """A file in NFD (as some Mac tools save) gives the same bytes as NFC."""
    rows = read_registry(FIXTURES / "nfd_names.csv")

    assert (rows[0]["name"].encode(), rows[0]["commune"].encode()) == (
        "Trường THCS Cẩm Phúc".encode(),
        "Cẩm Phúc".encode(),
    )


def test_unknown_and_missing_columns_are_named():
    """A missing required column is refused; an unknown one is named beside it with
    the column it probably meant."""
    path = FIXTURES / "unknown_and_missing_columns.csv"

    with pytest.raises(RegistryError) as error:
        read_registry(path)

    assert error.value.problems == [
        f"{path} line 1: required column 'commune' is missing; the header needs "
        "code, name, level, commune",
        f"{path} line 1: column 'studens' is not used by schoolmon; ignored "
        "(did you mean 'students'?)",
    ]


def test_bad_optional_values_are_each_named():
    """Every bad optional value is named with what is accepted."""
    path = FIXTURES / "bad_optional_values.csv"

    with pytest.raises(RegistryError) as error:
        read_registry(path)

    prefix = f"{path} line 2, column"
    assert error.value.problems == [
        f"{prefix} has_informatics: 'maybe' is not yes or no; accepted: 1/0, "
        "true/false, yes/no, có/không or empty (unknown)",
        f"{prefix} lab_pcs_required: '-3' is not a whole number; accepted: e.g. 350",
        f"{prefix} students: '4 trăm' is not a whole number; accepted: e.g. 350",
        f"{prefix} contracted_download_mbps: 'fast' is not a number from 0.01 to "
        "100000; accepted: e.g. 40.5 or 40,5",
        f"{prefix} latitude: '95.2' is not a number from -90 to 90; accepted: e.g. "
        "20.95 or 20,95",
    ]


def test_bundled_sample_registry_imports_as_is(storage, clock):
    """The sample: 60 schools, 20 communes x 3 levels, Vietnamese names."""
    summary = import_registry(storage, SAMPLE, clock())
    schools = storage.schools()

    assert (
        len(summary.added),
        len({s["commune"] for s in schools}),
        sorted({s["level"] for s in schools}),
        [s["name"] for s in schools if s["commune"] == "Cẩm Phúc"],
    ) == (
        60,
        20,
        ["lower_secondary", "preschool", "primary"],
        ["Trường Mầm non Cẩm Phúc", "Trường Tiểu học Cẩm Phúc", "Trường THCS Cẩm Phúc"],
    )


def test_reimport_updates_timestamps_only_of_changed_schools(storage, clock):
    """An unchanged school keeps its updated_at; a renamed one gets the new time."""
    first_time = clock()
    import_registry(storage, FIXTURES / "reimport_original.csv", first_time)
    clock.advance(timedelta(hours=2).total_seconds())

    import_registry(storage, FIXTURES / "reimport_renamed_and_removed.csv", clock())

    assert [(s["code"], s["updated_at"]) for s in storage.schools(False)] == [
        ("C01", first_time),
        ("C02", clock()),
        ("C03", clock()),
    ]
