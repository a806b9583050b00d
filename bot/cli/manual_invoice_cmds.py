"""CLI commands (issue 19, item 7): one-off invoices, per-invoice header overrides and cancelling a whole
pre-invoice — each a manual change a second person approves (``billbot exceptions approve ID``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import typer

from bot.cli.billing_cmds import _show_after
from bot.cli.groups import invoices_app, preinvoices_app
from bot.cli.identity import REQUESTER_ROLES, AsUser, acting_as
from bot.cli.output import emit_json, handle_errors, out_console

JsonOpt = Annotated[bool, typer.Option("--json")]


def _day(value: str | None, what: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=what) from None


@invoices_app.command("create")
@handle_errors
def invoices_create(  # noqa: PLR0917 - Typer maps parameters to options
    advertiser: Annotated[str, typer.Option(help="Advertiser id.")],
    line: Annotated[list[str], typer.Option(help='A line "text;quantity;unit price;VAT %" (repeatable).')],
    service_start: Annotated[str | None, typer.Option(help="Service period start (default: today).")] = None,
    service_end: Annotated[str | None, typer.Option(help="Service period end (default: its start).")] = None,
    json_out: JsonOpt = False,
    as_user: AsUser = None,
) -> None:
    """Create a one-off invoice: a draft pre-invoice without a campaign that someone else approves; the
    next billing run reaching its service date numbers it."""
    from bot.context import get_db, get_key, settings
    from bot.workflows.manual_invoices import create_one_off

    start, end = _day(service_start, "--service-start"), _day(service_end, "--service-end")
    actor = acting_as(as_user, roles=REQUESTER_ROLES, what="invoices create")
    pid = create_one_off(get_db(), advertiser_id=advertiser, lines=list(line), actor=actor, key=get_key(),
                         now=datetime.now(UTC), service_start=start, service_end=end,
                         default_tolerance=settings().default_tolerance)
    if not json_out:
        out_console.print(f"one-off pre-invoice {pid} created; it waits for approval by someone else "
                          "(billbot exceptions list)", highlight=False)
    _show_after(pid, json_out)


@preinvoices_app.command("override")
@handle_errors
def preinvoices_override(  # noqa: PLR0917 - Typer maps parameters to options
    preinvoice_id: Annotated[int, typer.Argument(help="Pre-invoice id.")],
    payment_terms: Annotated[int | None, typer.Option(help="Payment terms in days for this invoice.")] = None,
    recipient: Annotated[str | None, typer.Option(help="Addressee line above the buyer's address.")] = None,
    notes: Annotated[str | None, typer.Option(help="A note printed on the invoice.")] = None,
    po_number: Annotated[str | None, typer.Option(help="The buyer's purchase-order number for this invoice "
                                                       "(BT-13), instead of the campaign's or advertiser's.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the overrides (then apply the ones given).")] = False,
    json_out: JsonOpt = False,
    as_user: AsUser = None,
) -> None:
    """Override the invoice header of a pre-invoice (payment terms, recipient, notes, PO number). Voids an approval;
    someone else approves the change."""
    from bot.context import get_db, get_key, settings
    from bot.workflows.manual_invoices import set_overrides

    actor = acting_as(as_user, roles=REQUESTER_ROLES, what="preinvoices override")
    set_overrides(get_db(), preinvoice_id, actor=actor, key=get_key(), now=datetime.now(UTC),
                  payment_terms_days=payment_terms, recipient=recipient, notes=notes, po_number=po_number, clear=clear,
                  default_tolerance=settings().default_tolerance)
    _show_after(preinvoice_id, json_out)


@preinvoices_app.command("cancel")
@handle_errors
def preinvoices_cancel(
    preinvoice_id: Annotated[int, typer.Argument(help="Pre-invoice id.")],
    reason: Annotated[str | None, typer.Option(help="Why (required).")] = None,
    json_out: JsonOpt = False,
    as_user: AsUser = None,
) -> None:
    """Ask to cancel a whole pre-invoice (not yet invoiced); someone else approves the cancellation."""
    from bot.context import get_db, get_key
    from bot.workflows.manual_invoices import cancel_preinvoice

    actor = acting_as(as_user, roles=REQUESTER_ROLES, what="preinvoices cancel")
    exc = cancel_preinvoice(get_db(), preinvoice_id, reason=reason, actor=actor, key=get_key(),
                            now=datetime.now(UTC))
    if json_out:
        emit_json({"preinvoice": preinvoice_id, "exception": exc, "state": "pending"})
    else:
        out_console.print(f"pre-invoice {preinvoice_id}: cancellation requested; exception {exc} waits for "
                          "someone else to approve it", highlight=False)
