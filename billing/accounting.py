"""Accounting entries: what an invoice or credit note is in the ledger (issue 19, item 2).

One entry per document, the same for every export format (DATEV, Beancount):

- the receivable (gross) is debited to the advertiser's debtor account — its personal account, else
  the chart's collective debtor account — and credited to the revenue account of the document's VAT
  treatment (domestic, reverse charge, export), the output VAT to the VAT account;
- a credit note is the same entry with the opposite sign (DATEV: ``H`` instead of ``S``);
- a document in a currency other than the legal entity's also carries its locked rate and the amounts
  in the entity's currency (``base_*``) as the invoice stored them at finalization; the base VAT is
  the stored converted VAT and the base net is ``base_gross - base_vat``, so the entry balances to the
  cent in the entity's currency even when the three totals were rounded one by one;
- money applied to an invoice (issue 18's payment allocations) is an entry of its own: a payment debits
  the bank account and credits the debtor (:func:`allocation_entry`, kind ``payment``), a write-off
  debits the write-off account and credits the debtor (kind ``write_off``), both in the invoice's
  currency, valued in the entity's currency at the invoice's locked rate (no exchange difference is
  booked).

The chart per legal entity (scenario key ``accounting``) defaults to DATEV's SKR03 automatic accounts:
8400 (19 % output VAT computed by DATEV, no BU key), 8336 (EU services, recipient liable), 8338
(services taxable in a third country), debtors 10000–69999, VAT 1776, bank 1200, write-offs 2400
(Forderungsverluste). Any account and any BU key can
be set per treatment; the tax advisor's chart wins.

>>> chart = Chart.from_settings({"revenue": {"domestic": "8400"}})
>>> e = entry(DocumentFacts(number="INV-2026-000001", kind="invoice", issue_date=date(2026, 10, 31),
...           due_date=date(2026, 11, 30), buyer="Autohaus Nord", buyer_vat_id=None, debtor_account=None,
...           vat_category="S", currency="EUR", net=Decimal("100.00"), vat=Decimal("19.00"),
...           gross=Decimal("119.00"), fx=None, references=None), chart=chart, base_currency="EUR")
>>> e.debtor_account, e.revenue_account, e.gross, e.base_net
('10000', '8400', Decimal('119.00'), Decimal('100.00'))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing.errors import Invalid
from billing.fx import locked_rate
from billing.money import quantum

TREATMENTS = ("domestic", "reverse_charge", "export")

#: DATEV SKR03 automatic revenue accounts (DATEV computes the VAT; no BU key needed).
SKR03_REVENUE = {"domestic": "8400", "reverse_charge": "8336", "export": "8338"}


def treatment_of(vat_category: str) -> str:
    """The ledger's VAT treatment of an EN 16931 VAT category (UNCL5305).

    >>> treatment_of("S"), treatment_of("AE"), treatment_of("O")
    ('domestic', 'reverse_charge', 'export')
    """
    if vat_category == "S":
        return "domestic"
    if vat_category == "AE":
        return "reverse_charge"
    return "export"


@dataclass(frozen=True)
class Chart:
    """A legal entity's accounting settings: DATEV header fields and its chart of accounts."""

    consultant_number: int = 1001  # DATEV Beraternummer (1001–9999999)
    client_number: int = 1  # DATEV Mandantennummer (1–99999)
    fiscal_year_start: int = 1  # the month the fiscal year starts in
    account_length: int = 4  # Sachkontenlänge: G/L accounts have this many digits, debtors one more
    skr: str = "03"
    debtor_account: str = "10000"  # the collective debtor for advertisers without their own
    vat_account: str = "1776"
    bank_account: str = "1200"  # where payments arrive (SKR03 Bank)
    write_off_account: str = "2400"  # written-off receivables (SKR03 Forderungsverluste)
    revenue: Mapping[str, str] = field(default_factory=lambda: dict(SKR03_REVENUE))
    bu_keys: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> Chart:
        """The chart from a legal entity's stored ``accounting`` settings; every problem named."""
        raw = dict(settings or {})
        problems: list[str] = []
        unknown = sorted(set(raw) - {f for f in cls.__dataclass_fields__})
        problems += [f"accounting.{k}: unknown setting" for k in unknown]
        revenue = {**SKR03_REVENUE, **{str(k): str(v) for k, v in dict(raw.get("revenue") or {}).items()}}
        bu_keys = {str(k): str(v) for k, v in dict(raw.get("bu_keys") or {}).items()}
        for name, mapping in (("revenue", revenue), ("bu_keys", bu_keys)):
            problems += [f"accounting.{name}.{k}: not a VAT treatment ({', '.join(TREATMENTS)})"
                         for k in mapping if k not in TREATMENTS]
        try:
            chart = cls(
                consultant_number=int(raw.get("consultant_number", 1001)),
                client_number=int(raw.get("client_number", 1)),
                fiscal_year_start=int(raw.get("fiscal_year_start", 1)),
                account_length=int(raw.get("account_length", 4)),
                skr=str(raw.get("skr", "03")),
                debtor_account=str(raw.get("debtor_account", "10000")),
                vat_account=str(raw.get("vat_account", "1776")),
                bank_account=str(raw.get("bank_account", "1200")),
                write_off_account=str(raw.get("write_off_account", "2400")),
                revenue=revenue, bu_keys=bu_keys,
            )
        except (TypeError, ValueError) as e:
            raise Invalid(f"accounting settings: {e}", code="accounting") from None
        problems += chart.problems()
        if problems:
            raise Invalid(problems, code="accounting")
        return chart

    def problems(self) -> list[str]:
        out = []
        if not 1001 <= self.consultant_number <= 9999999:
            out.append(f"accounting.consultant_number: {self.consultant_number} is not 1001–9999999")
        if not 1 <= self.client_number <= 99999:
            out.append(f"accounting.client_number: {self.client_number} is not 1–99999")
        if not 1 <= self.fiscal_year_start <= 12:
            out.append(f"accounting.fiscal_year_start: {self.fiscal_year_start} is not a month (1–12)")
        if not 4 <= self.account_length <= 8:
            out.append(f"accounting.account_length: {self.account_length} is not 4–8")
        accounts = [("vat_account", self.vat_account), ("bank_account", self.bank_account),
                    ("write_off_account", self.write_off_account),
                    *((f"revenue.{k}", v) for k, v in self.revenue.items())]
        for name, acct in accounts:
            if not self.is_ledger_account(acct):
                out.append(f"accounting.{name}: {acct!r} is not a G/L account of {self.account_length} digits")
        if not self.is_debtor_account(self.debtor_account):
            out.append(f"accounting.debtor_account: {self.debtor_account!r} is not a debtor account "
                       f"of {self.account_length + 1} digits starting with 1–6")
        return out

    def is_ledger_account(self, account: str) -> bool:
        return account.isdigit() and len(account) == self.account_length

    def is_debtor_account(self, account: str) -> bool:
        """DATEV personal accounts have one digit more than G/L accounts; debtors are 10000–69999 (length 4)."""
        return account.isdigit() and len(account) == self.account_length + 1 and account[0] in "123456"

    def fiscal_year_begin(self, day: date) -> date:
        """The first day of the fiscal year ``day`` falls in.

        >>> Chart(fiscal_year_start=7).fiscal_year_begin(date(2026, 3, 5))
        datetime.date(2025, 7, 1)
        """
        year = day.year if day.month >= self.fiscal_year_start else day.year - 1
        return date(year, self.fiscal_year_start, 1)


