"""Google Ad Manager delivery reports (CSV, TSV, ``.csv.gz`` or XLSX) in their common shapes.

- the API's CSV dump (``ReportService``, ``CSV_DUMP``): ``Dimension.DATE, Dimension.LINE_ITEM_ID,
  Column.AD_SERVER_IMPRESSIONS, Column.AD_SERVER_CLICKS, Column.AD_SERVER_CPM_AND_CPC_REVENUE`` — or the
  ``Column.TOTAL_LINE_ITEM_LEVEL_*`` metrics — revenue in **micros**, possibly with the local currency's
  symbol in front (``€ 112545450``); the report downloader writes it gzipped (``.csv.gz``);
- the UI export: ``Date, Line item ID, Ad server impressions, Ad server clicks, Ad server CPM and CPC
  revenue`` (or ``Total …``) — revenue in currency units, numbers written the way the user's locale
  writes them (``1,234.56`` or ``1.234,56 €``).

Reading is strict, never a guess per cell:

- the encoding is told by a byte-order mark (UTF-8, UTF-16 as Excel writes "Unicode text"), else UTF-8,
  else Windows-1252 (a superset of Latin-1's printable characters); anything else — or binary — is
  refused (exit 2);
- the delimiter (comma, semicolon, tab, pipe) is found by :class:`csv.Sniffer` on the header;
- the decimal separator is decided once per file, from values that can only be read one way
  (``1.234,56``, ``12,5``, a grouped impression count), or given (``decimal=","``); a value that could be
  read either way in a file that never tells (``1,234``) is quarantined with the reason, as is every value
  that contradicts the file's separator; a file that uses both is refused;
- XLSX formula cells without a cached value are quarantined (never read as 0).

Other columns (names, ids of orders, …) are ignored. A ``Total`` row at the end of UI exports is not
data. An optional ``Currency code`` / ``Currency`` column names the revenue's currency; otherwise the
symbol in the revenue cell or the source's configured currency does. Each row keeps ``file:line`` and
its raw text.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zipfile
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from billing.errors import Invalid
from billing.money import is_currency
from storage.sources.base import BadRow, Batch, make_frame

API_HEADERS = {
    "dimension.date": "day",
    "dimension.line_item_id": "external_item",
    "column.ad_server_impressions": "impressions",
    "column.ad_server_clicks": "clicks",
    "column.ad_server_cpm_and_cpc_revenue": "revenue",
    "column.total_line_item_level_impressions": "impressions",
    "column.total_line_item_level_clicks": "clicks",
    "column.total_line_item_level_cpm_and_cpc_revenue": "revenue",
    "column.total_line_item_level_all_revenue": "revenue",
    "dimension.currency_code": "currency",
}
UI_HEADERS = {
    "date": "day",
    "line item id": "external_item",
    "ad server impressions": "impressions",
    "ad server clicks": "clicks",
    "ad server cpm and cpc revenue": "revenue",
    "total impressions": "impressions",
    "total clicks": "clicks",
    "total cpm and cpc revenue": "revenue",
    "currency code": "currency",
    "currency": "currency",
}
REQUIRED = ("day", "external_item", "impressions")
TOTAL_MARKERS = {"total", "totals", "grand total", "gesamt", "summe"}
NUMERIC = ("impressions", "clicks", "revenue")
COUNTS = ("impressions", "clicks")
SYMBOLS = {"€": "EUR", "$": "USD", "US$": "USD", "£": "GBP", "¥": "JPY", "CHF": "CHF", "Fr.": "CHF", "zł": "PLN",
           "kr": "SEK", "R$": "BRL", "₹": "INR", "A$": "AUD", "C$": "CAD"}
MAX_BYTES = 200 * 1024 * 1024  # a report bigger than this (unpacked) is no daily delivery report
_SPACES = re.compile(r"[\s\u00a0\u202f\u2009']")
_MONEY = re.compile(r"^(?P<pre>[^\d\s+-][^\d+-]{0,3}?)?\s*(?P<num>[-+]?[\d.,'\s\u00a0\u202f\u2009]*\d)\s*"
                    r"(?P<post>[^\d\s.,][^\d]{0,3})?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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


# --------------------------------------------------------------------------- bytes → text → rows


def _bytes(p: Path) -> bytes:
    raw = p.read_bytes()
    if p.suffix.lower() == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                raw = gz.read(MAX_BYTES + 1)
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise Invalid(f"{p.name}: not a readable gzip file ({e})") from None
    if len(raw) > MAX_BYTES:
        raise Invalid(f"{p.name}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    return raw


def decode(name: str, raw: bytes) -> str:
    """The text of a report: byte-order mark, else UTF-8, else Windows-1252; binary is refused."""
    boms = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
    for bom, enc in boms:
        if raw.startswith(bom):
            try:
                text = raw[len(bom):].decode(enc)
            except UnicodeDecodeError as e:
                raise Invalid(f"{name}: not valid {enc.upper()} text after its byte-order mark ({e.reason} at byte "
                              f"{e.start + len(bom)})") from None
            break
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            try:
                text = raw.decode("cp1252")
            except UnicodeDecodeError:
                raise Invalid(f"{name}: not text in a known encoding (UTF-8, UTF-16 with a byte-order mark, "
                              "Windows-1252/Latin-1); save it as CSV UTF-8") from None
    bad = _CONTROL.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise Invalid(f"{name}: binary data at line {line} — not a text report (UTF-16 without a byte-order "
                      "mark? save it as CSV UTF-8)")
    return text


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    """The CSV dialect, sniffed from the header line on (a title block above it would mislead)."""
    lines = text.splitlines()[:60]
    start = next((i for i, ln in enumerate(lines) if "date" in ln.lower() and "impressions" in ln.lower()), 0)
    sample = "\n".join(lines[start:])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        header = lines[start] if lines else ""
        best = max(",;\t|", key=header.count)

        class _Found(csv.excel):
            delimiter = best

        return _Found


def _rows_text(name: str, text: str) -> list[tuple[int, list[str], str]]:
    lines = text.splitlines()
    out: list[tuple[int, list[str], str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text))
    start = 1
    try:
        for rec in reader:
            line = start
            start = reader.line_num + 1
            raw = "\n".join(lines[line - 1:reader.line_num]) if line - 1 < len(lines) else ",".join(rec)
            out.append((line, rec, raw))
    except csv.Error as e:
        raise Invalid(f"{name}:{start}: not CSV ({e})") from None
    return out


Row = tuple[int, list[str], str, dict[int, str]]  # line, cells, raw, {column: why the cell is unusable}


def _rows_xlsx(p: Path) -> list[Row]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        values = load_workbook(p, read_only=True, data_only=True)
        formulas = load_workbook(p, read_only=True, data_only=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError, TypeError) as e:
        raise Invalid(f"{p.name}: not a readable Excel workbook ({type(e).__name__}: {e})") from None
    try:
        out: list[Row] = []
        rows = zip(values.worksheets[0].iter_rows(values_only=True),
                   formulas.worksheets[0].iter_rows(values_only=True), strict=False)
        for n, (row, frow) in enumerate(rows, start=1):
            cells = [_cell(v) for v in row]
            unusable = {i: "a formula without a cached value (open and save it in Excel, or export values)"
                        for i, (v, fv) in enumerate(zip(row, frow, strict=False))
                        if v is None and isinstance(fv, str) and fv.startswith("=")}
            out.append((n, cells, ",".join(cells), unusable))
        return out
    finally:
        values.close()
        formulas.close()


# --------------------------------------------------------------------------- numbers


def _other(sep: str) -> str:
    return "." if sep == "," else ","


def implied_decimal(value: str, *, count: bool) -> str | None:
    """The decimal separator ``value`` can only be read with, or None when it tells nothing.

    ``1.234,56`` → ``,``; ``12,5`` → ``,``; ``1,234,567`` → ``.``; an impression count ``1.234`` → ``,``
    (counts have no decimals, so a dot there groups thousands); ``1,234`` of money → None (either way);
    something that is no number under the reading it suggests (``4.2.0``) → None."""
    v = _SPACES.sub("", value)
    sep: str | None = None
    if "," in v and "." in v:
        sep = v[max(v.rfind(","), v.rfind("."))]
    else:
        for c in ",.":
            n = v.count(c)
            if n > 1:
                sep = _other(c)
            elif n == 1:
                frac = v.split(c, 1)[1]
                sep = c if len(frac) != 3 else (_other(c) if count else None)
    if sep is None or v.count(sep) > 1 or not _grouped(v, _other(sep), sep):
        return None
    return sep


def _grouped(v: str, group: str, dec: str) -> bool:
    whole = v.split(dec, 1)[0].lstrip("+-")
    if group not in whole:
        return True
    parts = whole.split(group)
    return 1 <= len(parts[0]) <= 3 and all(len(x) == 3 for x in parts[1:])


def read_number(value: str, decimal: str | None, *, count: bool) -> tuple[str | None, str | None]:
    """``(plain text number, None)`` or ``(None, why not)`` for a value of a file whose decimal
    separator is ``decimal`` (None: the file never tells)."""
    v = _SPACES.sub("", value)
    if not v:
        return "", None
    if not re.fullmatch(r"[-+]?[\d.,]*\d[\d.,]*", v):
        return None, None  # not a number at all: the ingest names it
    implied = implied_decimal(v, count=count)
    if decimal is None:
        if implied is None and ("," in v or "." in v):
            return None, (f"ambiguous number {value!r}: the file never shows its decimal separator "
                          "(import it with --decimal , or --decimal .)")
        decimal = implied or "."
    elif implied is not None and implied != decimal:
        return None, f"number {value!r} does not use this file's decimal separator {decimal!r}"
    group = _other(decimal)
    if v.count(decimal) > 1 or not _grouped(v, group, decimal):
        return value, None  # no number under this file's reading: the ingest quarantines it as it is
    return v.replace(group, "").replace(decimal, "."), None


def split_money(value: str) -> tuple[str, str | None, str | None]:
    """``"€ 112545450"`` → ``("112545450", "EUR", None)``; ``"1.234,56 €"`` → ``("1.234,56", "EUR", None)``;
    the third value says why not when a symbol is unknown."""
    m = _MONEY.match(value.strip())
    if m is None:
        return value.strip(), None, None
    sym = (m.group("pre") or m.group("post") or "").strip()
    if not sym:
        return m.group("num"), None, None
    code = SYMBOLS.get(sym) or (sym.upper() if len(sym) == 3 and is_currency(sym.upper()) else None)
    if code is None:
        return m.group("num"), None, f"unknown currency symbol {sym!r} in {value!r}"
    return m.group("num"), code, None


def file_decimal(name: str, cells: Iterable[tuple[int, str, str]], given: str | None) -> str | None:
    """The file's decimal separator: ``given``, else the one its values imply (None: they never tell).
    Values implying both are a broken file: refused, naming a line of each."""
    if given is not None:
        if given not in (",", "."):
            raise Invalid(f"--decimal: must be ',' or '.' (got {given!r})")
        return given
    seen: dict[str, tuple[int, str]] = {}
    for line, col, value in cells:
        v = split_money(value)[0] if col == "revenue" else value
        sep = implied_decimal(v, count=col in COUNTS)
        if sep is not None:
            seen.setdefault(sep, (line, value))
    if len(seen) > 1:
        (l1, v1), (l2, v2) = seen[","], seen["."]
        raise Invalid(f"{name}: numbers use both ',' (line {l1}: {v1!r}) and '.' (line {l2}: {v2!r}) as decimal "
                      "separator; import it with --decimal")
    return next(iter(seen), None)


# --------------------------------------------------------------------------- the report


def _table(p: Path) -> list[Row]:
    name = p.name.lower().removesuffix(".gz")
    kind = Path(name).suffix
    if kind in (".xlsx", ".xlsm"):
        return _rows_xlsx(p)
    if kind in (".csv", ".txt", ".tsv", "", ".gz"):
        return [(n, cells, raw, {}) for n, cells, raw in _rows_text(p.name, decode(p.name, _bytes(p)))]
    raise Invalid(f"{p.name}: unsupported report format {kind!r} (expected .csv, .tsv, .csv.gz or .xlsx)")


def read_report(path: Path | str, *, currency: str | None = None, decimal: str | None = None) -> Batch:
    """Parse a GAM report file into a ``stats`` batch (text values, ``file:line`` locations); rows with
    a value that cannot be read for sure go to ``batch.bad`` with the reason."""
    p = Path(path)
    if not p.is_file():
        raise Invalid(f"{p}: no such file")
    rows = _table(p)
    header_at = None
    shape = None
    for idx, (_line, cells, _raw, _u) in enumerate(rows[:50]):  # exports may put a title block above the header
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
    data: list[tuple[int, dict[str, Any], str, dict[str, str]]] = []
    ignored = 0
    for line, cells, raw, unusable in rows[header_at + 1:]:
        if not any(c.strip() for c in cells):
            continue  # blank line: not a row
        fields: dict[str, Any] = {name: (cells[i].strip() if i < len(cells) else "") for i, name in mapping.items()}
        if _norm(fields.get("day")) in TOTAL_MARKERS or _norm(fields.get("external_item")) in TOTAL_MARKERS:
            ignored += 1
            continue
        data.append((line, fields, raw, {mapping[i]: why for i, why in unusable.items() if i in mapping}))
    dec = None if api else file_decimal(
        p.name, ((line, c, rec[c]) for line, rec, _r, _u in data for c in NUMERIC if rec.get(c)), decimal)
    records: list[dict[str, Any]] = []
    bad: list[BadRow] = []
    for line, rec, raw, cell_problems in data:
        loc = f"{p.name}:{line}"
        problems = [f"{col}: {why}" for col, why in cell_problems.items()]
        problems += _numbers(rec, api=api, decimal=dec)
        if problems:
            bad.append(BadRow(loc, raw, "; ".join(problems)))
            continue
        rec["conversions"] = None
        rec["affiliate"] = None
        rec["currency"] = rec.get("currency") or currency
        rec["_loc"] = loc
        rec["_raw"] = raw
        records.append(rec)
    frame = make_frame("stats", records)
    return Batch("stats", frame, bad=bad, revenue_micros=api, ignored=ignored, label=f"report {p.name}")


def _numbers(rec: dict[str, Any], *, api: bool, decimal: str | None) -> list[str]:
    """Rewrite ``rec``'s numbers as plain text (``1234.56``) in place; the problems, if any."""
    problems: list[str] = []
    if rec.get("revenue"):
        amount, code, why = split_money(rec["revenue"])
        if why:
            problems.append(why)
        elif code is not None:
            given = (rec.get("currency") or "").strip().upper()
            if given and given != code:
                problems.append(f"revenue {rec['revenue']!r} is in {code}, the row's currency is {given}")
            rec["currency"] = code
        rec["revenue"] = amount
    for col in NUMERIC:
        value = rec.get(col)
        if not value:
            continue
        if api:  # the API writes plain integers (micros for money): nothing to interpret
            rec[col] = _SPACES.sub("", value)
            continue
        plain, why = read_number(value, decimal, count=col in COUNTS)
        if why is not None:
            problems.append(f"{col}: {why}")
        elif plain is not None:
            rec[col] = plain
    return problems
