"""CLI commands (billing): pre-invoices, billing runs, invoices, credit notes, exchange rates.

Each command calls one workflow; JSON output follows DESIGN.md "Interfaces" (money as two-decimal
strings, ISO dates).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from bot.cli.groups import app, fx_app, invoices_app, preinvoices_app
from bot.cli.identity import FINANCE_ROLES, OPERATOR_ROLES, REQUESTER_ROLES, AsUser, acting_as
from bot.cli.output import emit_json, fail, handle_errors, money_str, out_console, progress

if TYPE_CHECKING:  # typing only (keeps CLI start-up light)
    from bot.workflows.invoices import InvoiceView
    from bot.workflows.preinvoices import PreInvoiceView


def _now() -> datetime:
    return datetime.now(UTC)


def _today() -> date:
    return datetime.now(UTC).astimezone().date()  # the desk's local calendar day


def _num(d: Any) -> str | None:
    """Quantities and unit prices: exact, at least two decimals for prices (``4.20``, ``0.0042``)."""
    if d is None:
        return None
    n = d.normalize()
    text = format(n, "f")
    return text if "." in text and len(text.split(".")[1]) >= 2 else f"{n:.2f}"


def _qty(d: Any) -> str:
    return format(d.normalize(), "f") if d != 0 else "0"


# --------------------------------------------------------------------------- pre-invoices


def preinvoice_json(v: PreInvoiceView) -> dict[str, Any]:
    return {
        "id": v.id, "campaign": v.campaign, "campaign_id": v.campaign_id, "advertiser": v.advertiser,
        "advertiser_id": v.advertiser_id, "legal_entity": v.legal_entity_id, "period_start": v.period_start,
        "period_end": v.period_end, "state": v.state, "currency": v.currency, "net": money_str(v.net),
        "vat": money_str(v.vat), "gross": money_str(v.gross), "problems": v.problems, "hold_reason": v.hold_reason,
        "content_hash": v.content_hash, "approved_by": v.approved_by, "approved_at": v.approved_at,
        "invoice_id": v.invoice_id, "overrides": v.overrides,
        "lines": [{"id": x.id, "item": x.item, "kind": x.kind, "description": x.description,
                   "quantity": _qty(x.quantity), "unit": x.unit, "unit_price": _num(x.unit_price),
                   "amount": money_str(x.amount), "edited": x.edited} for x in v.lines],
    }


def _print_preinvoice(v: PreInvoiceView) -> None:
    out_console.print(f"[bold]Pre-invoice {v.id}[/bold] {v.advertiser} · {v.campaign} · "
                      f"{v.period_start}..{v.period_end} · {v.state}", highlight=False)
    for x in v.lines:
        mark = " (edited)" if x.edited else ""
        out_console.print(f"  [{x.id}] {x.kind:<8} {x.description:<40} {_qty(x.quantity):>12} {x.unit:<18} "
                          f"{_num(x.unit_price):>10} {money_str(x.amount):>12}{mark}", highlight=False)
    out_console.print(f"  net {money_str(v.net)} {v.currency} · VAT {money_str(v.vat)} · gross {money_str(v.gross)}",
                      highlight=False)
    for p in v.problems:
        out_console.print(f"  [red]problem:[/red] {p}", highlight=False)
    if v.hold_reason:
        out_console.print(f"  held: {v.hold_reason}", highlight=False)


@preinvoices_app.command("create")
@handle_errors
def preinvoices_create(
    period: Annotated[str, typer.Option(help="Billing period: 2026-02, 2026-W07, 2026-Q1, 2026 or a..b.")],
    advertiser: Annotated[list[str] | None, typer.Option(help="Advertiser id or name (repeatable).")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Create or update the pre-invoices of every billing period ending within PERIOD (idempotent)."""
    from bot.context import get_db, get_key, settings
    from bot.workflows.preinvoices import create_preinvoices

    actor = acting_as(as_user, roles=OPERATOR_ROLES, what="preinvoices create")
    with progress(f"Pre-invoices for {period}", None, quiet=json_out):
        r = create_preinvoices(get_db(), period=period, advertisers=advertiser or None, actor=actor,
                               key=get_key(), now=_now(), default_tolerance=settings().default_tolerance)
    data = {"period": r.period, "created": r.created, "updated": r.updated, "unchanged": r.unchanged,
            "voided": r.voided, "approved": r.approved, "pending": r.pending,
            "problems": [{"id": k, "problems": v} for k, v in sorted(r.problems.items())],
            "stale_source": [{"id": k, "sources": v} for k, v in sorted(r.stale.items())]}
    if json_out:
        emit_json(data)
        return
    out_console.print(f"{r.period}: {len(r.created)} created, {len(r.updated)} updated, {len(r.unchanged)} unchanged, "
                      f"{len(r.approved)} approved by the system, {len(r.pending)} pending, "
                      f"{len(r.problems)} with problems", highlight=False)
    for k, v in sorted(r.problems.items()):
        out_console.print(f"  pre-invoice {k}: {'; '.join(v)}", highlight=False)
    for k, v in sorted(r.stale.items()):
        out_console.print(f"  pre-invoice {k}: stale_source: {'; '.join(v)}", highlight=False)


