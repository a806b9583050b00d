"""The document as its recipient reads it: Babel formatting per locale, the lines table's layout,
and the HTML from the Jinja2 templates in ``templates/``.

- :func:`view` formats the document for its recipient (Babel: money, dates and quantities per the
  buyer's locale, ``de`` or ``en``); :func:`render_html` fills the templates.
- :func:`wrap` / :func:`line_rows` lay out the lines table with the font's advance widths (read with
  fontTools: font metrics only, no rendering engine), so the renderer never wraps a cell.

>>> fmt_money(Decimal("1190.00"), "EUR", "de").replace("\\xa0", " ")
'1.190,00 €'
>>> fmt_money(Decimal("1190.00"), "EUR", "en")
'€1,190.00'
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from stdnum import iso11649

from billing.documents.model import InvoiceDocument, Party, default_vat_note, doc_locale, to_accounting, vat_breakdown
from billing.money import quantum
from billing.payments import creditor_reference, epc_qr_payload

TEMPLATES_DIR = Path(__file__).resolve().parent.parent.parent / "templates"


# --------------------------------------------------------------------------- formatting (Babel)


@lru_cache(maxsize=8)
def _babel(locale: str) -> Any:
    from babel import Locale

    return Locale.parse(doc_locale(locale))


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


def country_name(code: str, locale: str) -> str:
    """The country's name in the document's language (CLDR via Babel): ``Österreich``, ``Poland``."""
    return str(_babel(locale).territories.get(code.upper(), code.upper()))


def party_lines(party: Party, locale: str, *, with_country: bool) -> tuple[str, ...]:
    """The address lines printed for ``party``: street, postcode and city (structured, or parsed from an
    older snapshot's free text), and the country's name when ``with_country``."""
    lines = party.postal.lines() or party.address
    return (*lines, country_name(party.country, locale)) if with_country else lines


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
        "iban": "IBAN", "payment_reference": "Payment reference",
        "reference": "Corrects invoice {number} of {date}.", "reason": "Reason: {reason}",
        "terms": "Payable without deduction by {due} (net {days} days).",
        "terms_now": "Payable immediately without deduction.",
        "credit_terms": "The amount will be credited to your account.",
        "fx": "Converted at the rate locked at issue: 1 {base} = {rate} {quote} ({source}, {day}).",
        "fx_totals": "In {currency}: net {net}, VAT {vat}, total {gross}.",
        "fx_rule": "Exchange rate rule: {rule}.", "fx_rule_issue_date": "the rate of the issue date",
        "fx_rule_service_end": "the rate of the service period's last day",
        "fx_rule_agreed": "the rate agreed for the campaign",
        "period": "Period", "page": "Page", "vat_group": "VAT {rate} on {basis}",
        "cat_AE": "reverse charge", "cat_G": "export", "cat_O": "not subject to VAT",
        "cat_Z": "zero rated", "cat_E": "exempt",
        "rounding": "Rounding: each line to the currency's minor unit; VAT on the net total; half up.",
        "register": "Register court: {register}", "directors": "Managing directors: {names}",
        "bank": "Bank: {name}", "bic": "BIC", "po_number": "Your order no.",
    },
    "de": {
        "invoice": "Rechnung", "credit_note": "Rechnungskorrektur", "number": "Nummer",
        "issue_date": "Rechnungsdatum", "due_date": "Fällig am", "service_period": "Leistungszeitraum",
        "customer": "Kundennr.", "currency": "Währung", "vat_id": "USt-IdNr.", "pos": "Pos.",
        "description": "Beschreibung", "quantity": "Menge", "unit": "Einheit", "unit_price": "Einzelpreis",
        "amount": "Betrag", "net": "Nettobetrag", "vat": "USt.", "gross": "Gesamtbetrag",
        "vat_breakdown": "Umsatzsteuer", "category": "Kategorie", "rate": "Satz", "basis": "Bemessungsgrundlage",
        "approvals": "Freigegeben von", "who": "Wer", "decision": "Entscheidung", "when": "Wann",
        "fingerprint": "Signatur-Fingerabdruck", "iban": "IBAN", "payment_reference": "Verwendungszweck",
        "reference": "Korrektur zur Rechnung {number} vom {date}.", "reason": "Grund: {reason}",
        "terms": "Zahlbar ohne Abzug bis {due} ({days} Tage netto).",
        "terms_now": "Zahlbar sofort ohne Abzug.",
        "credit_terms": "Der Betrag wird Ihrem Konto gutgeschrieben.",
        "fx": "Umgerechnet zum bei Rechnungsstellung festgeschriebenen Kurs 1 {base} = {rate} {quote} "
              "({source}, {day}).",
        "fx_totals": "In {currency}: netto {net}, USt. {vat}, gesamt {gross}.",
        "fx_rule": "Kursregel: {rule}.", "fx_rule_issue_date": "Kurs des Rechnungsdatums",
        "fx_rule_service_end": "Kurs des letzten Tages des Leistungszeitraums",
        "fx_rule_agreed": "für die Kampagne vereinbarter Kurs",
        "period": "Zeitraum", "page": "Seite", "vat_group": "USt. {rate} auf {basis}",
        "cat_AE": "Reverse Charge", "cat_G": "Ausfuhr", "cat_O": "nicht steuerbar",
        "cat_Z": "Nullsatz", "cat_E": "steuerfrei",
        "rounding": "Rundung: jede Position auf die kleinste Währungseinheit; USt auf die Nettosumme; "
                    "kaufmännisch.",
        "register": "Registergericht: {register}", "directors": "Geschäftsführung: {names}",
        "bank": "Bank: {name}", "bic": "BIC", "po_number": "Ihre Bestellnummer",
    },
}

LABELS["pl"] = {
    "payment_reference": "Tytuł przelewu",
    "invoice": "Faktura", "credit_note": "Faktura korygująca", "number": "Numer", "issue_date": "Data wystawienia",
    "due_date": "Termin płatności", "service_period": "Okres świadczenia usług", "customer": "Nr klienta",
    "currency": "Waluta", "vat_id": "NIP UE", "pos": "Lp.", "description": "Opis", "quantity": "Ilość",
    "unit": "Jednostka", "unit_price": "Cena jedn.", "amount": "Kwota", "net": "Kwota netto", "vat": "VAT",
    "gross": "Razem", "vat_breakdown": "Zestawienie VAT", "category": "Kategoria", "rate": "Stawka",
    "basis": "Podstawa opodatkowania", "approvals": "Zatwierdzone przez", "who": "Kto", "decision": "Decyzja",
    "when": "Kiedy", "fingerprint": "Odcisk podpisu", "iban": "IBAN",
    "reference": "Korekta faktury {number} z dnia {date}.", "reason": "Przyczyna: {reason}",
    "terms": "Płatne bez potrąceń do {due} ({days} dni netto).",
    "terms_now": "Płatne natychmiast bez potrąceń.",
    "credit_terms": "Kwota zostanie zaliczona na Państwa rachunek.",
    "fx": "Przeliczono po kursie ustalonym przy wystawieniu: 1 {base} = {rate} {quote} ({source}, {day}).",
    "fx_totals": "W {currency}: netto {net}, VAT {vat}, razem {gross}.",
    "fx_rule": "Zasada kursu: {rule}.", "fx_rule_issue_date": "kurs z dnia wystawienia",
    "fx_rule_service_end": "kurs z ostatniego dnia okresu świadczenia usług",
    "fx_rule_agreed": "kurs uzgodniony dla kampanii",
    "period": "Okres", "page": "Strona", "vat_group": "VAT {rate} od {basis}",
    "cat_AE": "odwrotne obciążenie", "cat_G": "eksport", "cat_O": "niepodlegające opodatkowaniu",
    "cat_Z": "stawka zerowa", "cat_E": "zwolnione",
    "rounding": "Zaokrąglenia: każda pozycja do najmniejszej jednostki waluty; VAT od sumy netto; "
                "połówki w górę.",
    "register": "Sąd rejestrowy: {register}", "directors": "Zarząd: {names}",
    "bank": "Bank: {name}", "bic": "BIC", "po_number": "Nr zamówienia",
}

#: units in the document's language; a unit not listed is printed as stored
UNITS: dict[str, dict[str, str]] = {
    "en": {"amount": "lump sum", "unit": "unit", "impressions": "impressions", "clicks": "clicks",
           "conversions": "conversions", "leads": "leads", "events": "events", "flat": "flat fee",
           "1,000 impressions": "{thousand} impressions"},
    "de": {"amount": "pauschal", "unit": "Stk.", "impressions": "Impressionen", "clicks": "Klicks",
           "conversions": "Conversions", "leads": "Leads", "events": "Ereignisse", "flat": "pauschal",
           "1,000 impressions": "{thousand} Impressionen"},
    "pl": {"amount": "ryczałt", "unit": "szt.", "impressions": "wyświetlenia", "clicks": "kliknięcia",
           "conversions": "konwersje", "leads": "leady", "events": "zdarzenia", "flat": "ryczałt",
           "1,000 impressions": "{thousand} wyświetleń"},
}

DECISIONS: dict[str, dict[str, str]] = {
    "en": {"approve": "approved", "force": "forced", "reject": "rejected", "system": "approved (system)"},
    "de": {"approve": "genehmigt", "force": "erzwungen", "reject": "abgelehnt", "system": "genehmigt (System)"},
    "pl": {"approve": "zatwierdzone", "force": "wymuszone", "reject": "odrzucone",
           "system": "zatwierdzone (system)"},
}


def unit_text(unit: str, locale: str) -> str:
    """A unit in the document's language, its numbers in the locale's format (Babel).

    >>> unit_text("1,000 impressions", "de"), unit_text("clicks", "de"), unit_text("clicks", "pl")
    ('1.000 Impressionen', 'Klicks', 'kliknięcia')
    """
    loc = doc_locale(locale)
    return UNITS[loc].get(unit, unit).format(thousand=fmt_qty(Decimal(1000), loc))


def vat_note_text(doc: InvoiceDocument) -> str | None:
    """The legal VAT note shown on the document: the stored note in English, the standard German or
    Polish wording for ``de`` and ``pl`` recipients (the stored note is English)."""
    if doc.vat_category == "S":
        return None
    if doc_locale(doc.locale) != "en":
        return default_vat_note(doc.vat_category, doc.locale) or doc.vat_note
    return doc.vat_note or default_vat_note(doc.vat_category, "en")


def seller_footer(seller: Party, locale: str) -> tuple[str, str, str]:
    """The sender line, the seller's ids and bank, and its register and managing directors, which a
    company's business documents state (§ 35a GmbHG, § 80 AktG)."""
    lab = LABELS[doc_locale(locale)]
    line = " · ".join(x for x in (seller.name, *party_lines(seller, locale, with_country=True)) if x)
    ids = " · ".join(x for x in (
        f"{lab['vat_id']} {seller.vat_id}" if seller.vat_id else "",
        lab["bank"].format(name=seller.bank_name) if seller.bank_name else "",
        f"{lab['iban']} {seller.iban}" if seller.iban else "",
        f"{lab['bic']} {seller.bic}" if seller.bic else "",
    ) if x)
    register = ", ".join(x for x in (seller.register_court, seller.register_number) if x)
    legal = " · ".join(x for x in (
        lab["register"].format(register=register) if register else "",
        lab["directors"].format(names=", ".join(seller.managing_directors)) if seller.managing_directors else "",
    ) if x)
    return line, ids, legal


def _fx_notes(doc: InvoiceDocument, lab: dict[str, str], loc: str) -> list[str]:
    """The locked rate (with its rule, when the invoice names one) and the totals in the seller's currency."""
    fx = doc.fx
    if fx is None:
        return []
    rate = format_decimal(fx.rate, format="#,##0.00########", locale=loc)
    notes = [lab["fx"].format(base=fx.from_, quote=fx.to, rate=rate, source=fx.source, day=fmt_date(fx.day, loc))]
    if fx.rule:  # invoices locked before the FX cutoff rules do not name one
        notes.append(lab["fx_rule"].format(rule=lab.get(f"fx_rule_{fx.rule}", fx.rule)))
    acc = doc.accounting_currency
    amounts = [to_accounting(doc, a) for a in (doc.net, doc.vat, doc.gross)]
    if all(a is not None for a in amounts):
        net_a, vat_a, gross_a = (fmt_money(a, acc, loc) for a in amounts if a is not None)
        notes.append(lab["fx_totals"].format(currency=acc, net=net_a, vat=vat_a, gross=gross_a))
    return notes


def header_fields(doc: InvoiceDocument, loc: str) -> list[tuple[str, str]]:
    """The document's header: number, dates, references the buyer books it by, currency."""
    lab = LABELS[loc]
    meta = [
        (lab["number"], doc.number),
        (lab["issue_date"], fmt_date(doc.issue_date, loc)),
    ]
    if not doc.is_credit_note:  # with the ISO 11649 creditor reference, in groups of four as banks print it
        meta += [(lab["due_date"], fmt_date(doc.due_date, loc)),
                 (lab["payment_reference"], iso11649.format(creditor_reference(doc.number)))]
    period = _period(doc.service_start, doc.service_end, loc)
    if period:
        meta.append((lab["service_period"], period))
    meta.append((lab["customer"], doc.buyer.customer_number or doc.buyer.id))
    if doc.po_number:  # the buyer's purchase order (EN 16931 BT-13) their accounts payable books against
        meta.append((lab["po_number"], doc.po_number))
    meta.append((lab["currency"], doc.currency))
    return meta


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
            "unit": unit_text(li.unit, loc),
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
    notes += doc.notes
    note = vat_note_text(doc)
    if note:
        notes.append(note)
    notes += _fx_notes(doc, lab, loc)
    if doc.is_credit_note:
        terms = lab["credit_terms"]
    elif doc.payment_terms_days > 0:
        terms = lab["terms"].format(due=fmt_date(doc.due_date, loc), days=doc.payment_terms_days)
    else:
        terms = lab["terms_now"]
    seller = doc.seller
    seller_line, seller_ids, seller_legal = seller_footer(seller, loc)
    meta = header_fields(doc, loc)
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
        "seller": {"name": seller.name, "line": seller_line, "ids": seller_ids, "legal": seller_legal},
        # the buyer's country is printed when it is not the seller's (a cross-border invoice)
        "buyer": {"name": doc.buyer.name, "vat_id": doc.buyer.vat_id or "",
                  "address": [*([doc.recipient] if doc.recipient else []),
                              *party_lines(doc.buyer, loc, with_country=doc.buyer.country != seller.country)]},
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
        "epc_qr": epc_qr(doc),
    }


def epc_qr(doc: InvoiceDocument) -> str | None:
    """A GiroCode (EPC QR) for EUR invoices with the seller's IBAN, as a PNG data URI of one pixel per
    module (a 2-module quiet zone; the stylesheet scales it without interpolation, so the printed code is
    as sharp as a vector one); else None. A bitmap, not SVG: WeasyPrint lays out an SVG path of a QR code's
    hundreds of squares point by point, about a fifth of an invoice's whole rendering time."""
    if doc.is_credit_note or doc.currency != "EUR" or not doc.seller.iban or doc.gross <= 0:
        return None
    from billing.documents.qr import qr_png_data_uri  # lazy: only documents that carry a code need segno

    return qr_png_data_uri(epc_qr_payload(name=doc.seller.name, iban=doc.seller.iban, amount=doc.gross,
                                          reference=creditor_reference(doc.number)))


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
