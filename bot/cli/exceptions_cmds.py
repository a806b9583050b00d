"""CLI commands (exceptions): ``billbot exceptions list`` and ``billbot exceptions show ID``.

``list --json`` prints an array of objects with at least ``id, kind, state, advertiser,
preinvoice, amount, currency, cause, due_at`` (references are our ids; money two-decimal strings).
``show`` prints the exception and its evidence (every finding's figures, days and row ids); ``assign ID
[--to U…]`` changes its owner (issue 21).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy import select

from billing.errors import Invalid, NotFound
from bot.cli.groups import exceptions_app
from bot.cli.identity import AsUser, acting_as
from bot.cli.output import emit_json, handle_errors, money_str, out_console
from storage.models import EXCEPTION_STATES, OPEN_EXCEPTION_STATES, BillingException
from storage.settings import local_time

STATE_CHOICES = (*EXCEPTION_STATES, "open")


def exception_json(e: BillingException, *, evidence: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": e.id,
        "key": e.key,
        "kind": e.kind,
        "state": e.state,
        "advertiser": e.advertiser_id,
        "advertiser_name": e.advertiser.name if e.advertiser is not None else None,
        "legal_entity": e.legal_entity_id,
        "preinvoice": e.preinvoice_id,
        "billing_run": e.billing_run_id,
        "period_start": e.period_start,
        "period_end": e.period_end,
        "amount": money_str(e.amount),
        "currency": e.currency,
        "cause": e.cause,
        "summary": e.summary,
        "due_at": e.due_at,
        "remind_at": e.remind_at,
        "approvals_needed": e.approvals_needed,
        "decision": e.decision,
        "decided_by": e.decided_by,
        "decided_at": e.decided_at,
        "reason": e.reason,
        "owner": e.owner,  # issue 21
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }
    if evidence:
        out["evidence"] = e.evidence or {}
        out["subject_hash"] = e.subject_hash
        from bot.workflows.decisions import subject_hash_of, valid_approvals

        out["subject_sha256"] = subject_hash_of(e)  # what a decision binds to (`exceptions approve --subject`)
        out["approvals"] = [a.get("user") for a in valid_approvals(e)]
        out["review"] = e.review  # routing rule, approver group, checklist, reminder plan (issue 21)
    return out


@exceptions_app.command("list")
@handle_errors
def list_exceptions(
    state: Annotated[str | None, typer.Option(help=f"Only this state: {', '.join(STATE_CHOICES)} "
                                                   "(open = pending or escalated).")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind: variance or below_threshold.")] = None,
    advertiser: Annotated[str | None, typer.Option(help="Only this advertiser (id).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Exceptions, newest first: what waits for a decision, and what was decided."""
    from sqlalchemy.orm import selectinload

    from bot.context import get_db

    if state is not None and state not in STATE_CHOICES:
        raise Invalid(f"--state: unknown state {state!r} (expected one of {', '.join(STATE_CHOICES)})")
    q = select(BillingException).options(selectinload(BillingException.advertiser))
    if state == "open":
        q = q.where(BillingException.state.in_(OPEN_EXCEPTION_STATES))
    elif state is not None:
        q = q.where(BillingException.state == state)
    if kind is not None:
        q = q.where(BillingException.kind == kind)
    if advertiser is not None:
        q = q.where(BillingException.advertiser_id == advertiser)
    with get_db().read() as s:
        rows = [exception_json(e) for e in s.execute(q.order_by(BillingException.id.desc())).scalars()]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        out_console.print("no exceptions")
        return
    from rich.table import Table

    t = Table("id", "kind", "state", "advertiser", "pre-invoice", "amount", "cause", "due")
    for r in rows:
        due = local_time(r["due_at"], empty="")
        t.add_row(str(r["id"]), r["kind"], r["state"], r["advertiser_name"] or r["advertiser"],
                  str(r["preinvoice"] or ""), f"{r['amount']} {r['currency']}", r["cause"], due)
    out_console.print(t)


