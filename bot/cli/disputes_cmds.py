"""CLI commands (issue 20): disputes — open, list, show, propose a credit, reject, withdrawn by the client.

Each command calls one workflow in :mod:`bot.workflows.disputes`; ``list --json`` prints the fields
DESIGN.md names (``id``, ``invoice``, ``category``, ``state``, ``amount``, ``credited``, ``opened_at``,
``resolved_at``, ``owner``) and more.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from bot.cli.billing_cmds import pair_line_options, parse_line_asks
from bot.cli.groups import app
from bot.cli.identity import AsUser, acting_as
from bot.cli.output import emit_json, fail, handle_errors, money_str, out_console

if TYPE_CHECKING:
    from bot.workflows.disputes import DisputeView


class _PairedLines(TyperGroup):
    """``--line N --quantity Q`` pairs, as for ``billbot credit-note``."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        return super().resolve_command(ctx, pair_line_options(args))


disputes_app = typer.Typer(
    cls=_PairedLines, no_args_is_help=True,
    help="Disputes: a client's challenge of an invoice, its evidence and outcome (credit, rejection, withdrawal).")
app.add_typer(disputes_app, name="disputes")


def dispute_json(v: DisputeView) -> dict[str, Any]:
    return {"id": v.id, "invoice": v.invoice, "advertiser": v.advertiser, "category": v.category, "state": v.state,
            "amount": money_str(v.amount), "currency": v.currency, "credited": money_str(v.credited),
            "opened_at": v.opened_at, "resolved_at": v.resolved_at, "owner": v.owner, "opened_by": v.opened_by,
            "reason": v.reason, "lines": v.lines, "client_contact": v.client_contact,
            "client_reference": v.client_reference, "resolved_by": v.resolved_by, "resolution": v.resolution,
            "days_open": v.days_open, "due_at": v.due_at, "escalated": v.escalated,
            "credit_request": v.credit_request}


def _say(v: DisputeView) -> None:
    out_console.print(f"dispute #{v.id} {v.state} · {v.invoice} ({v.advertiser}) · {v.category} · "
                      f"{money_str(v.amount)} {v.currency} · owner {v.owner}"
                      + (f" · credited {money_str(v.credited)} after {v.days_open} day(s)" if v.state == "credited"
                         else ""), highlight=False)


