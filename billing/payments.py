"""Money in: payment references, cash application, payment states, aging and DSO — pure rules.

Everything here is data in, data out: the workflows load open invoices and payments once, call
:func:`apply_cash` with them, and write the resulting allocations with one bulk INSERT.

**Creditor reference (ISO 11649).** Every invoice carries ``RF`` + two check digits + the invoice
number without separators (ISO 7064 MOD 97-10, the same check as the IBAN), so a payer who copies it
into the remittance text lets the bank statement name the invoice unambiguously:

>>> creditor_reference("INV-2026-000123")
'RF98INV2026000123'

**Cash application** (:func:`apply_cash`), in this order, for each payment (a bank credit):

1. the remittance text names invoices — by creditor reference or by invoice number — the payment is
   allocated to them in the order named, each up to its open amount;
2. else the payer's IBAN is already known for an advertiser (an earlier payment was applied to it):
   the advertiser's open invoices in the payment's currency — one whose open amount equals the payment
   exactly, else oldest first;
3. else the payer's name is similar to an advertiser's name (token-sort ratio ≥ 90) and exactly one of
   that advertiser's open invoices has the payment's amount: that one.

Outcomes: ``matched`` (allocated whole and every touched invoice settled), ``partial`` (allocated
whole, the last invoice keeps an open amount), ``overpaid`` (every named/candidate invoice settled and
money left over), ``unmatched`` (nothing allocated).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from rapidfuzz import fuzz, utils

ZERO = Decimal("0.00")
CENT = Decimal("0.01")
NAME_SIMILARITY = 90  # rapidfuzz token_sort_ratio, 0–100

PAYMENT_STATES = ("open", "partially_paid", "paid", "overdue", "written_off", "disputed")
OUTCOMES = ("matched", "partial", "overpaid", "unmatched")
BUCKETS = ("current", "d1_30", "d31_60", "d61_90", "d90_plus")


# --------------------------------------------------------------------------- creditor reference


def creditor_reference(invoice_number: str) -> str:
    """The ISO 11649 structured creditor reference for an invoice number.

    Letters and digits of the number are kept (upper-cased), at most the last 21 of them, so the
    reference stays within ISO 11649's 25 characters. Check digits: ISO 7064 MOD 97-10, as for IBANs.

    >>> creditor_reference("CN-2026-000001")
    'RF70CN2026000001'
    >>> _valid_rf(creditor_reference("INV-2026-000123"))
    True
    """
    body = _rf_body(invoice_number)
    if not body:
        raise ValueError(f"invoice number {invoice_number!r} has no letters or digits")
    return f"RF{98 - _mod97(body + 'RF00'):02d}{body}"


_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")
# A→10 … Z→35: the digits MOD 97-10 reads letters as (a table, since this runs for every open invoice)
_AS_DIGITS = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


def _rf_body(invoice_number: str) -> str:
    """What :func:`creditor_reference` puts after ``RF`` and the check digits."""
    plain = invoice_number.replace("-", "").replace("/", "")  # the usual separators, without a regex
    if not (plain.isascii() and plain.isalnum()):
        plain = _NOT_ALNUM.sub("", invoice_number)
    return plain.upper()[-21:]


def _mod97(text: str) -> int:
    return int(text.translate(_AS_DIGITS)) % 97


def _valid_rf(ref: str) -> bool:
    """ISO 11649 check (the same as ``stdnum.iso11649.is_valid`` on a compact, upper-case reference)."""
    return 5 <= len(ref) <= 25 and ref[:2] == "RF" and ref[2:4].isdigit() and ref[4:].isalnum() \
        and _mod97(ref[4:] + ref[:4]) == 1


_RF = re.compile(r"RF\d{2}(?:[ ]?[0-9A-Z]){1,21}", re.IGNORECASE)
_TOKEN = re.compile(r"[0-9A-Za-z][0-9A-Za-z/_.-]*[0-9A-Za-z]")


def references_in(text: str, bodies: Container[str] | None = None) -> list[str]:
    """Candidate creditor references in a remittance text, in order (spaces inside allowed, as
    printed in groups of four). Where words follow a reference the text cannot say where it ends, so
    every valid prefix is a candidate (longest first); the caller keeps those that name an invoice —
    or passes ``bodies`` (what follows ``RF`` and the check digits in the references it knows), and
    only those are checked and returned.

    >>> references_in("Rechnung RF98 INV2 0260 0012 3")
    ['RF98INV2026000123']
    >>> references_in("Rechnung RF98 INV2 0260 0012 3", bodies={"INV2026"})
    []
    """
    found: list[str] = []
    if "RF" not in (text or "").upper():
        return found
    for m in _RF.finditer(text or ""):
        compact = m.group(0).replace(" ", "").upper()
        for end in range(len(compact), 4, -1):
            if (bodies is None or compact[4:end] in bodies) and _valid_rf(compact[:end]):
                found.append(compact[:end])
    return found


def tokens_in(text: str) -> list[str]:
    """Word-like tokens of a remittance text (invoice numbers keep their dashes), upper-cased."""
    return [t.upper() for t in _TOKEN.findall(text or "")]


# --------------------------------------------------------------------------- cash application


@dataclass(frozen=True)
class OpenInvoice:
    id: int
    number: str
    advertiser_id: str
    currency: str
    open_amount: Decimal
    issue_date: date
    due_date: date


@dataclass(frozen=True)
class IncomingPayment:
    id: int
    amount: Decimal  # positive: a credit
    currency: str
    payer_iban: str | None
    payer_name: str | None
    remittance: str | None


@dataclass(frozen=True)
class Allocation:
    payment_id: int
    invoice_id: int
    amount: Decimal
    method: str  # reference | iban | name | manual


@dataclass
class Application:
    """What :func:`apply_cash` decided: allocations, the outcome and leftover per payment, and the
    IBANs learned (payer IBAN → advertiser) for the next payments."""

    allocations: list[Allocation] = field(default_factory=list)
    outcomes: dict[int, str] = field(default_factory=dict)
    unapplied: dict[int, Decimal] = field(default_factory=dict)
    learned_ibans: dict[str, str] = field(default_factory=dict)
    still_open: dict[int, Decimal] = field(default_factory=dict)  # payment → open on the last invoice it touched


def apply_cash(payments: Sequence[IncomingPayment], invoices: Iterable[OpenInvoice],
               known_ibans: Mapping[str, str], advertiser_names: Mapping[str, str]) -> Application:
    """Allocate ``payments`` (in order) to ``invoices``; see the module docstring for the rules.

    ``known_ibans`` maps payer IBAN → advertiser id; ``advertiser_names`` advertiser id → name.
    Open amounts are tracked across payments, so two payments never settle the same cent twice.
    """
    book = _Book(invoices)
    ibans = dict(known_ibans)
    # names compared in rapidfuzz's normal form (lower case, no punctuation), prepared once
    name_keys = {a: utils.default_process(n) for a, n in advertiser_names.items() if a in book.by_adv}
    app = Application()
    for p in payments:
        method, targets = book.targets(p, ibans, name_keys)
        rest = p.amount
        touched: list[int] = []
        for inv in targets:
            if rest <= 0:
                break
            take = min(rest, book.open_amount[inv.id])
            book.apply(inv, take)
            rest -= take
            touched.append(inv.id)
            app.allocations.append(Allocation(p.id, inv.id, take, method))
        app.unapplied[p.id] = rest
        if not touched:
            app.outcomes[p.id] = "unmatched"
            continue
        app.still_open[p.id] = book.open_amount[touched[-1]]
        app.outcomes[p.id] = "overpaid" if rest > 0 else "partial" if app.still_open[p.id] > 0 else "matched"
        if p.payer_iban and p.payer_iban not in ibans:
            ibans[p.payer_iban] = app.learned_ibans[p.payer_iban] = targets[0].advertiser_id
    return app


def _oldest_first(i: OpenInvoice) -> tuple[date, date, int]:
    return (i.due_date, i.issue_date, i.id)


class _Book:
    """The open invoices while cash is applied: what is open on each, and indexes to find them by
    number / reference, by advertiser (oldest first) and by what is open now (currency, amount)."""

    def __init__(self, invoices: Iterable[OpenInvoice]) -> None:
        self.open_amount: dict[int, Decimal] = {}
        self.by_key: dict[str, list[OpenInvoice]] = defaultdict(list)
        self.by_rf_body: dict[str, list[OpenInvoice]] = defaultdict(list)
        self.by_adv: dict[str, list[OpenInvoice]] = defaultdict(list)
        self.by_amount: dict[tuple[str, Decimal], list[OpenInvoice]] = defaultdict(list)
        # in the order every list keeps (oldest first), so no list needs sorting afterwards
        for inv in sorted(invoices, key=_oldest_first):
            if inv.open_amount <= 0:
                continue
            self.open_amount[inv.id] = inv.open_amount
            self.by_key[inv.number.upper()].append(inv)
            # by the creditor reference's body: a valid RF reference names it after its 4 first
            # characters, so no reference is computed (a MOD 97 each) for the invoices no text names
            self.by_rf_body[_rf_body(inv.number)].append(inv)
            self.by_adv[inv.advertiser_id].append(inv)
            self.by_amount[(inv.currency, inv.open_amount)].append(inv)

    def alive(self, lst: Iterable[OpenInvoice], currency: str) -> list[OpenInvoice]:
        return [i for i in lst if self.open_amount[i.id] > 0 and i.currency == currency]

    def enough(self, lst: Iterable[OpenInvoice], currency: str, amount: Decimal) -> list[OpenInvoice]:
        """The live invoices of ``lst`` in order, as far as ``amount`` reaches (the rest gets nothing)."""
        out: list[OpenInvoice] = []
        for i in lst:
            if amount <= 0:
                break
            left = self.open_amount[i.id]
            if left > 0 and i.currency == currency:
                out.append(i)
                amount -= left
        return out

    def apply(self, inv: OpenInvoice, amount: Decimal) -> None:
        before = self.open_amount[inv.id]
        self.open_amount[inv.id] = before - amount
        self.by_amount[(inv.currency, before)].remove(inv)
        if before - amount > 0:
            lst = self.by_amount[(inv.currency, before - amount)]
            lst.append(inv)
            lst.sort(key=_oldest_first)

    def targets(self, p: IncomingPayment, ibans: Mapping[str, str],
                name_keys: Mapping[str, str]) -> tuple[str, list[OpenInvoice]]:
        """The invoices a payment goes to, in order, and by which rule (module docstring)."""
        named = self.alive(_named(p, self.by_key, self.by_rf_body), p.currency)
        if named:
            return "reference", named
        exact = self.by_amount.get((p.currency, p.amount), [])
        if p.payer_iban and p.payer_iban in ibans:
            adv = ibans[p.payer_iban]
            found = [i for i in exact if i.advertiser_id == adv][:1] or self.enough(self.by_adv.get(adv, []),
                                                                                     p.currency, p.amount)
            if found:
                return "iban", found
        if p.payer_name and exact:
            return "name", _by_name(p, name_keys, exact)
        return "name", []


def _named(p: IncomingPayment, by_key: Mapping[str, list[OpenInvoice]],
           by_rf_body: Mapping[str, list[OpenInvoice]]) -> list[OpenInvoice]:
    seen: dict[int, OpenInvoice] = {}
    text = p.remittance or ""
    for ref in references_in(text, by_rf_body):  # valid references only: RF + check digits + body
        for inv in by_rf_body[ref[4:]]:
            seen.setdefault(inv.id, inv)
    for key in tokens_in(text):
        for inv in by_key.get(key, ()):
            seen.setdefault(inv.id, inv)
    return list(seen.values())


def _by_name(p: IncomingPayment, name_keys: Mapping[str, str], exact: list[OpenInvoice]) -> list[OpenInvoice]:
    """The one open invoice of exactly the payment's amount whose advertiser's name is like the payer's."""
    query = utils.default_process(p.payer_name or "")
    found = [i for i in exact if i.advertiser_id in name_keys
             and fuzz.token_sort_ratio(query, name_keys[i.advertiser_id], score_cutoff=NAME_SIMILARITY)]
    return found if len(found) == 1 else []