@dataclass(frozen=True)
class DocumentFacts:
    """What the ledger needs of a stored invoice or credit note."""

    number: str
    kind: str  # invoice | credit_note
    issue_date: date
    due_date: date
    buyer: str
    buyer_vat_id: str | None
    debtor_account: str | None
    vat_category: str
    currency: str
    net: Decimal
    vat: Decimal
    gross: Decimal
    fx: Mapping[str, Any] | None
    references: str | None


@dataclass(frozen=True)
class Entry:
    """One document in the ledger. Amounts are signed as on the document (credit notes negative)."""

    number: str
    kind: str
    issue_date: date
    due_date: date
    text: str
    debtor_account: str
    revenue_account: str
    vat_account: str
    bu_key: str
    treatment: str
    buyer_vat_id: str | None
    references: str | None
    currency: str
    net: Decimal
    vat: Decimal
    gross: Decimal
    base_currency: str
    base_net: Decimal
    base_vat: Decimal
    base_gross: Decimal
    rate: Decimal | None  # units of ``currency`` per 1 ``base_currency`` (DATEV "Kurs"); None when the same
    # payments and write-offs (kind ``payment`` | ``write_off``; ``number`` is the invoice's, ``issue_date``
    # the booking day): the account debited — the bank or the write-off account — against the debtor
    contra_account: str = ""

    @property
    def is_allocation(self) -> bool:
        return self.kind in ALLOCATION_KINDS

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, Decimal | date):
                out[k] = str(v) if isinstance(v, Decimal) else v.isoformat()
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Entry:
        dec = {"net", "vat", "gross", "base_net", "base_vat", "base_gross"}
        values: dict[str, Any] = {}
        for k in cls.__dataclass_fields__:
            if k not in d and k == "contra_account":
                continue  # batches exported before payments were booked
            v = d.get(k)
            if k in dec:
                v = Decimal(str(v))
            elif k == "rate":
                v = Decimal(str(v)) if v is not None else None
            elif k in ("issue_date", "due_date"):
                v = date.fromisoformat(str(v))
            values[k] = v
        return cls(**values)


ALLOCATION_KINDS = ("payment", "write_off")

KURS_PLACES = Decimal("0.000001")  # DATEV "Kurs": up to 4 integer and 6 decimal places