@disputes_app.command("open")
@handle_errors
def open_cmd(  # noqa: PLR0913, PLR0917 - Typer maps parameters to options
    number: Annotated[str, typer.Argument(help="The disputed invoice's number.")],
    category: Annotated[str, typer.Option(help="tracking_disagreement, invalid_traffic, make_good_not_applied, "
                                               "rate_disagreement, duplicate_billing or other.")],
    reason: Annotated[str, typer.Option(help="What the client disputes.")],
    line: Annotated[list[int] | None, typer.Option(help="Disputed invoice line id (repeatable; default all).")] = None,
    amount: Annotated[str | None, typer.Option(help="Disputed net amount (default: the disputed lines').")] = None,
    contact: Annotated[str | None, typer.Option(help="The client's contact (name, e-mail).")] = None,
    client_ref: Annotated[str | None, typer.Option("--client-ref", help="The client's own reference.")] = None,
    owner: Annotated[str | None, typer.Option(help="Who owns the dispute (Slack id; default you).")] = None,
    legal_entity: Annotated[str | None, typer.Option(help="Legal entity id, if numbers repeat across them.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Open a dispute on an invoice: it leaves dunning until the dispute ends."""
    from bot.context import get_db, get_key
    from bot.workflows.disputes import get_dispute, open_dispute

    value = None
    if amount is not None:
        try:
            value = Decimal(amount)
        except InvalidOperation:
            fail(f"--amount {amount!r}: not a number", 2)
    db = get_db()
    actor = acting_as(as_user, roles=None, what="disputes open")
    did = open_dispute(db, number=number, category=category, reason=reason, actor=actor, key=get_key(),
                       line_ids=line or None, amount=value, client_contact=contact, client_reference=client_ref,
                       owner=owner, legal_entity_id=legal_entity)
    pack = _evidence_pack(did)
    v = get_dispute(db, did)
    if json_out:
        emit_json({**dispute_json(v), "evidence_pack": pack})
    else:
        _say(v)
        if pack:
            out_console.print(f"evidence pack: {pack}", highlight=False)


def _evidence_pack(dispute_id: int) -> str | None:
    """The invoice's evidence pack, built now: a CLI in embedded mode has no worker that outlives it (in
    distributed mode the ``dispute.opened`` reaction queued the ``dispute_evidence`` job)."""
    from bot import jobs
    from bot.tasks.disputes import dispute_evidence

    if jobs.mode() == "distributed":
        return None
    return str(dispute_evidence(dispute_id=dispute_id)["path"])


@disputes_app.command("list")
@handle_errors
def list_cmd(
    state: Annotated[str | None, typer.Option(help="open (open or proposed), proposed, credited, rejected or "
                                                   "withdrawn (default: all).")] = None,
    invoice: Annotated[str | None, typer.Option(help="Only this invoice's disputes.")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Disputes with their state and outcome."""
    from bot.context import get_db
    from bot.workflows.disputes import list_disputes

    views = list_disputes(get_db(), state=state, invoice=invoice)
    if json_out:
        emit_json([dispute_json(v) for v in views])
        return
    for v in views:
        _say(v)
    if not views:
        out_console.print("no disputes")


@disputes_app.command("show")
@handle_errors
def show_cmd(
    dispute_id: Annotated[int, typer.Argument(help="The dispute's id.")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One dispute with the evidence summary of its lines and the comments from its Slack thread."""
    from bot.context import get_db
    from bot.workflows.disputes import comments, evidence_summary, get_dispute

    db = get_db()
    v = get_dispute(db, dispute_id)
    summary = evidence_summary(db, dispute_id)
    said = comments(db, dispute_id)
    if json_out:
        emit_json({**dispute_json(v), "evidence": summary,
                   "comments": [{"at": c.at, "user": c.user, "text": c.text} for c in said]})
        return
    _say(v)
    for para in summary:
        out_console.print(para, highlight=False)
    for c in said:
        out_console.print(f"{c.at:%Y-%m-%d %H:%M} {c.user}: {c.text}", highlight=False)


@disputes_app.command("propose-credit")
@handle_errors
def propose_cmd(  # noqa: PLR0917 - Typer maps parameters to options
    dispute_id: Annotated[int, typer.Argument(help="The dispute's id.")],
    line: Annotated[list[str] | None, typer.Option(
        help="Line to credit, followed by --quantity Q or --amount X (default: what the evidence supports).")] = None,
    quantity: Annotated[list[str] | None, typer.Option(help="Quantity of the --line before it.")] = None,
    amount: Annotated[list[str] | None, typer.Option(help="Net amount of the --line before it.")] = None,
    reason: Annotated[str | None, typer.Option(help="Printed on the credit note (default: the dispute's).")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Propose a partial credit note for the disputed lines; a finance manager other than you approves it."""
    from billing.credits import CreditAsk
    from bot.context import get_db, get_key
    from bot.workflows.disputes import propose_credit

    if quantity or amount:
        fail("--quantity and --amount each follow the --line they are for (`--line 3 --quantity 20`)", 2)
    asks: list[CreditAsk] | None = None
    if line:
        ids, parts = parse_line_asks(line)
        asks = parts if parts is not None else [CreditAsk(i) for i in ids or []]
    actor = acting_as(as_user, roles=None, what="disputes propose-credit")
    req = propose_credit(get_db(), dispute_id=dispute_id, actor=actor, key=get_key(), asks=asks, reason=reason)
    if json_out:
        emit_json({"request": req.id, "dispute": dispute_id, "invoice": req.invoice_number,
                   "amount": money_str(req.amount), "currency": req.currency, "partial": req.partial})
    else:
        out_console.print(f"credit-note request #{req.id} for dispute #{dispute_id} ({money_str(req.amount)} "
                          f"{req.currency}) waits for a finance manager other than you: "
                          f"`billbot credit-note approve {req.id} --as U…`", highlight=False)


@disputes_app.command("reject")
@handle_errors
def reject_cmd(
    dispute_id: Annotated[int, typer.Argument(help="The dispute's id.")],
    reason: Annotated[str, typer.Option(help="Why, for the client.")],
    as_user: AsUser = None,
) -> None:
    """Reject a dispute (a finance manager): the invoice stands and returns to dunning."""
    from bot.context import get_db, get_key
    from bot.workflows.disputes import get_dispute, reject_dispute

    actor = acting_as(as_user, roles=None, what="disputes reject")
    db = get_db()
    reject_dispute(db, dispute_id=dispute_id, reason=reason, actor=actor, key=get_key())
    _say(get_dispute(db, dispute_id))


@disputes_app.command("withdraw")
@handle_errors
def withdraw_cmd(
    dispute_id: Annotated[int, typer.Argument(help="The dispute's id.")],
    note: Annotated[str | None, typer.Option(help="What the client said.")] = None,
    as_user: AsUser = None,
) -> None:
    """Record that the client withdrew the dispute (a finance manager)."""
    from bot.context import get_db, get_key
    from bot.workflows.disputes import get_dispute, withdraw_dispute

    actor = acting_as(as_user, roles=None, what="disputes withdraw")
    db = get_db()
    withdraw_dispute(db, dispute_id=dispute_id, actor=actor, key=get_key(), note=note)
    _say(get_dispute(db, dispute_id))
