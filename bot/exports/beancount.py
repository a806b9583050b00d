"""The Beancount ledger of a batch: ``open`` directives for every account it uses, then one balanced
transaction per invoice or credit note (receivable = revenue + output VAT) and per payment allocation
(bank = receivable) or write-off (write-off expense = receivable).

Accounts: ``Assets:Receivables:Debtor-10001``, ``Income:Revenue:Domestic-8400`` (treatment and chart
account), ``Liabilities:VAT:Output-1776``. A document in a foreign currency books the receivable in that
currency at its locked total (``1190.00 PLN @@ 277.89 EUR``) and revenue and VAT in the entity's
currency, so every transaction balances exactly in the entity's currency. A payment moves the invoice's
currency from the receivable to ``Assets:Bank:Account-1200``; a write-off books the expense
``Expenses:WriteOffs:Account-2400`` in the entity's currency at the invoice's locked rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from billing.accounting import Entry

TREATMENT_NAMES = {"domestic": "Domestic", "reverse_charge": "ReverseCharge", "export": "Export"}


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def receivable(e: Entry) -> str:
    return f"Assets:Receivables:Debtor-{e.debtor_account}"


def revenue(e: Entry) -> str:
    return f"Income:Revenue:{TREATMENT_NAMES[e.treatment]}-{e.revenue_account}"


def vat(e: Entry) -> str:
    return f"Liabilities:VAT:Output-{e.vat_account}"


def contra(e: Entry) -> str:
    if e.kind == "payment":
        return f"Assets:Bank:Account-{e.contra_account}"
    return f"Expenses:WriteOffs:Account-{e.contra_account}"


def accounts(e: Entry) -> tuple[str, ...]:
    if e.is_allocation:
        return receivable(e), contra(e)
    return receivable(e), revenue(e), vat(e)


def _amount(value: Decimal, currency: str) -> str:
    return f"{value:.2f} {currency}"


def allocation_transaction(e: Entry) -> list[str]:
    what = "Payment" if e.kind == "payment" else "Write-off"
    lines = [f"{e.issue_date.isoformat()} * {quoted(e.text)} {quoted(f'{what} for {e.number}')}",
             f"  document: {quoted(e.number)}", f"  kind: {quoted(e.kind)}"]
    if e.kind == "payment" or e.rate is None:  # the bank holds the invoice's currency
        lines.append(f"  {contra(e)}  {_amount(e.gross, e.currency)}")
        lines.append(f"  {receivable(e)}  {_amount(-e.gross, e.currency)}")
    else:  # the loss in the entity's currency, at the invoice's locked rate
        lines.append(f"  {contra(e)}  {_amount(e.base_gross, e.base_currency)}")
        lines.append(f"  {receivable(e)}  {_amount(-e.gross, e.currency)} @@ "
                     f"{_amount(abs(e.base_gross), e.base_currency)}")
    return lines


def transaction(e: Entry) -> list[str]:
    if e.is_allocation:
        return allocation_transaction(e)
    title = f"Invoice {e.number}" if e.kind == "invoice" else f"Credit note {e.number} for {e.references}"
    lines = [f"{e.issue_date.isoformat()} * {quoted(e.text)} {quoted(title)}",
             f"  document: {quoted(e.number)}", f"  due: {e.due_date.isoformat()}"]
    if e.rate is not None:
        lines.append(f"  {receivable(e)}  {_amount(e.gross, e.currency)} @@ "
                     f"{_amount(abs(e.base_gross), e.base_currency)}")
    else:
        lines.append(f"  {receivable(e)}  {_amount(e.gross, e.currency)}")
    lines.append(f"  {revenue(e)}  {_amount(-e.base_net, e.base_currency)}")
    if e.base_vat != 0:
        lines.append(f"  {vat(e)}  {_amount(-e.base_vat, e.base_currency)}")
    return lines


def beancount_ledger(header: Mapping[str, Any], entries: Sequence[Entry]) -> bytes:
    """The batch as a Beancount file (UTF-8) that ``beancount.loader`` loads without errors."""
    opened = date.fromisoformat(str(header["date_from"]))
    first = min((e.issue_date for e in entries), default=opened)
    opened = min(opened, first)
    used = sorted({a for e in entries for a in accounts(e)})
    out = [f";; billbot accounting export, batch {header['batch']}: {header['legal_entity_name']} "
           f"({header['legal_entity']}), {header['period']}, exported by {header.get('exported_by') or ''}",
           f"option {quoted('title')} {quoted(str(header['legal_entity_name']))}",
           f"option {quoted('operating_currency')} {quoted(str(header['currency']))}", ""]
    out += [f"{opened.isoformat()} open {a}" for a in used]
    for e in entries:
        out += ["", *transaction(e)]
    return ("\n".join(out) + "\n").encode("utf-8")