def entry(doc: DocumentFacts, *, chart: Chart, base_currency: str) -> Entry:
    """The ledger entry of one document under ``chart`` (see the module docstring)."""
    treatment = treatment_of(doc.vat_category)
    debtor = doc.debtor_account or chart.debtor_account
    if not chart.is_debtor_account(debtor):
        raise Invalid(f"{doc.number}: debtor account {debtor!r} of {doc.buyer} is not a debtor account of "
                      f"{chart.account_length + 1} digits", code="accounting")
    if doc.currency == base_currency:
        base_net, base_vat, base_gross, rate = doc.net, doc.vat, doc.gross, None
    else:
        locked = locked_rate(doc.fx)
        if locked is None or doc.fx is None or doc.fx.get("gross") in (None, ""):
            raise Invalid(f"{doc.number}: in {doc.currency} without a locked rate to {base_currency}", code="fx")
        base_gross = Decimal(str(doc.fx["gross"]))
        base_vat = Decimal(str(doc.fx.get("vat") or "0"))
        base_net = base_gross - base_vat
        per_base = locked.rate if locked.from_ == base_currency else 1 / locked.rate
        rate = per_base.quantize(KURS_PLACES, rounding=ROUND_HALF_UP)
    text = doc.buyer if doc.kind == "invoice" else f"{doc.buyer} credit note for {doc.references or '?'}"
    return Entry(
        number=doc.number, kind=doc.kind, issue_date=doc.issue_date, due_date=doc.due_date, text=text,
        debtor_account=debtor, revenue_account=chart.revenue[treatment], vat_account=chart.vat_account,
        bu_key=chart.bu_keys.get(treatment, ""), treatment=treatment,
        buyer_vat_id=doc.buyer_vat_id if treatment == "reverse_charge" else None, references=doc.references,
        currency=doc.currency, net=doc.net, vat=doc.vat, gross=doc.gross, base_currency=base_currency,
        base_net=base_net, base_vat=base_vat, base_gross=base_gross, rate=rate,
    )


@dataclass(frozen=True)
class AllocationFacts:
    """What the ledger needs of money applied to an invoice: a payment's part or a write-off."""

    kind: str  # payment | write_off
    day: date  # the payment's booking day, the day of the write-off
    invoice: DocumentFacts
    amount: Decimal  # in the invoice's currency
    payer: str | None = None


def allocation_entry(a: AllocationFacts, *, chart: Chart, base_currency: str) -> Entry:
    """The ledger entry of a payment allocation (bank to the debtor) or write-off (write-off account to
    the debtor), valued in ``base_currency`` at the invoice's locked rate: a full payment is exactly the
    invoice's locked total, a part its share, half up to the cent.

    >>> inv = DocumentFacts(number="INV-2026-000001", kind="invoice", issue_date=date(2026, 3, 1),
    ...     due_date=date(2026, 3, 15), buyer="Krakow Media", buyer_vat_id=None, debtor_account="10002",
    ...     vat_category="AE", currency="PLN", net=Decimal("1200.00"), vat=Decimal("0.00"),
    ...     gross=Decimal("1200.00"), fx={"from": "PLN", "to": "EUR", "rate": "0.2326934264",
    ...     "date": "2026-02-27", "source": "ECB", "gross": "279.23", "vat": "0.00"}, references=None)
    >>> e = allocation_entry(AllocationFacts("payment", date(2026, 3, 20), inv, Decimal("600.00")),
    ...                      chart=Chart(), base_currency="EUR")
    >>> e.contra_account, e.debtor_account, e.gross, e.base_gross, e.rate
    ('1200', '10002', Decimal('600.00'), Decimal('139.62'), Decimal('4.297500'))
    """
    if a.kind not in ALLOCATION_KINDS:
        raise Invalid(f"{a.invoice.number}: unknown allocation kind {a.kind!r}", code="accounting")
    doc = entry(a.invoice, chart=chart, base_currency=base_currency)
    if doc.rate is None or doc.gross == 0:
        base = a.amount
    else:
        base = (a.amount * doc.base_gross / doc.gross).quantize(quantum(base_currency), rounding=ROUND_HALF_UP)
    what = "payment" if a.kind == "payment" else "write-off"
    contra = chart.bank_account if a.kind == "payment" else chart.write_off_account
    return Entry(
        number=doc.number, kind=a.kind, issue_date=a.day, due_date=a.day,
        text=f"{a.invoice.buyer} {what} {doc.number}", debtor_account=doc.debtor_account, revenue_account="",
        vat_account="", bu_key="", treatment=doc.treatment, buyer_vat_id=None, references=None,
        currency=doc.currency, net=a.amount, vat=Decimal(0), gross=a.amount, base_currency=base_currency,
        base_net=base, base_vat=Decimal(0), base_gross=base, rate=doc.rate, contra_account=contra,
    )