def candidates(amount: Decimal, currency: str, payer_name: str | None, invoices: Iterable[OpenInvoice],
               advertiser_names: Mapping[str, str], *, limit: int = 3) -> list[OpenInvoice]:
    """The best ``limit`` open invoices for a payment nothing matched: closest amount first, then the
    payer name's similarity to the advertiser, then the oldest."""
    def score(i: OpenInvoice) -> tuple[Decimal, float, date]:
        sim = fuzz.token_sort_ratio(payer_name or "", advertiser_names.get(i.advertiser_id, ""),
                                    processor=utils.default_process)
        return (abs(i.open_amount - amount), -sim, i.due_date)
    return sorted((i for i in invoices if i.currency == currency and i.open_amount > 0), key=score)[:limit]


# --------------------------------------------------------------------------- payment state


def payment_state(*, gross: Decimal, credited: Decimal, paid: Decimal, written_off: Decimal, due_date: date,
                  today: date, disputed: bool = False) -> tuple[str, Decimal]:
    """An invoice's payment state and open amount.

    ``open = gross − credited − paid − written_off`` (``credited`` is the positive total of its
    credit notes). Nothing open: ``written_off`` if more was written off than paid, else ``paid``.
    Something open: ``disputed`` while a dispute is open, ``overdue`` after the due date, else
    ``partially_paid`` once anything was paid, else ``open``.

    >>> payment_state(gross=Decimal("119.00"), credited=Decimal("0"), paid=Decimal("50.00"),
    ...               written_off=Decimal("0"), due_date=date(2026, 3, 31), today=date(2026, 3, 1))
    ('partially_paid', Decimal('69.00'))
    """
    open_ = gross - credited - paid - written_off
    if open_ <= 0:
        return ("written_off" if written_off > paid else "paid"), ZERO
    if disputed:
        return "disputed", open_
    if today > due_date:
        return "overdue", open_
    if paid > 0 or written_off > 0:
        return "partially_paid", open_
    return "open", open_


