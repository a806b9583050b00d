"""``billbot payments …`` (bank files in, cash application by hand) and ``billbot receivables …``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.cli.groups import dunning_app, payments_app, receivables_app
from bot.cli.identity import AsUser, acting_as
from bot.cli.output import emit_json, handle_errors, money_str, out_console

AS_HELP = "Slack user id of the billbot user acting (their roles are checked)."


#: who may import bank statements (the money is applied automatically) and send dunning letters
IMPORT_ROLES = frozenset({"cash_applier", "finance_manager", "operator", "admin"})
DUNNING_ROLES = frozenset({"finance_manager", "operator", "admin"})


def _today() -> date:
    return datetime.now(UTC).astimezone().date()


@payments_app.command("import")
@handle_errors
def payments_import(
    files: Annotated[list[Path], typer.Argument(help="camt.053 / camt.054 XML or MT940 files.", exists=True,
                                                dir_okay=False, readable=True)],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Import bank statements and apply their credits to open invoices. Importing a file twice changes
    nothing; entries that cannot be read go to `billbot quarantine list` (source `bank`)."""
    from bot.context import get_db, get_key, settings
    from bot.workflows.payments import import_statement

    actor = acting_as(as_user, roles=IMPORT_ROLES, what="payments import")
    results = [import_statement(get_db(), f, actor=actor, key=get_key(),
                                tolerance=settings().payment_tolerance) for f in files]
    if json_out:
        emit_json([{"file": r.file, "format": r.format, "entries": r.entries, "inserted": r.inserted,
                    "unchanged": r.unchanged, "quarantined": r.quarantined, "outcomes": r.outcomes,
                    "exceptions": r.exceptions} for r in results])
        return
    for r in results:
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(r.outcomes.items())) or "no payments"
        out_console.print(f"{r.file} ({r.format}): {r.inserted} new, {r.unchanged} unchanged, "
                          f"{r.quarantined} quarantined; {outcomes}", highlight=False)


def payment_json(v: Any) -> dict[str, Any]:
    return {"id": v.id, "booking_date": v.booking_date, "value_date": v.value_date, "amount": money_str(v.amount),
            "currency": v.currency, "kind": v.kind, "payer_name": v.payer_name, "payer_iban": v.payer_iban,
            "remittance": v.remittance, "state": v.state, "unapplied": money_str(v.unapplied),
            "allocations": [{"invoice": n, "amount": money_str(a), "method": m} for n, a, m in v.allocations]}


