"""Google Ad Manager delivery reports (CSV or XLSX) in their two common shapes.

- the API's CSV dump: ``Dimension.DATE, Dimension.LINE_ITEM_ID, Column.AD_SERVER_IMPRESSIONS,
  Column.AD_SERVER_CLICKS, Column.AD_SERVER_CPM_AND_CPC_REVENUE`` — revenue in **micros**;
- the UI export: ``Date, Line item ID, Ad server impressions, Ad server clicks,
  Ad server CPM and CPC revenue`` — revenue in currency units, numbers may carry thousands separators.

Other columns (names, ids of orders, …) are ignored. A ``Total`` row at the end of UI exports is not
data. An optional ``Currency code`` / ``Currency`` column names the revenue's currency; otherwise the
source's configured currency applies. Each row keeps ``file:line`` and its raw text.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from billing.errors import Invalid
from storage.sources.base import Batch, make_frame

API_HEADERS = {
    "dimension.date": "day",
    "dimension.line_item_id": "external_item",
    "column.ad_server_impressions": "impressions",
    "column.ad_server_clicks": "clicks",
    "column.ad_server_cpm_and_cpc_revenue": "revenue",
    "dimension.currency_code": "currency",
}
UI_HEADERS = {
    "date": "day",
    "line item id": "external_item",
    "ad server impressions": "impressions",
    "ad server clicks": "clicks",
    "ad server cpm and cpc revenue": "revenue",
    "currency code": "currency",
    "currency": "currency",
}
REQUIRED = ("day", "external_item", "impressions")
TOTAL_MARKERS = {"total", "totals", "grand total"}


def _norm(h: Any) -> str:
    return " ".join(str(h or "").strip().lstrip("\ufeff").split()).lower()


def _shape(headers: list[str]) -> tuple[dict[int, str], bool] | None:
    """Map column positions to schema names; ``None`` when this is no header row."""
    normed = [_norm(h) for h in headers]
    api = any(h.startswith("dimension.") or h.startswith("column.") for h in normed)
    table = API_HEADERS if api else UI_HEADERS
    mapping: dict[int, str] = {}
    for i, h in enumerate(normed):
        name = table.get(h)
        if name and name not in mapping.values():
            mapping[i] = name
    if "day" not in mapping.values():
        return None
    return mapping, api


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _rows_csv(path: Path) -> list[tuple[int, list[str], str]]:
    import csv
    import io

    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    out: list[tuple[int, list[str], str]] = []
    reader = csv.reader(io.StringIO(text))
    start = 1
    for rec in reader:
        line = start
        start = reader.line_num + 1
        raw = "\n".join(lines[line - 1:reader.line_num]) if line - 1 < len(lines) else ",".join(rec)
        out.append((line, rec, raw))
    return out


def _rows_xlsx(path: Path) -> list[tuple[int, list[str], str]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        ws = wb.worksheets[0]
        out = []
        for n, row in enumerate(ws.iter_rows(values_only=True), start=1):
            cells = [_cell(v) for v in row]
            out.append((n, cells, ",".join(cells)))
        return out
    finally:
        wb.close()


def read_report(path: Path | str, *, currency: str | None = None) -> Batch:
    """Parse a GAM report file into a ``stats`` batch (text values, ``file:line`` locations)."""
    p = Path(path)
    if not p.is_file():
        raise Invalid(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        rows = _rows_xlsx(p)
    elif suffix in (".csv", ".txt", ".tsv", ""):
        rows = _rows_csv(p)
    else:
        raise Invalid(f"{p.name}: unsupported report format {suffix!r} (expected .csv or .xlsx)")
    header_at = None
    shape = None
    for idx, (_line, cells, _raw) in enumerate(rows[:50]):  # exports may put a title block above the header
        shape = _shape(cells)
        if shape is not None:
            header_at = idx
            break
    if shape is None or header_at is None:
        raise Invalid(f"{p.name}: no Google Ad Manager header found (expected 'Dimension.DATE' or 'Date', "
                      "'Line item ID', 'Ad server impressions', …)")
    mapping, api = shape
    missing = [c for c in REQUIRED if c not in mapping.values()]
    if missing:
        found = ", ".join(rows[header_at][1])
        raise Invalid(f"{p.name}: missing column(s) {', '.join(missing)} (found: {found})")
    records: list[dict[str, Any]] = []
    ignored = 0
    for line, cells, raw in rows[header_at + 1:]:
        if not any(c.strip() for c in cells):
            continue  # blank line: not a row
        rec: dict[str, Any] = {name: (cells[i].strip() if i < len(cells) else "") for i, name in mapping.items()}
        if _norm(rec.get("day")) in TOTAL_MARKERS or _norm(rec.get("external_item")) in TOTAL_MARKERS:
            ignored += 1
            continue
        if not api:  # UI exports: thousands separators and currency symbols
            for k in ("impressions", "clicks"):
                if rec.get(k):
                    rec[k] = rec[k].replace(",", "").replace("\u00a0", "").replace(" ", "")
            if rec.get("revenue"):
                rec["revenue"] = "".join(ch for ch in rec["revenue"] if ch.isdigit() or ch in ".-")
        rec["conversions"] = None
        rec["affiliate"] = None
        rec["currency"] = rec.get("currency") or currency
        rec["_loc"] = f"{p.name}:{line}"
        rec["_raw"] = raw
        records.append(rec)
    frame = make_frame("stats", records)
    return Batch("stats", frame, revenue_micros=api, ignored=ignored, label=f"report {p.name}")