@preinvoices_app.command("list")
@handle_errors
def preinvoices_list(
    period: Annotated[str | None, typer.Option(help="Only billing periods ending within this period.")] = None,
    advertiser: Annotated[list[str] | None, typer.Option(help="Advertiser id or name (repeatable).")] = None,
    state: Annotated[list[str] | None,
                     typer.Option(help="draft, pending, approved, invoiced, held, cancelled.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List pre-invoices with their lines."""
    from bot.context import get_db
    from bot.workflows.preinvoices import list_preinvoices

    views = list_preinvoices(get_db(), period=period, advertisers=advertiser or None, states=state or None)
    if json_out:
        emit_json([preinvoice_json(v) for v in views])
        return
    for v in views:
        flag = f"  [red]{len(v.problems)} problem(s)[/red]" if v.problems else ""
        out_console.print(f"{v.id:>6} {v.state:<9} {v.period_start}..{v.period_end} {v.advertiser} · {v.campaign} "
                          f"{money_str(v.net)} {v.currency}{flag}", highlight=False)
    if not views:
        out_console.print("no pre-invoices")


@preinvoices_app.command("show")
@handle_errors
def preinvoices_show(
    preinvoice_id: Annotated[int, typer.Argument(help="Pre-invoice id.")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one pre-invoice with its lines, problems and state."""
    from bot.context import get_db
    from bot.workflows.preinvoices import get_preinvoice

    v = get_preinvoice(get_db(), preinvoice_id)
    if json_out:
        emit_json(preinvoice_json(v))
    else:
        _print_preinvoice(v)


def _show_after(preinvoice_id: int, json_out: bool) -> None:
    from bot.context import get_db
    from bot.workflows.preinvoices import get_preinvoice

    v = get_preinvoice(get_db(), preinvoice_id)
    if json_out:
        emit_json(preinvoice_json(v))
    else:
        _print_preinvoice(v)


@preinvoices_app.command("edit-line")
@handle_errors
def preinvoices_edit_line(  # noqa: PLR0917 - Typer maps parameters to options
    preinvoice_id: Annotated[int, typer.Argument(help="Pre-invoice id.")],
    line_id: Annotated[int, typer.Argument(help="Line id (see `preinvoices show`).")],
    description: Annotated[str | None, typer.Option()] = None,
    quantity: Annotated[str | None, typer.Option()] = None,
    unit_price: Annotated[str | None, typer.Option()] = None,
    amount: Annotated[str | None, typer.Option(help="Amount (default: quantity × unit price).")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Edit a line. Voids an approval; the pre-invoice is checked again."""
    from bot.context import get_db, get_key, settings
    from bot.workflows.preinvoices import edit_line

    if description is None and quantity is None and unit_price is None and amount is None:
        fail("nothing to change: give --description, --quantity, --unit-price or --amount", 2)
    actor = acting_as(as_user, roles=OPERATOR_ROLES, what="preinvoices edit-line")
    edit_line(get_db(), preinvoice_id, line_id, actor=actor, key=get_key(), now=_now(),
              description=description, quantity=quantity, unit_price=unit_price, amount=amount,
              default_tolerance=settings().default_tolerance)
    _show_after(preinvoice_id, json_out)


@preinvoices_app.command("add-line")
@handle_errors
def preinvoices_add_line(  # noqa: PLR0917 - Typer maps parameters to options
    preinvoice_id: Annotated[int, typer.Argument(help="Pre-invoice id.")],
    description: Annotated[str, typer.Option()],
    kind: Annotated[str, typer.Option(help="bonus, discount or manual.")] = "manual",
    amount: Annotated[str | None, typer.Option(help="Amount (discounts are made negative).")] = None,
    quantity: Annotated[str, typer.Option()] = "1",
    unit_price: Annotated[str | None, typer.Option()] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Add a bonus, discount or manual line."""
    from bot.context import get_db, get_key, settings
    from bot.workflows.preinvoices import add_line

    actor = acting_as(as_user, roles=OPERATOR_ROLES, what="preinvoices add-line")
    add_line(get_db(), preinvoice_id, kind=kind, description=description, amount=amount, quantity=quantity,
             unit_price=unit_price, actor=actor, key=get_key(), now=_now(),
             default_tolerance=settings().default_tolerance)
    _show_after(preinvoice_id, json_out)


@preinvoices_app.command("delete-line")
@handle_errors
def preinvoices_delete_line(
    preinvoice_id: Annotated[int, typer.Argument(help="Pre-invoice id.")],
    line_id: Annotated[int, typer.Argument(help="Line id.")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Delete a line."""
    from bot.context import get_db, get_key, settings
    from bot.workflows.preinvoices import delete_line

    actor = acting_as(as_user, roles=OPERATOR_ROLES, what="preinvoices delete-line")
    delete_line(get_db(), preinvoice_id, line_id, actor=actor, key=get_key(), now=_now(),
                default_tolerance=settings().default_tolerance)
    _show_after(preinvoice_id, json_out)


# --------------------------------------------------------------------------- billing run


@app.command("run")
@handle_errors
def run(  # noqa: PLR0917 - Typer maps parameters to options
    period: Annotated[str, typer.Option(help="Bill everything approved up to the end of this period.")],
    advertiser: Annotated[list[str] | None, typer.Option(help="Advertiser id or name (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and report; write nothing.")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
    issue_date: Annotated[str | None, typer.Option(
        "--issue-date", help="Date the invoices YYYY-MM-DD (not after today) instead of the terms' rule.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the whole job log (else: to a file).")]
    = False,
) -> None:
    """Run billing: approved pre-invoices → numbered invoices, per advertiser, legal entity and currency.
    Invoices are dated by the legal entity's (or advertiser's) rule — the run day, the service period's
    last day or the day after it — unless --issue-date names the day."""
    from billing.errors import Invalid
    from billing.periods import parse_period
    from bot.context import get_db, get_key
    from bot.workflows.billing_run import run_billing

    try:
        issued = date.fromisoformat(issue_date) if issue_date else None
    except ValueError:
        raise Invalid(f"--issue-date {issue_date!r} is not a date (YYYY-MM-DD)") from None
    parse_period(period)  # bad input is named before anything else is asked (exit 2)
    actor = "cli:dry-run" if dry_run else acting_as(as_user, roles=OPERATOR_ROLES, what="run")
    with progress(f"Billing {period}", None, quiet=json_out) as advance:
        r = run_billing(get_db(), period=period, advertisers=advertiser or None, actor=actor, key=get_key(),
                        today=_today(), dry_run=dry_run, on_progress=lambda _d, _t: advance(1), issue_date=issued)
    if json_out:
        emit_json({"run": r.run_id, "period": r.period, "dry_run": r.dry_run, "created": r.created,
                   "skipped": r.skipped, "held": r.held, "problems": r.problems, "log": r.log})
        return
    if r.dry_run or verbose:
        for line in r.log:
            out_console.print(line, highlight=False)
    else:
        from bot.cli.runs_cmds import print_run_summary

        print_run_summary(r.run_id, r.log, name=f"run-{r.period}", verbose=False)
    head = "dry run: " if r.dry_run else f"run {r.run_id}: "
    out_console.print(f"{head}{len(r.created)} created, {len(r.skipped)} skipped, {len(r.held)} held",
                      highlight=False)


# --------------------------------------------------------------------------- invoices


def invoice_json(v: InvoiceView, *, lines: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "number": v.number, "kind": v.kind, "advertiser": v.advertiser, "advertiser_id": v.advertiser_id,
        "legal_entity": v.legal_entity, "issue_date": v.issue_date, "due_date": v.due_date,
        "service_start": v.service_start, "service_end": v.service_end, "currency": v.currency,
        "net": money_str(v.net), "vat": money_str(v.vat), "gross": money_str(v.gross),
        "vat_rate": _num(v.vat_rate), "vat_category": v.vat_category, "vat_note": v.vat_note, "fx": v.fx,
        "references": v.references, "reason": v.reason, "billing_run": v.billing_run_id,
        "content_hash": v.content_hash, "pdf_state": v.pdf_state, "dispatch_state": v.dispatch_state,
    }
    if lines:
        out["lines"] = [{"id": x.id, "campaign": x.campaign, "item": x.item, "description": x.description,
                         "quantity": _qty(x.quantity), "unit": x.unit, "unit_price": _num(x.unit_price),
                         "amount": money_str(x.amount), "period_start": x.period_start, "period_end": x.period_end,
                         "credited_line": x.credited_line_id} for x in v.lines]
    return out


def _payment_fields(p: Any) -> dict[str, Any]:
    """Payment figures of an invoice (credit notes: none; they reduce their invoice's open amount)."""
    if p is None:
        return {"paid": None, "open_amount": None, "payment_state": None, "payment_reference": None}
    return {"paid": money_str(p.paid), "open_amount": money_str(p.open_amount), "payment_state": p.payment_state,
            "payment_reference": p.reference}


@invoices_app.command("list")
@handle_errors
def invoices_list(
    advertiser: Annotated[list[str] | None, typer.Option(help="Advertiser id or name (repeatable).")] = None,
    kind: Annotated[str | None, typer.Option(help="invoice or credit_note.")] = None,
    run_id: Annotated[int | None, typer.Option("--run", help="Only invoices of this billing run.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List invoices and credit notes in number order."""
    from bot.context import get_db
    from bot.workflows.invoices import list_invoices

    views = list_invoices(get_db(), advertisers=advertiser or None, kind=kind, billing_run_id=run_id)
    if json_out:
        from bot.workflows.payments import invoice_payments

        pay = invoice_payments(get_db(), today=_today())
        emit_json([{**invoice_json(v), **_payment_fields(pay.get(v.id))} for v in views])
        return
    if not views:
        out_console.print("no invoices")
        return
    from bot.cli.runs_cmds import money

    width = max(20, *(len(v.number) for v in views))
    out_console.print(f"{'NUMBER':<{width}} {'ISSUED':<10} {'ADVERTISER':<36} {'NET':>14} {'GROSS':>14} CUR "
                      f"{'PDF':<7} {'DISPATCH':<8} NOTE", highlight=False)
    for v in views:
        name = v.advertiser if len(v.advertiser) <= 36 else v.advertiser[:35] + "…"
        note = f"credits {v.references}" if v.references else ""
        out_console.print(f"{v.number:<{width}} {v.issue_date!s:<10} {name:<36} {money(v.net):>14} "
                          f"{money(v.gross):>14} {v.currency:<3} {v.pdf_state:<7} {v.dispatch_state or '—':<8} "
                          f"{note}".rstrip(),
                          highlight=False, soft_wrap=True)


@invoices_app.command("show")
@handle_errors
def invoices_show(
    number: Annotated[str, typer.Argument(help="Invoice or credit note number.")],
    legal_entity: Annotated[str | None, typer.Option(help="Legal entity id, if numbers repeat across them.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show one invoice or credit note with its lines."""
    from bot.context import get_db
    from bot.workflows.invoices import get_invoice

    v = get_invoice(get_db(), number, legal_entity_id=legal_entity)
    if json_out:
        emit_json(invoice_json(v, lines=True))
        return
    out_console.print(f"[bold]{v.number}[/bold] ({v.kind}) {v.advertiser} · issued {v.issue_date} · due {v.due_date}",
                      highlight=False)
    for x in v.lines:
        out_console.print(f"  [{x.id}] {x.campaign or '':<30} {x.description:<40} {_qty(x.quantity):>12} {x.unit:<18} "
                          f"{money_str(x.amount):>12}", highlight=False)
    out_console.print(f"  net {money_str(v.net)} · VAT {_num(v.vat_rate)} % {money_str(v.vat)} · "
                      f"gross {money_str(v.gross)} {v.currency}", highlight=False)
    if v.vat_note:
        out_console.print(f"  {v.vat_note}", highlight=False)


class _RequestByDefault(TyperGroup):
    """``billbot credit-note NUMBER …`` runs the hidden ``request`` command; ``approve``, ``reject`` and
    ``list`` are commands of their own."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["request", *args]
        return super().resolve_command(ctx, pair_line_options(args))


PART_OPTIONS = ("--quantity", "--amount")


def pair_line_options(args: list[str]) -> list[str]:
    """``--line 3 --quantity 20 --line 4 --amount 12.00`` → ``--line 3:quantity=20 --line 4:amount=12.00``:
    a ``--quantity``/``--amount`` belongs to the ``--line`` before it (options lose their order once parsed)."""
    out: list[str] = []
    last: int | None = None  # index in ``out`` of the last --line value still without a part
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, inline = a.partition("=")
        if name == "--line":
            out += [a] if eq else args[i:i + 2]
            last = len(out) - 1 if (eq or i + 1 < len(args)) else None
            i += 1 if eq else 2
            continue
        if name in PART_OPTIONS and last is not None and ":" not in out[last]:
            value = inline if eq else (args[i + 1] if i + 1 < len(args) else "")
            base = out[last].partition("=")[2] if out[last].startswith("--line=") else out[last]
            out[last] = f"{'--line=' if out[last].startswith('--line=') else ''}{base}:{name[2:]}={value}"
            last = None
            i += 1 if eq else 2
            continue
        out.append(a)
        i += 1
    return out


def parse_line_asks(lines: list[str]) -> tuple[list[int] | None, list[Any] | None]:
    """``--line`` values (``3``, ``3:quantity=20``, ``3:amount=12.00``) → (whole line ids, None) when no
    line names a part, else (None, one :class:`billing.credits.CreditAsk` per line)."""
    from decimal import Decimal, InvalidOperation

    from billing.credits import CreditAsk
    from billing.errors import Invalid

    asks, problems = [], []
    for raw in lines:
        head, _, part = raw.partition(":")
        if not head.strip().isdigit():
            problems.append(f"--line {raw}: give the invoice line id (a number)")
            continue
        what, _, value = part.partition("=")
        qty = amount = None
        try:
            if what == "quantity":
                qty = Decimal(value)
            elif what == "amount":
                amount = Decimal(value)
            elif part:
                problems.append(f"--line {raw}: follow it with --quantity Q or --amount X")
        except InvalidOperation:
            problems.append(f"--{what} {value!r} (line {head}): not a number")
        asks.append(CreditAsk(int(head), quantity=qty, amount=amount))
    if problems:
        raise Invalid(problems)
    if all(a.quantity is None and a.amount is None for a in asks):
        return [a.line_id for a in asks], None
    return None, asks


credit_note_app = typer.Typer(
    cls=_RequestByDefault, no_args_is_help=True,
    help="Credit notes: `billbot credit-note NUMBER --reason …` requests one; a finance manager other than "
         "the requester issues it with `billbot credit-note approve ID`.",
)
app.add_typer(credit_note_app, name="credit-note")


def _request_json(v: Any) -> dict[str, Any]:
    return {"id": v.id, "invoice": v.invoice, "lines": v.lines, "partial": v.partial, "dispute": v.dispute,
            "reason": v.reason, "amount": money_str(v.amount),
            "currency": v.currency, "state": v.state, "requested_by": v.requested_by,
            "requested_at": v.requested_at, "decided_by": v.decided_by, "decided_at": v.decided_at,
            "credit_note": v.credit_note}


@credit_note_app.command("request", hidden=True)
@handle_errors
def credit_note_cmd(  # noqa: PLR0917 - Typer maps parameters to options
    number: Annotated[str, typer.Argument(help="The invoice number to correct.")],
    reason: Annotated[str, typer.Option(help="Why (printed on the credit note).")],
    line: Annotated[list[str] | None, typer.Option(
        help="Invoice line id to credit (repeatable; default all), whole or followed by --quantity Q or "
             "--amount X for a part of it.")] = None,
    quantity: Annotated[list[str] | None, typer.Option(
        help="Quantity of the --line before it to credit (in the line's unit).")] = None,
    amount: Annotated[list[str] | None, typer.Option(help="Net amount of the --line before it to credit.")] = None,
    legal_entity: Annotated[str | None, typer.Option(help="Legal entity id, if numbers repeat across them.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Request a credit note of all or some lines of an invoice, or of a quantity or an amount of a line
    (`--line 3 --quantity 20 --line 4 --amount 12.00`); a finance manager other than you approves it,
    and only then is it numbered and issued."""
    from bot.context import get_db, get_key
    from bot.workflows.credit_notes import list_requests, request_credit_note

    if quantity or amount:
        fail("--quantity and --amount each follow the --line they are for (`--line 3 --quantity 20`)", 2)
    line_ids, asks = parse_line_asks(line or [])
    db = get_db()
    actor = acting_as(as_user, roles=REQUESTER_ROLES, what="credit-note")
    req = request_credit_note(db, number=number, line_ids=line_ids or None, reason=reason, actor=actor,
                              key=get_key(), legal_entity_id=legal_entity, asks=asks)
    v = next(r for r in list_requests(db) if r.id == req.id)
    if json_out:
        emit_json(_request_json(v))
    else:
        out_console.print(f"credit-note request #{v.id} for {number} ({money_str(v.amount)} {v.currency}) waits for a "
                          f"finance manager other than you: `billbot credit-note approve {v.id} --as U…`",
                          highlight=False)


@credit_note_app.command("approve")
@handle_errors
def credit_note_approve(
    request_id: Annotated[int, typer.Argument(help="The credit-note request's id.")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Issue a requested credit note (a finance manager other than the requester)."""
    from bot.context import get_db, get_key
    from bot.workflows.credit_notes import decide_credit_note
    from bot.workflows.invoices import get_invoice
    from storage.models import Invoice

    db = get_db()
    actor = acting_as(as_user, roles=FINANCE_ROLES, what="credit-note approve")
    req = decide_credit_note(db, request_id=request_id, decision="approve", actor=actor, key=get_key(),
                             today=_today())
    with db.read() as s:
        cn = s.get(Invoice, req.credit_note_id)
        assert cn is not None
        number, le = cn.number, cn.legal_entity_id
    v = get_invoice(db, number, legal_entity_id=le)
    if json_out:
        emit_json(invoice_json(v, lines=True))
    else:
        out_console.print(f"Document {v.number} created for {v.advertiser} (credits {v.references}: "
                          f"{money_str(v.gross)} {v.currency})", highlight=False)


@credit_note_app.command("reject")
@handle_errors
def credit_note_reject(
    request_id: Annotated[int, typer.Argument(help="The credit-note request's id.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
    as_user: AsUser = None,
) -> None:
    """Drop a requested credit note (a finance manager other than the requester)."""
    from bot.context import get_db, get_key
    from bot.workflows.credit_notes import decide_credit_note

    actor = acting_as(as_user, roles=FINANCE_ROLES, what="credit-note reject")
    req = decide_credit_note(get_db(), request_id=request_id, decision="reject", actor=actor, key=get_key(),
                             today=_today(), reason=reason)
    out_console.print(f"credit-note request #{req.id} rejected by {actor}", highlight=False)


@credit_note_app.command("list")
@handle_errors
def credit_note_list(
    state: Annotated[str | None, typer.Option(help="pending, approved or rejected (default: all).")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Credit-note requests: who asked, for what, and who decided."""
    from bot.context import get_db
    from bot.workflows.credit_notes import list_requests

    views = list_requests(get_db(), state=state)
    if json_out:
        emit_json([_request_json(v) for v in views])
        return
    for v in views:
        done = f" → {v.credit_note}" if v.credit_note else ""
        out_console.print(f"#{v.id} {v.state:<8} {v.invoice} {money_str(v.amount)} {v.currency} by {v.requested_by}"
                          f"{done}", highlight=False)
    if not views:
        out_console.print("no credit-note requests")


# --------------------------------------------------------------------------- exchange rates


@fx_app.command("import")
@handle_errors
def fx_import(
    file: Annotated[Path, typer.Argument(help="ECB reference rates CSV (eurofxref.csv or eurofxref-hist.csv).")],
    source: Annotated[str, typer.Option(help="Source name stored with each rate.")] = "ECB",
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Import exchange rates (base EUR) from an ECB CSV; re-importing changes nothing."""
    from bot.context import get_db, get_key
    from bot.workflows.fx import import_ecb_csv

    if not file.is_file():
        fail(f"{file}: no such file", 2)
    actor = acting_as(as_user, roles=OPERATOR_ROLES, what="fx import")
    r = import_ecb_csv(get_db(), text=file.read_text(encoding="utf-8"), actor=actor, key=get_key(),
                       now=_now(), source=source, file_name=file.name)
    data = {"inserted": r.inserted, "updated": r.updated, "unchanged": r.unchanged, "from": r.first_day,
            "to": r.last_day}
    if json_out:
        emit_json(data)
    else:
        out_console.print(f"{r.inserted} inserted, {r.updated} updated, {r.unchanged} unchanged "
                          f"({r.first_day}..{r.last_day})", highlight=False)


@fx_app.command("list")
@handle_errors
def fx_list(
    quote: Annotated[str | None, typer.Option(help="Only this currency, e.g. USD.")] = None,
    since: Annotated[str | None, typer.Option(help="Only rates from this day (YYYY-MM-DD).")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List exchange rates, newest first."""
    from billing.errors import Invalid
    from bot.context import get_db
    from bot.workflows.fx import list_rates

    try:
        since_day = date.fromisoformat(since) if since else None
    except ValueError:
        raise Invalid(f"--since {since!r} is not a date (YYYY-MM-DD)") from None
    rows = list_rates(get_db(), quote=quote, since=since_day)
    if json_out:
        emit_json([{"date": r.day, "base": r.base, "quote": r.quote, "rate": format(r.rate.normalize(), "f"),
                    "source": r.source} for r in rows])
        return
    for r in rows:
        out_console.print(f"{r.day} {r.base}/{r.quote} {format(r.rate.normalize(), 'f')} ({r.source})", highlight=False)
    if not rows:
        out_console.print("no exchange rates")