@payments_app.command("list")
@handle_errors
def payments_list(
    state: Annotated[str | None, typer.Option(help="unmatched, matched, partial, overpaid, refunded, "
                                                   "not_a_payment.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Bank entries in booking order with their allocations."""
    from bot.context import get_db
    from bot.workflows.payments import list_payments

    views = list_payments(get_db(), state=state)
    if json_out:
        emit_json([payment_json(v) for v in views])
        return
    for v in views:
        to = ", ".join(n for n, _a, _m in v.allocations)
        out_console.print(f"{v.id:>6} {v.booking_date} {money_str(v.amount):>12} {v.currency} {v.state:<13} "
                          f"{(v.payer_name or '')[:30]:<30} {to}", highlight=False)
    if not views:
        out_console.print("no payments")


@payments_app.command("allocate")
@handle_errors
def payments_allocate(
    payment_id: Annotated[int, typer.Argument(help="Payment id (`payments list`).")],
    invoice: Annotated[str, typer.Argument(help="Invoice number.")],
    actor: Annotated[str, typer.Option("--as", help=AS_HELP)],
    amount: Annotated[str | None, typer.Option(help="Amount; default: all that fits.")] = None,
) -> None:
    """Allocate a payment's unapplied money to an invoice (cash_applier or finance_manager)."""
    from bot.context import get_db, get_key
    from bot.workflows.payments import allocate

    took = allocate(get_db(), payment_id=payment_id, invoice_number=invoice, actor=actor, key=get_key(),
                    amount=Decimal(amount) if amount else None)
    out_console.print(f"allocated {money_str(took)} of payment {payment_id} to {invoice}", highlight=False)


@payments_app.command("write-off")
@handle_errors
def payments_write_off(
    invoice: Annotated[str, typer.Argument(help="Invoice number.")],
    actor: Annotated[str, typer.Option("--as", help=AS_HELP)],
    reason: Annotated[str, typer.Option(help="Why the difference is written off.")],
) -> None:
    """Write off what is open on an invoice (finance_manager; not the author of its allocation)."""
    from bot.context import get_db, get_key
    from bot.workflows.payments import write_off

    amount = write_off(get_db(), invoice_number=invoice, actor=actor, key=get_key(), reason=reason)
    out_console.print(f"wrote off {money_str(amount)} on {invoice}", highlight=False)


@payments_app.command("refund")
@handle_errors
def payments_refund(
    payment_id: Annotated[int, typer.Argument(help="Payment id.")],
    actor: Annotated[str, typer.Option("--as", help=AS_HELP)],
    reason: Annotated[str, typer.Option(help="Why the money goes back.")],
) -> None:
    """Mark an over-payment's unapplied money as refunded (finance_manager)."""
    from bot.context import get_db, get_key
    from bot.workflows.payments import refund

    amount = refund(get_db(), payment_id=payment_id, actor=actor, key=get_key(), reason=reason)
    out_console.print(f"refund of {money_str(amount)} recorded for payment {payment_id}", highlight=False)


@receivables_app.command("aging")
@handle_errors
def receivables_aging(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Day to age on (YYYY-MM-DD); default today.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Open amounts per advertiser by days past due: current, 1–30, 31–60, 61–90, >90, in the invoice
    currency and in the reporting currency (REPORTING_CURRENCY, default: the currency of the legal
    entity with the most advertisers). Conversion: the rate locked on the invoice when it locked one to the
    reporting currency, else the latest ECB rate (at most 7 days old) on or before the day; currencies
    without a rate are listed as unconverted. --json: one row per advertiser and currency (with
    "reporting": the same buckets converted), then one row with "advertiser_id": null holding the
    totals over all advertisers in the reporting currency.

    DSO (days sales outstanding) over the last 90 days, per currency:
    DSO = open receivables on the day ÷ gross invoiced in the 90 days up to it × 90.
    """
    from billing.errors import Invalid
    from bot.context import get_db
    from bot.workflows.payments import aging_report, days_sales_outstanding

    try:
        day = date.fromisoformat(as_of) if as_of else _today()
    except ValueError:
        raise Invalid(f"--as-of: not a date: {as_of!r} (YYYY-MM-DD)") from None
    rows, rep = aging_report(get_db(), as_of=day)
    dso = days_sales_outstanding(get_db(), as_of=day)
    if json_out:
        def converted(b: dict[str, Decimal] | None) -> dict[str, Any] | None:
            if b is None:
                return None
            return {"currency": rep.currency, **{k: money_str(v) for k, v in b.items()},
                    "total": money_str(sum(b.values(), Decimal(0)))}
        emit_json([*({"advertiser": r.advertiser, "advertiser_id": r.advertiser_id, "currency": r.currency,
                      **{k: money_str(v) for k, v in r.buckets.items()}, "total": money_str(r.total),
                      "dso": None if dso.get(r.currency) is None else str(dso[r.currency]),
                      "reporting": converted(r.reporting)} for r in rows),
                   {"advertiser": f"All advertisers in {rep.currency}", "advertiser_id": None,
                    "currency": rep.currency, **{k: money_str(v) for k, v in rep.buckets.items()},
                    "total": money_str(rep.total), "dso": None, "reporting": converted(rep.buckets),
                    "unconverted": rep.unconverted}])
        return
    for r in rows:
        cells = " ".join(f"{money_str(v):>12}" for v in r.buckets.values())
        out_console.print(f"{r.advertiser[:30]:<30} {r.currency} {cells} {money_str(r.total):>12}", highlight=False)
    cells = " ".join(f"{money_str(v):>12}" for v in rep.buckets.values())
    out_console.print(f"{'All advertisers':<30} {rep.currency} {cells} {money_str(rep.total):>12}", highlight=False)
    if rep.unconverted:
        out_console.print(f"not in the {rep.currency} totals (no rate): {', '.join(rep.unconverted)}",
                          highlight=False)
    for cur, d in dso.items():
        out_console.print(f"DSO {cur}: {'n/a' if d is None else f'{d} days'}", highlight=False)


@receivables_app.command("hold")
@handle_errors
def receivables_hold(
    invoice: Annotated[str, typer.Argument(help="Invoice number.")],
    kind: Annotated[str, typer.Option(help="dispute or promise.")],
    reason: Annotated[str, typer.Option(help="What the customer said.")],
    actor: Annotated[str, typer.Option("--as", help=AS_HELP)],
    until: Annotated[str | None, typer.Option(help="Promised payment date (YYYY-MM-DD), for a promise.")] = None,
) -> None:
    """Stop dunning an invoice: an open dispute, or a promise to pay by a date."""
    from billing.errors import Invalid
    from bot.context import get_db, get_key
    from bot.workflows.dunning import hold_invoice

    try:
        day = date.fromisoformat(until) if until else None
    except ValueError:
        raise Invalid(f"--until: not a date: {until!r} (YYYY-MM-DD)") from None
    hold_invoice(get_db(), number=invoice, kind=kind, reason=reason, actor=actor, key=get_key(), until=day)
    out_console.print(f"{invoice}: {kind} recorded; dunning skips it", highlight=False)


@dunning_app.command("run")
@handle_errors
def dunning_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the letters due, write nothing.")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Send today's dunning letters: per invoice the highest level reached and not yet sent
    (levels per legal entity; default reminder 7, first notice 21, final notice 35 days after due).
    Invoices with an open dispute or a payment promise are skipped. PDFs go to var/dunning/."""
    from bot.context import get_db, get_key, settings
    from bot.workflows.dunning import letter_rendered, run_dunning
    from storage.models import LegalEntity

    db = get_db()
    actor = "cli:dry-run" if dry_run else acting_as(as_user, roles=DUNNING_ROLES, what="dunning run")
    letters = run_dunning(db, today=_today(), actor=actor, key=get_key(), dry_run=dry_run)
    paths: dict[int, str] = {}
    if not dry_run and letters:
        from bot.documents.letters import render_letter

        out = Path(settings().var_dir) / "dunning"
        out.mkdir(parents=True, exist_ok=True)
        with db.read() as s:
            sellers = {le.id: (le.name, le.address) for le in s.query(LegalEntity)}
        for x in letters:
            assert x.id is not None
            name, _addr = sellers.get(x.legal_entity, (x.legal_entity, None))
            path = out / f"{x.invoice}-L{x.level}.pdf"
            path.write_bytes(render_letter(x, seller=name))
            letter_rendered(db, x.id, str(path))
            paths[x.id] = str(path)
    if json_out:
        emit_json([{"id": x.id, "invoice": x.invoice, "advertiser": x.advertiser, "level": x.level, "name": x.name,
                    "days_past_due": x.days_past_due, "open_amount": money_str(x.open_amount),
                    "fee": money_str(x.fee), "interest": money_str(x.interest), "total": money_str(x.total),
                    "currency": x.currency, "pdf": paths.get(x.id or 0)} for x in letters])
        return
    for x in letters:
        out_console.print(f"{x.invoice:<20} {x.advertiser[:30]:<30} level {x.level} {x.name:<14} "
                          f"{money_str(x.total):>12} {x.currency}", highlight=False)
    if not letters:
        out_console.print("no letters due")


# --------------------------------------------------------------------------- promises to pay

promise_app = typer.Typer(help="Promises to pay: record, list, fulfil / break / cancel. An open promise stops "
                               "dunning the invoice until its date.", no_args_is_help=True)
receivables_app.add_typer(promise_app, name="promise")


def _day(text: str, what: str) -> date:
    from billing.errors import Invalid

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{what}: not a date: {text!r} (YYYY-MM-DD)") from None


def promise_json(p: Any) -> dict[str, Any]:
    return {"id": p.id, "invoice": p.invoice, "advertiser": p.advertiser, "until": p.until, "reason": p.reason,
            "state": p.state, "lapsed": p.lapsed, "open_amount": money_str(p.open_amount), "currency": p.currency,
            "recorded_by": p.actor, "recorded_at": p.created_at}


@promise_app.command("add")
@handle_errors
def promise_add(
    invoice: Annotated[str, typer.Argument(help="Invoice number.")],
    until: Annotated[str, typer.Option(help="Promised payment date (YYYY-MM-DD).")],
    reason: Annotated[str, typer.Option(help="What the customer said (who, when, how).")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Record a promise to pay an invoice by a date; dunning skips the invoice until then
    (cash_applier, finance_manager or approver)."""
    from bot.context import get_db, get_key
    from bot.workflows.dunning import HOLD_ROLES
    from bot.workflows.promises import list_promises, record_promise

    actor = acting_as(as_user, roles=HOLD_ROLES, what="receivables promise add")
    pid = record_promise(get_db(), number=invoice, until=_day(until, "--until"), reason=reason, actor=actor,
                         key=get_key(), today=_today())
    if json_out:
        emit_json(next(promise_json(p) for p in list_promises(get_db(), today=_today(), invoice=invoice)
                       if p.id == pid))
        return
    out_console.print(f"promise {pid}: {invoice} to be paid by {until}; dunning skips it until then", highlight=False)


@promise_app.command("list")
@handle_errors
def promise_list(
    state: Annotated[str | None, typer.Option(help="open, fulfilled, broken or cancelled.")] = None,
    invoice: Annotated[str | None, typer.Option(help="Only this invoice's promises.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Promises to pay, newest first; "lapsed": still open but its date passed (dunning resumes)."""
    from bot.context import get_db
    from bot.workflows.promises import list_promises

    views = list_promises(get_db(), today=_today(), state=state, invoice=invoice)
    if json_out:
        emit_json([promise_json(p) for p in views])
        return
    for p in views:
        flag = " (lapsed)" if p.lapsed else ""
        out_console.print(f"{p.id:>5} {p.invoice:<20} {p.advertiser[:30]:<30} by {p.until} {p.state}{flag:<9} "
                          f"{money_str(p.open_amount):>12} {p.currency} open", highlight=False)
    if not views:
        out_console.print("no promises")


def _resolve(promise_id: int, outcome: str, reason: str, as_user: str | None, json_out: bool) -> None:
    from bot.context import get_db, get_key
    from bot.workflows.promises import resolve_promise

    actor = acting_as(as_user, roles=None, what=f"receivables promise {outcome}")  # the workflow checks the roles
    view = resolve_promise(get_db(), promise_id=promise_id, outcome=outcome, reason=reason, actor=actor,
                           key=get_key())
    if json_out:
        emit_json(promise_json(view))
        return
    out_console.print(f"promise {view.id} on {view.invoice}: {view.state}; dunning no longer holds for it",
                      highlight=False)


PROMISE_ID = Annotated[int, typer.Argument(help="Promise id (`receivables promise list`).")]
REASON = Annotated[str, typer.Option(help="Why (what happened).")]


@promise_app.command("fulfil")
@handle_errors
def promise_fulfil(promise_id: PROMISE_ID, reason: REASON, json_out: Annotated[bool, typer.Option("--json")] = False,
                   as_user: AsUser = None) -> None:
    """The customer paid as promised (refused while the invoice still has money open)."""
    _resolve(promise_id, "fulfil", reason, as_user, json_out)


@promise_app.command("break")
@handle_errors
def promise_break(promise_id: PROMISE_ID, reason: REASON, json_out: Annotated[bool, typer.Option("--json")] = False,
                  as_user: AsUser = None) -> None:
    """The promise was not kept: dunning resumes at the level the invoice has reached."""
    _resolve(promise_id, "break", reason, as_user, json_out)


@promise_app.command("cancel")
@handle_errors
def promise_cancel(promise_id: PROMISE_ID, reason: REASON, json_out: Annotated[bool, typer.Option("--json")] = False,
                   as_user: AsUser = None) -> None:
    """Withdraw a promise recorded by mistake: dunning resumes."""
    _resolve(promise_id, "cancel", reason, as_user, json_out)