# --------------------------------------------------------------------------- aging and DSO


def bucket(days_past_due: int) -> str:
    """current (not yet due) / d1_30 / d31_60 / d61_90 / d90_plus days past due.

    >>> [bucket(d) for d in (0, 1, 30, 31, 60, 61, 90, 91)]
    ['current', 'd1_30', 'd1_30', 'd31_60', 'd31_60', 'd61_90', 'd61_90', 'd90_plus']
    """
    if days_past_due <= 0:
        return "current"
    if days_past_due <= 30:
        return "d1_30"
    if days_past_due <= 60:
        return "d31_60"
    if days_past_due <= 90:
        return "d61_90"
    return "d90_plus"


def dso(receivables: Decimal, credit_sales: Decimal, days: int = 90) -> Decimal | None:
    """Days sales outstanding, the count-back-free standard formula:
    ``DSO = open receivables at the end of the period ÷ credit sales invoiced in the period × days``,
    rounded to one decimal; ``None`` when nothing was invoiced in the period.

    >>> dso(Decimal("30000"), Decimal("90000"), 90)
    Decimal('30.0')
    """
    if credit_sales <= 0:
        return None
    return (receivables / credit_sales * days).quantize(Decimal("0.1"))


# --------------------------------------------------------------------------- GiroCode (EPC QR)


def epc_qr_payload(*, name: str, iban: str, amount: Decimal, reference: str, bic: str | None = None) -> str:
    """The EPC069-12 "SEPA credit transfer" QR payload (version 002, UTF-8) a banking app reads:
    beneficiary, IBAN, EUR amount and the structured creditor reference (no unstructured text then).

    >>> epc_qr_payload(name="Northwind Media GmbH", iban="DE89 3704 0044 0532 0130 00",
    ...                amount=Decimal("1190.00"), reference="RF94INV2026000001").splitlines()[5:]
    ['Northwind Media GmbH', 'DE89370400440532013000', 'EUR1190.00', '', 'RF94INV2026000001']
    """
    if not (Decimal("0.01") <= amount <= Decimal("999999999.99")):
        raise ValueError(f"amount {amount} is outside what a GiroCode carries")
    return "\n".join(["BCD", "002", "1", "SCT", (bic or "").replace(" ", ""), name[:70], iban.replace(" ", ""),
                      f"EUR{amount.quantize(Decimal('0.01'))}", "", reference[:35]])
