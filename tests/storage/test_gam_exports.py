"""Real-shaped Google Ad Manager exports import with the right numbers; what cannot be read for sure is
quarantined or refused, never stored wrong (issue 16 item 5).

tests/data/gam/ holds the shapes: the API's CSV_DUMP in network and in local currency (``€ 112545450``
micros), ``TOTAL_LINE_ITEM_LEVEL_*`` metrics, the report downloader's ``.csv.gz``, TSV, a de-DE UI export
(``;``, ``17.500``, ``1.234,56 €``, UTF-8 with BOM, CRLF, a title block and a total row), Excel's UTF-16
"Unicode text" and a Windows-1252 export.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from sqlalchemy import select
from typer.testing import CliRunner

from billing.errors import Invalid
from bot.cli import app
from bot.workflows.sync import import_report, quarantine_list
from storage.db import Database
from storage.models import DeliveryFact, SourceState
from storage.sources.gam_report import read_report
from tests.factories import OPERATOR, add_user
from tests.storage.conftest import NOW

DATA = Path(__file__).resolve().parents[1] / "data" / "gam"
D, L = "elbe-display", "elbe-leads"


@pytest.fixture(autouse=True)
def _operator(scenario: Database) -> None:
    """The CLI acts as a known operator (BILLBOT_USER, see tests/conftest.py)."""
    add_user(scenario, OPERATOR, ["operator"])


EXPORTS = {
    "csv_dump_network_currency.csv": {(D, "2026-02-01"): (18000, 40, "75.6"), (D, "2026-02-02"): (17000, 35, "71.4"),
                                      (L, "2026-02-02"): (1200, 80, "5.04")},
    "csv_dump_local_currency.csv": {(D, "2026-02-01"): (26796536, 1204, "112.54545"), (L, "2026-02-02"): (1200, 80, "5.04")},
    "total_line_item_level.csv": {(D, "2026-02-03"): (19500, 41, "81.9"), (D, "2026-02-04"): (20100, 44, "84.42")},
    "report_downloader.csv.gz": {(D, "2026-02-01"): (18000, 40, "75.6"), (D, "2026-02-02"): (17000, 35, "71.4"),
                                 (L, "2026-02-02"): (1200, 80, "5.04")},
    "csv_dump.tsv": {(D, "2026-02-05"): (16000, 30, "67.2")},
    "ui_export_de_DE.csv": {(D, "2026-02-01"): (17500, 39, "73.5"), (D, "2026-02-02"): (293910, 1204, "1234.56")},
    "excel_unicode_text.txt": {(D, "2026-02-03"): (12345, 20, "51.85")},
    "ui_export_windows1252.csv": {(D, "2026-02-04"): (900, 3, "3.78")},
}

WITH_SYMBOL = {"csv_dump_local_currency.csv", "ui_export_de_DE.csv", "excel_unicode_text.txt"}


def _facts(db: Database) -> dict[tuple[str, str], tuple[int, int, str]]:
    with db.read() as s:
        return {(f.item_id, f.day.isoformat()): (f.impressions, f.clicks, format(f.revenue.normalize(), "f"))
                for f in s.execute(select(DeliveryFact)).scalars()}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_real_shaped_exports_import_with_the_right_numbers(scenario: Database, key, name: str) -> None:
    res = import_report(scenario, path=DATA / name, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert res.counts["quarantined"] == 0, quarantine_list(scenario, source="gam")
    assert _facts(scenario) == EXPORTS[name]
    if name in WITH_SYMBOL:  # the currency symbol in the revenue cell names the currency
        with scenario.read() as s:
            assert {f.currency for f in s.execute(select(DeliveryFact)).scalars()} == {"EUR"}


def _csv(tmp_path: Path, name: str, rows: list[str], header: str = "Date,Line item ID,Ad server impressions,"
         "Ad server clicks,Ad server CPM and CPC revenue") -> Path:
    p = tmp_path / name
    p.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return p


def test_decimal_comma_is_read_per_file_never_100_times(scenario: Database, key, tmp_path: Path) -> None:
    # "1234,56" tells the file's decimal separator: a comma
    p = _csv(tmp_path, "de.csv", ['2026-02-01,5550001,1000,5,"1234,56"', '2026-02-02,5550001,1000,5,"7,5"'])
    import_report(scenario, path=p, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert _facts(scenario)[(D, "2026-02-01")][2] == "1234.56"
    assert _facts(scenario)[(D, "2026-02-02")][2] == "7.5"


def test_a_value_that_reads_two_ways_is_quarantined_with_the_reason(scenario: Database, key, tmp_path: Path) -> None:
    p = _csv(tmp_path, "unclear.csv", ['2026-02-01,5550001,1000,5,"1,234"', "2026-02-02,5550001,1000,5,12"])
    res = import_report(scenario, path=p, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert (res.counts["inserted"], res.counts["quarantined"]) == (1, 1)
    [q] = quarantine_list(scenario, source="gam")
    assert q["location"] == "unclear.csv:2" and "ambiguous number '1,234'" in q["reason"] and "--decimal" in q["reason"]
    # told how to read it, the same file imports it
    r = CliRunner().invoke(app, ["import", "report", str(p), "--source", "gam", "--decimal", ","])
    assert r.exit_code == 0, r.output
    assert _facts(scenario)[(D, "2026-02-01")][2] == "1.234"


def test_a_file_with_both_separators_is_refused_naming_lines(scenario: Database, key, tmp_path: Path) -> None:
    p = _csv(tmp_path, "mixed.csv", ['2026-02-01,5550001,1000,5,"1.234,56"', '2026-02-02,5550001,1000,5,"1,234.56"'])
    r = CliRunner().invoke(app, ["import", "report", str(p), "--source", "gam"])
    assert r.exit_code == 2
    assert "mixed.csv" in r.output and "line 2" in r.output and "line 3" in r.output
    assert _facts(scenario) == {}


def test_unreadable_files_are_refused_with_exit_2(scenario: Database, tmp_path: Path) -> None:
    cases = {
        "not-a-workbook.xlsx": b"Date,Line item ID\n2026-02-01,5550001\n",
        "binary.csv": bytes(range(256)) * 4,
        "broken.csv.gz": b"\x1f\x8b\x08\x00garbage",
        "utf16-without-bom.csv": "Date,Line item ID,Ad server impressions\n".encode("utf-16-le"),
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        r = CliRunner().invoke(app, ["import", "report", str(p), "--source", "gam"])
        assert r.exit_code == 2, (name, r.output)
        assert name in r.output and "Traceback" not in r.output
    assert _facts(scenario) == {}


def test_formula_cells_without_cached_values_are_quarantined_never_0(scenario: Database, key, tmp_path: Path) -> None:
    p = _csv(tmp_path, "first.csv", ["2026-02-01,5550001,18000,40,75.60"])
    import_report(scenario, path=p, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    wb = Workbook()
    ws = wb.active
    ws.append(["Date", "Line item ID", "Ad server impressions", "Ad server clicks", "Ad server CPM and CPC revenue"])
    ws.append(["2026-02-01", "5550001", "=SUM(C3:C9)", 40, 75.6])  # saved by a script: no cached value
    ws.append(["2026-02-02", "5550001", 17000, 35, 71.4])
    x = tmp_path / "formulas.xlsx"
    wb.save(x)
    res = import_report(scenario, path=x, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert (res.counts["inserted"], res.counts["quarantined"]) == (1, 1)
    [q] = quarantine_list(scenario, source="gam")
    assert q["location"] == "formulas.xlsx:2" and "formula without a cached value" in q["reason"]
    assert _facts(scenario)[(D, "2026-02-01")] == (18000, 40, "75.6")  # the day was not overwritten


def test_days_outside_the_flight_or_the_window_are_quarantined_and_move_nothing(scenario: Database, key,
                                                                                tmp_path: Path) -> None:
    p = _csv(tmp_path, "days.csv", ["2026-02-01,5550001,1000,5,4.20", "1999-02-01,5550001,1000,5,4.20",
                                    "2099-02-01,5550001,1000,5,4.20", "2025-12-15,5550001,1000,5,4.20",
                                    "2026-02-11,5550001,1000,5,4.20"])
    res = import_report(scenario, path=p, source="gam", actor="U01OPERATOR", signing_key=key, now=NOW)
    assert (res.counts["inserted"], res.counts["quarantined"]) == (1, 4)
    reasons = {q["location"]: q["reason"] for q in quarantine_list(scenario, source="gam")}
    assert "more than 400 days back" in reasons["days.csv:3"]
    assert "in the future" in reasons["days.csv:4"] and "in the future" in reasons["days.csv:6"]
    assert "outside the flight of line item elbe-display (2026-01-01 – 2026-03-31)" in reasons["days.csv:5"]
    with scenario.read() as s:
        assert s.get(SourceState, "gam").data_until == date(2026, 2, 1)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- fuzz

HEADER = ["Date", "Line item ID", "Ad server impressions", "Ad server clicks", "Ad server CPM and CPC revenue"]
cell = st.one_of(st.text(alphabet="0123456789.,-€ $'\u00a0abcXYZ/:", max_size=12),
                 st.from_regex(r"\A-?\d{1,3}([.,]\d{3}){0,2}([.,]\d{1,2})?\Z"),
                 st.sampled_from(["2026-02-01", "01.02.2026", "Feb 3, 2026", "5550001", "5550002", "Total", ""]))


def _digits(v: str) -> str:
    return re.sub(r"\D", "", v)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(cell, min_size=5, max_size=6), max_size=8),
       delimiter=st.sampled_from([",", ";", "\t", "|"]), quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]))
def test_fuzz_csv_dialects_never_traceback_and_keep_only_what_the_file_says(tmp_path_factory, rows, delimiter,
                                                                           quoting, encoding) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
    w.writerow(HEADER)
    w.writerows(rows)
    try:
        data = buf.getvalue().encode(encoding)
    except UnicodeEncodeError:
        return
    p = tmp_path_factory.mktemp("fuzz") / "report.csv"
    p.write_bytes(data)
    try:
        batch = read_report(p, currency="EUR")
    except Invalid:
        return
    for rec in batch.frame.to_dict("records"):
        raw = rec["_raw"]
        for col in ("impressions", "clicks", "revenue"):
            v = rec[col] or ""
            # every digit stored comes from the row, in order; nothing was invented or multiplied
            assert _digits(v) in _digits(raw) or not _digits(v), (col, v, raw)
            if v and re.fullmatch(r"-?\d+(\.\d+)?", v):
                src = [c for c in re.split(r"[;,\t|]", raw) if _digits(c) == _digits(v)]
                assert src or _digits(v) in _digits(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".xlsx", ".csv.gz", ".txt"]))
def test_fuzz_random_bytes_are_read_or_refused_never_a_traceback(tmp_path_factory, data: bytes, suffix: str) -> None:
    p = tmp_path_factory.mktemp("fuzz") / f"report{suffix}"
    p.write_bytes(data)
    try:
        batch = read_report(p, currency="EUR")
    except Invalid:
        return
    assert len(batch.frame) + len(batch.bad) + batch.ignored >= 0


def test_fuzz_read_values_are_exact(tmp_path: Path) -> None:
    """The decimal reading keeps every digit: 1.234,56 → 1234.56, 293.910 → 293910 (counts), never scaled."""
    p = _csv(tmp_path, "exact.csv", ['2026-02-01,5550001,"293.910","1.204","1.234,56 €"'])
    rec = read_report(p).frame.to_dict("records")[0]
    assert (rec["impressions"], rec["clicks"], rec["revenue"], rec["currency"]) == ("293910", "1204", "1234.56", "EUR")
    assert Decimal(rec["revenue"]) == Decimal("1234.56")