@exceptions_app.command("show")
@handle_errors
def show_exception(
    exception_id: Annotated[int, typer.Argument(help="The exception's id (see `billbot exceptions list`).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the exception with its evidence as JSON.")] = False,
) -> None:
    """One exception and its evidence: the rule and tolerance that fired, figures, days and rows."""
    from bot.context import get_db

    with get_db().read() as s:
        e = s.get(BillingException, exception_id)
        if e is None:
            raise NotFound(f"exception {exception_id} does not exist")
        data = exception_json(e, evidence=True)
    if json_out:
        emit_json(data)
        return
    _print_exception(data)


def _decide(  # noqa: PLR0917 - the four commands pass their options through
    decision: str, exception_id: int, as_user: str | None, reason: str | None, subject: str | None,
    json_out: bool, checked: list[str] | None = None,
) -> None:
    """Decide through the very workflow a Slack click takes (roles, separation of duties, reasons,
    the signed decision record); the Slack message is updated after commit by the runtime's reactions."""
    from bot.context import get_db, get_key
    from bot.workflows.decisions import decide, subject_hash_of

    actor = acting_as(as_user, roles=None, what=f"exceptions {decision}")
    db = get_db()
    with db.read() as s:
        e = s.get(BillingException, exception_id)
        if e is None:
            raise NotFound(f"exception {exception_id} does not exist")
        current = subject_hash_of(e)
    out = decide(db, exception_id=exception_id, decision=decision, actor=actor,  # type: ignore[arg-type]
                 subject_hash=subject or current, reason=reason, signing_key=get_key(), checked=checked or (),
                 group_lookup=_group_lookup())
    data = {"exception": out.exception_id, "decision": out.decision, "final": out.final,
            "approvals": out.approvals, "approvals_needed": out.approvals_needed, "actor": out.actor,
            "subject_sha256": out.subject_hash, "invoice_ids": list(out.invoice_ids)}
    if json_out:
        emit_json(data)
    elif out.final:
        out_console.print(f"exception {exception_id}: {decision} recorded by {actor}", highlight=False)
    else:
        out_console.print(f"exception {exception_id}: approval {out.approvals} of {out.approvals_needed} "
                          f"recorded by {actor}; a second, different approver is needed", highlight=False)


def _group_lookup() -> Any:
    """Slack user group members for a routing rule that names only a group (None without Slack)."""
    import os

    if not os.environ.get("SLACK_BOT_TOKEN"):
        return None
    from bot.slack.client import get_client
    from bot.slack.users import group_lookup

    return group_lookup(get_client())


CheckOpt = Annotated[list[str] | None, typer.Option(
    "--check", help="A checklist item you ticked, by its text or number (`exceptions show`); repeat for each.")]
