"""The invoice document: what an invoice or credit note shows, as stored when it was finalized.

Pure: frozen dataclasses and functions from data to data. :class:`InvoiceDocument` is taken from the
database by :func:`storage.mapping.document_for_invoice`; nothing here reads the clock (dates come
from the invoice) or the database. :mod:`billing.documents.view` formats it for its recipient,
:mod:`billing.documents.facturx` builds its EN 16931 XML; the PDF renderer is an adapter outside
the core (:mod:`bot.documents.pdf`).

Rules a document must satisfy are in :func:`check_document` (problems as values, e.g. lines that
do not add up to the net, a reverse-charge invoice without the buyer's VAT id).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing.addresses import PostalAddress, address_problems, parse_address
from billing.fx import LockedRate
from billing.money import quantum

LOCALES = ("de", "en", "pl")
TYPE_CODES = {"invoice": "380", "credit_note": "381"}  # UNTDID 1001
CATEGORIES = ("S", "AE", "G", "Z", "E", "K", "O", "L", "M")  # UNCL5305
EXEMPTION_CODES = {"AE": "VATEX-EU-AE", "G": "VATEX-EU-G", "K": "VATEX-EU-IC", "O": "VATEX-EU-O"}
ZERO = Decimal(0)


# --------------------------------------------------------------------------- the document


@dataclass(frozen=True)
class Party:
    """A seller or buyer as snapshotted on the invoice at finalization.

    ``address`` holds the free-text lines of older snapshots; ``street``/``postcode``/``city`` the
    structured address (:attr:`postal` prefers them). A seller also carries what its documents must
    state beyond the address (register court and number, managing directors, bank)."""

    id: str
    name: str
    address: tuple[str, ...]
    country: str
    vat_id: str | None = None
    email: str | None = None
    iban: str | None = None
    currency: str | None = None
    street: str | None = None
    postcode: str | None = None
    city: str | None = None
    customer_number: str | None = None  # buyer: the number the advertiser knows us by
    register_court: str | None = None
    register_number: str | None = None
    managing_directors: tuple[str, ...] = ()
    bank_name: str | None = None
    bic: str | None = None

    @property
    def postal(self) -> PostalAddress:
        """The structured address, or the one parsed from the free-text lines when none was stored."""
        if self.street or self.postcode or self.city:
            return PostalAddress(self.street, self.postcode, self.city, self.country.upper())
        return parse_address(self.address, self.country)


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


FxLock = LockedRate  # the rate locked at finalization (billing.fx): ``rate`` units of ``to`` per 1 ``from_``


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
    notes: tuple[str, ...] = ()  # free notes of a one-off or adjusted invoice (per-invoice header override)
    recipient: str | None = None  # an addressee line above the buyer's address (per-invoice header override)
    po_number: str | None = None  # the buyer's purchase-order number (EN 16931 BT-13)

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


def line_amount(quantity: Decimal, unit_price: Decimal, price_base: Decimal, currency: str = "EUR") -> Decimal:
    """EN 16931 BT-131 as a receiver recomputes it: quantity (BT-129) × net price (BT-146) / price base
    quantity (BT-149), rounded half-up to the currency's minor unit.

    >>> line_amount(Decimal(883440), Decimal("4.05"), Decimal(1000))
    Decimal('3577.93')
    >>> line_amount(Decimal("883.44"), Decimal("4.05"), Decimal(1))
    Decimal('3577.93')
    """
    base = price_base or Decimal(1)
    return (quantity * unit_price / base).quantize(quantum(currency), rounding=ROUND_HALF_UP)


THOUSANDS_UNIT = "1,000 impressions"  # how billing stores CPM quantities (in thousands, price per 1,000)


def _dec_or_none(v: Any) -> Decimal | None:
    try:
        return Decimal(str(v)) if v not in (None, "") else None
    except ArithmeticError:
        return None


def document_quantity(quantity: Decimal, unit: str, unit_price: Decimal, amount: Decimal, currency: str, *,
                      computation: Mapping[str, Any] | None = None) -> tuple[Decimal, str, Decimal]:
    """(BT-129 quantity, unit, BT-149 price base) of a stored line, so that quantity × price / base is
    the amount on every document.

    CPM lines are stored in thousands (``883.44 1,000 impressions`` at 4.05 per 1,000); documents show
    impressions with a price base of 1,000 (``883,440 impressions`` × 4.05 / 1,000), which is what an
    EN 16931 receiver recomputes. Other lines keep their quantity; the base is the one their
    computation names (``price_base``/``per``) when it reproduces the amount, else 1 or 1,000,
    whichever does (1 when neither does: the document check then refuses the line).

    >>> document_quantity(Decimal("883.44"), "1,000 impressions", Decimal("4.05"), Decimal("3577.93"), "EUR")
    (Decimal('883440.00'), 'impressions', Decimal('1000'))
    """
    if unit == THOUSANDS_UNIT:
        return quantity * 1000, "impressions", Decimal(1000)
    comp = computation or {}
    named = [b for b in (_dec_or_none(comp.get("price_base")), _dec_or_none(comp.get("per"))) if b]
    for base in (*named, Decimal(1), Decimal(1000)):
        if line_amount(quantity, unit_price, base, currency) == amount:
            return quantity, unit, base
    return quantity, unit, named[0] if named else Decimal(1)


def check_lines(doc: InvoiceDocument) -> list[str]:
    """Every line satisfies BT-131 = BT-129 × BT-146 / BT-149 (rounded to the minor unit); no line's
    period ends before it starts."""
    problems = []
    for li in doc.lines:
        expected = line_amount(li.quantity, li.unit_price, li.price_base, doc.currency)
        if expected != li.amount:
            problems.append(f"line {li.position}: {li.quantity} × {li.unit_price} / {li.price_base} = {expected}, "
                            f"not the amount {li.amount}")
        if li.period_start and li.period_end and li.period_start > li.period_end:
            problems.append(f"line {li.position}: period ends before it starts")
    return problems


def check_totals(doc: InvoiceDocument) -> list[str]:
    """The totals add up (EN 16931 BR-CO-10 sum of lines = net, BR-CO-13/15 net + VAT = gross,
    BR-CO-14 VAT total = sum of the breakdown, BR-CO-17 VAT per group = basis × rate, rounded)."""
    problems = []
    if not doc.lines:
        problems.append("a document needs at least one line")
    lines_total = sum((li.amount for li in doc.lines), ZERO)
    if doc.lines and lines_total != doc.net:
        problems.append(f"lines add up to {lines_total}, the net is {doc.net}")
    if doc.net + doc.vat != doc.gross:
        problems.append(f"net {doc.net} + VAT {doc.vat} is not the gross {doc.gross}")
    groups = vat_breakdown(doc)
    if sum((g.amount for g in groups), ZERO) != doc.vat:
        problems.append("the VAT breakdown does not add up to the VAT total")
    for g in groups:
        expected = (g.basis * g.rate / 100).quantize(quantum(doc.currency), rounding=ROUND_HALF_UP)
        if expected != g.amount:
            problems.append(f"VAT {g.category} {g.rate} %: {g.basis} × {g.rate} % = {expected}, not {g.amount}")
    return problems


def check_vat(doc: InvoiceDocument) -> list[str]:
    problems = []
    if doc.vat_category not in CATEGORIES:
        problems.append(f"unknown VAT category {doc.vat_category!r}")
    if doc.vat_category in ("AE", "G", "Z", "E", "O") and doc.vat != 0:
        problems.append(f"VAT category {doc.vat_category} must carry 0 VAT, not {doc.vat}")
    if doc.vat_category == "AE" and not doc.buyer.vat_id:
        problems.append("reverse charge needs the buyer's VAT id")
    if doc.vat_category in ("S", "AE", "G") and not doc.seller.vat_id:
        problems.append("the seller's VAT id is missing")
    return problems


def check_vat_mix(doc: InvoiceDocument) -> list[str]:
    """EN 16931 BR-O-11…14: a document with VAT category ``O`` ("not subject to VAT") has no other
    category, in its breakdown or its lines. The billing run splits such lines into separate
    invoices (services and goods to a buyer outside the EU); this refuses a document that still mixes.

    >>> from dataclasses import replace
    >>> doc = sample_document()
    >>> check_vat_mix(replace(doc, lines=(doc.lines[0], replace(doc.lines[1], vat_category="O", vat_rate=ZERO))))
    ['VAT category O (not subject to VAT) cannot share a document with S (EN 16931 BR-O-11): bill them separately']
    """
    categories = {li.vat_category for li in doc.lines} | {doc.vat_category}
    if "O" in categories and len(categories) > 1:
        others = ", ".join(sorted(categories - {"O"}))
        return [f"VAT category O (not subject to VAT) cannot share a document with {others} (EN 16931 BR-O-11): "
                "bill them separately"]
    return []


def check_header(doc: InvoiceDocument) -> list[str]:
    problems = []
    if doc.kind not in TYPE_CODES:
        problems.append(f"kind {doc.kind!r} is neither invoice nor credit_note")
    if doc.is_credit_note and not doc.references_number:
        problems.append("a credit note must reference the invoice it corrects")
    if doc.due_date < doc.issue_date:
        problems.append("the due date is before the issue date")
    if doc.fx is not None and not doc.fx.involves(doc.currency):
        problems.append(f"the locked rate {doc.fx.from_}/{doc.fx.to} does not involve {doc.currency}")
    if doc.fx is not None and not doc.fx.involves(doc.accounting_currency):
        problems.append(f"the locked rate {doc.fx.from_}/{doc.fx.to} does not involve the seller's currency "
                        f"{doc.accounting_currency}")
    return problems


def check_addresses(doc: InvoiceDocument) -> list[str]:
    """The seller's and the buyer's address hold what EN 16931 (country codes, BR-9/BR-11) and § 14
    Abs. 4 Nr. 1 UStG (the full address: street, postcode, city) require
    (:func:`billing.addresses.address_problems`).

    A check of the parties, not of the document's arithmetic: pre-invoices are held with these
    problems before anything is numbered (``billing.checks.check_addresses``); rendering and the
    evidence pack report them for documents finalized before the rule."""
    return address_problems("seller", doc.seller.postal) + address_problems("buyer", doc.buyer.postal)


#: The named checks a document must pass before it is numbered and again before it is rendered.
DOCUMENT_CHECKS = (check_header, check_lines, check_totals, check_vat, check_vat_mix)


def check_document(doc: InvoiceDocument) -> list[str]:
    """What would make the document wrong, as a list of problems (empty = fine).

    >>> check_document(sample_document())
    []
    """
    return [p for check in DOCUMENT_CHECKS for p in check(doc)]


def to_accounting(doc: InvoiceDocument, amount: Decimal) -> Decimal | None:
    """``amount`` (document currency) in the seller's accounting currency at the locked rate."""
    fx = doc.fx
    acc = doc.accounting_currency
    if fx is None or acc == doc.currency or not fx.rate:
        return None
    if fx.from_ == acc and fx.to == doc.currency:
        value = amount / fx.rate
    elif fx.from_ == doc.currency and fx.to == acc:
        value = amount * fx.rate
    else:
        return None
    return value.quantize(quantum(acc), rounding=ROUND_HALF_UP)


