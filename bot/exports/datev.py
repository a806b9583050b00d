"""The DATEV *Buchungsstapel* (EXTF format, header version 700, category 21, format version 13).

Layout as DATEV publishes it for the "DATEV-Format" (CSV): line 1 the header (31 fields: ``EXTF``,
700, 21, ``Buchungsstapel``, 13, created at ``YYYYMMDDHHMMSSfff``, origin, consultant and client
number, fiscal year start, G/L account length, the batch's date range, its label, booking type 1
(financial accounting), currency, chart ``03``/``04``); line 2 the column headings; then one booking
per document. Semicolon separated, text in double quotes (``""`` inside), numbers bare, amounts with a
decimal comma and no thousands separator, always positive with ``S`` (debit) or ``H`` (credit),
Belegdatum ``TTMM`` (the year comes from the header's date range), Windows-1252, CRLF.

A booking debits the debtor (``Konto``) with the gross and credits the revenue account
(``Gegenkonto``); DATEV's automatic accounts split off the VAT, a BU key from the chart can name it
instead. A credit note is the same booking with ``H``. Foreign currency: ``Umsatz`` in the document's
currency (``WKZ Umsatz``), ``Kurs`` its units per 1 unit of the entity's currency, ``Basis-Umsatz`` the
locked amount in the entity's currency. Belegfeld 2 carries an invoice's due date (``TTMMJJ``, DATEV's
OPOS convention); column 40 the buyer's VAT id for reverse-charge bookings.

A payment debits the bank account (``Konto``) against the debtor (``Gegenkonto``) on its booking day, a
write-off the write-off account; Belegfeld 1 is the invoice's number, so DATEV's open-item list (OPOS)
clears the invoice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from billing.accounting import Entry

COLUMNS = (
    "Umsatz (ohne Soll/Haben-Kz)", "Soll/Haben-Kennzeichen", "WKZ Umsatz", "Kurs", "Basis-Umsatz",
    "WKZ Basis-Umsatz", "Konto", "Gegenkonto (ohne BU-Schlüssel)", "BU-Schlüssel", "Belegdatum", "Belegfeld 1",
    "Belegfeld 2", "Skonto", "Buchungstext", "Postensperre", "Diverse Adressnummer", "Geschäftspartnerbank",
    "Sachverhalt", "Zinssperre", "Beleglink",
    *(f"Beleginfo - {kind} {i}" for i in range(1, 9) for kind in ("Art", "Inhalt")),
    "KOST1 - Kostenstelle", "KOST2 - Kostenstelle", "Kost-Menge", "EU-Land u. UStID",
)
ENCODING = "cp1252"  # DATEV reads ANSI (Windows-1252)
TEXT_MAX = 60  # Buchungstext
BELEGFELD_MAX = 36  # Belegfeld 1


def text(value: str | None, limit: int | None = None) -> str:
    v = (value or "").replace("\r", " ").replace("\n", " ")
    if limit is not None:
        v = v[:limit]
    return '"' + v.replace('"', '""') + '"'


def amount(value: Decimal) -> str:
    """``1234,56``: two decimals, decimal comma, no sign (the side is the S/H field)."""
    return f"{abs(value):.2f}".replace(".", ",")


def rate(value: Decimal) -> str:
    return f"{value:.6f}".replace(".", ",")


def yyyymmdd(d: date) -> str:
    return d.strftime("%Y%m%d")


def header_line(h: Mapping[str, Any]) -> str:
    created = datetime.fromisoformat(str(h["created_at"]))
    fields = [
        text("EXTF"), "700", "21", text("Buchungsstapel"), "13",
        created.strftime("%Y%m%d%H%M%S") + f"{created.microsecond // 1000:03d}",
        "", text("RE"), text(str(h.get("exported_by") or ""), 25), text(""),
        str(h["consultant_number"]), str(h["client_number"]),
        yyyymmdd(date.fromisoformat(str(h["fiscal_year_begin"]))), str(h["account_length"]),
        yyyymmdd(date.fromisoformat(str(h["date_from"]))), yyyymmdd(date.fromisoformat(str(h["date_to"]))),
        text(str(h.get("label") or ""), 30), text(""), "1", "0", "0", text(str(h["currency"])),
        "", text(""), "", "", text(str(h.get("skr") or "03")), "", "", text(""), text(""),
    ]
    return ";".join(fields)


def booking_line(e: Entry) -> str:
    foreign = e.rate is not None
    side = "S" if e.gross >= 0 else "H"
    konto, gegenkonto = (e.contra_account, e.debtor_account) if e.is_allocation else (e.debtor_account,
                                                                                      e.revenue_account)
    row = [
        amount(e.gross), text(side), text(e.currency),
        rate(e.rate) if e.rate is not None else "",
        amount(e.base_gross) if foreign else "", text(e.base_currency if foreign else ""),
        konto, gegenkonto, text(e.bu_key), e.issue_date.strftime("%d%m"),
        text(e.number, BELEGFELD_MAX), text(e.due_date.strftime("%d%m%y") if e.kind == "invoice" else ""), "",
        text(e.text, TEXT_MAX),
    ]
    row += [""] * (len(COLUMNS) - 1 - len(row))
    row.append(text(e.buyer_vat_id or ""))
    return ";".join(row)


def datev_buchungsstapel(header: Mapping[str, Any], entries: Sequence[Entry]) -> bytes:
    """The batch as a DATEV EXTF file. Documents with a zero total book nothing and are left out."""
    lines = [header_line(header), ";".join(text(c) for c in COLUMNS)]
    lines += [booking_line(e) for e in entries if e.gross != 0]
    return ("\r\n".join(lines) + "\r\n").encode(ENCODING, errors="replace")