IdArg = Annotated[int, typer.Argument(help="The exception's id (see `billbot exceptions list`).")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (required for reject and force).")]
SubjectOpt = Annotated[str | None, typer.Option(
    "--subject", help="The subject SHA-256 you looked at (`exceptions show --json`); refused if it changed since.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]


@exceptions_app.command("approve")
@handle_errors
def approve_exception(exception_id: IdArg, as_user: AsUser = None, reason: ReasonOpt = None,
                      subject: SubjectOpt = None, json_out: JsonOpt = False, *, check: CheckOpt = None) -> None:
    """Approve, exactly as the Slack button does (every checklist item ticked with --check)."""
    _decide("approve", exception_id, as_user, reason, subject, json_out, check)


@exceptions_app.command("reject")
@handle_errors
def reject_exception(exception_id: IdArg, as_user: AsUser = None, reason: ReasonOpt = None,
                     subject: SubjectOpt = None, json_out: JsonOpt = False) -> None:
    """Reject (a reason is required), exactly as the Slack button does."""
    _decide("reject", exception_id, as_user, reason, subject, json_out)


@exceptions_app.command("force")
@handle_errors
def force_exception(exception_id: IdArg, as_user: AsUser = None, reason: ReasonOpt = None,
                    subject: SubjectOpt = None, json_out: JsonOpt = False, *, check: CheckOpt = None) -> None:
    """Force (finance_manager, a reason is required), exactly as the Slack button does."""
    _decide("force", exception_id, as_user, reason, subject, json_out, check)


@exceptions_app.command("assign")
@handle_errors
def assign_exception(exception_id: IdArg, to: Annotated[str | None, typer.Option(
        "--to", help="The new owner (Slack id); default: you.")] = None, as_user: AsUser = None,
        json_out: JsonOpt = False) -> None:
    """Make someone the exception's owner (Assign… in Slack; the owner gets the reminders in a DM)."""
    from bot.context import get_db, get_key
    from bot.workflows.owners import assign

    actor = acting_as(as_user, roles=None, what="exceptions assign")
    previous, owner = assign(get_db(), exception_id=exception_id, owner=(to or actor).strip(), actor=actor,
                             key=get_key())
    if json_out:
        emit_json({"id": exception_id, "owner": owner, "previous": previous})
        return
    out_console.print(f"exception {exception_id}: owner {owner} (was {previous or 'nobody'})", highlight=False)


def _print_exception(d: dict[str, Any]) -> None:
    from rich.table import Table

    head = Table(show_header=False, title=f"Exception {d['id']} ({d['kind']}, {d['state']})", title_justify="left")
    head.add_column(style="bold")
    head.add_column()
    due = local_time(d["due_at"], empty="")
    ev: dict[str, Any] = d["evidence"]
    rows: list[tuple[str, str]] = [
        ("advertiser", f"{d['advertiser_name'] or ''} ({d['advertiser']})"),
        ("pre-invoice", str(d["preinvoice"] or "")),
        ("period", f"{d['period_start'] or ''} .. {d['period_end'] or ''}"),
        ("amount at stake", f"{d['amount']} {d['currency']}"),
        ("cause", d["cause"]),
        ("summary", d["summary"] or ""),
        ("due", due),
        ("approvals needed", str(d["approvals_needed"])),
    ]
    if "booked_amount" in ev:
        rows += [("computed amount (Approve)", f"{ev.get('computed_amount')} {d['currency']}"),
                 ("booked amount (Force)", f"{ev.get('booked_amount')} {d['currency']}")]
    if d["decision"]:
        rows.append(("decision", f"{d['decision']} by {d['decided_by']} at {local_time(d['decided_at'])}"))
    if d["reason"]:
        rows.append(("reason", d["reason"]))
    for k, v in rows:
        head.add_row(k, v)
    out_console.print(head)
    findings = ev.get("findings") or ([ev] if ev.get("rule") else [])
    for i, f in enumerate(findings, start=1):
        t = Table(show_header=False, title=f"Finding {i}: {f.get('rule')} → {f.get('cause')}", title_justify="left")
        t.add_column(style="bold")
        t.add_column()
        t.add_row("item", f"{f.get('item') or ''} ({f.get('item_id')})")
        t.add_row("tolerance", f"{f.get('tolerance')} ({f.get('tolerance_source')})")
        for name, value in (f.get("figures") or {}).items():
            t.add_row(name, str(value))
        days = f.get("days") or []
        t.add_row("days", ", ".join(days) if len(days) <= 12 else f"{', '.join(days[:12])} … ({len(days)} days)")
        ids = f.get("row_ids") or []
        t.add_row("delivery rows", _ids(ids))
        if f.get("conversion_ids"):
            t.add_row("conversion rows", _ids(f["conversion_ids"]))
        t.add_row("at stake", f"{f.get('amount_at_stake')} {d['currency']}")
        out_console.print(t)
    if not findings and ev:
        out_console.print_json(data=ev)


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:20])
    return shown + (f" … ({len(ids)} rows)" if len(ids) > 20 else "") if ids else "—"