# --------------------------------------------------------------------------- locale and legal VAT notes


def doc_locale(locale: str | None) -> str:
    """The document language for a recipient's locale: ``de``, ``pl`` or ``en`` (the fallback).

    >>> doc_locale("de_AT"), doc_locale("pl-PL"), doc_locale("fr")
    ('de', 'pl', 'en')
    """
    lang = (locale or "en").replace("-", "_").split("_")[0].lower()
    return lang if lang in LOCALES else "en"


_DE_NOTES = {
    "AE": "Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge, Art. 196 MwStSystRL).",
    "G": "Steuerfreie Ausfuhrlieferung (§ 4 Nr. 1a UStG), 0 % USt.",
    "O": "Nicht im Inland steuerbare Leistung (Leistungsort im Drittland, § 3a Abs. 2 UStG), 0 % USt.",
    "Z": "Nullsatz.",
    "E": "Steuerbefreit.",
}
_EN_NOTES = {
    "AE": "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Council Directive 2006/112/EC)",
    "G": "Export of goods outside the EU: exempt from VAT in the seller's country",
    "O": "Services outside the EU: not subject to VAT in the seller's country",
    "Z": "Zero rated.",
    "E": "Exempt from VAT.",
}


_PL_NOTES = {
    "AE": "Odwrotne obciążenie: podatek rozlicza nabywca (art. 196 dyrektywy 2006/112/WE).",
    "G": "Eksport towarów poza UE: zwolnione z VAT w kraju sprzedawcy.",
    "O": "Usługa poza UE: niepodlegająca opodatkowaniu VAT w kraju sprzedawcy.",
    "Z": "Stawka zerowa.",
    "E": "Zwolnione z VAT.",
}
_NOTES = {"de": _DE_NOTES, "en": _EN_NOTES, "pl": _PL_NOTES}


def default_vat_note(category: str, locale: str, seller_country: str = "") -> str | None:
    return _NOTES[doc_locale(locale)].get(category)


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
        seller=Party("northwind", "Northwind Media GmbH", (), "DE", vat_id="DE811907980",
                     iban="DE89370400440532013000", currency="EUR", street="Hafenstrasse 1", postcode="20457",
                     city="Hamburg", register_court="Amtsgericht Hamburg", register_number="HRB 123456",
                     managing_directors=("Nora Nordmann",), bank_name="Commerzbank", bic="COBADEFFXXX"),
        buyer=Party("elbe", "Autohaus Elbe KG", (), "DE", vat_id="DE136695976", street="Elbchaussee 10",
                    postcode="22763", city="Hamburg", customer_number="K-10042"),
        lines=lines, net=Decimal("1000.00"), vat=Decimal("190.00"), gross=Decimal("1190.00"), vat_rate=rate,
        vat_category="S", service_start=date(2026, 2, 1), service_end=date(2026, 2, 28), locale=locale,
        approvals=(Approval("system", "billbot", datetime(2026, 3, 1, 8, 0, tzinfo=UTC), "approve", "0" * 16),),
    )
