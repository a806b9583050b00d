"""``/billing`` — sync, run, preinvoices, exceptions, invoice, status, schedule, dispute, help.

Acks at once. Reads answer through ``response_url`` (ephemeral); ``sync`` and ``run`` (operators
only) post a progress message and hand the work to the jobs facade (task ``slack_command``), which
keeps that message updated. Unknown input gets the help text, never an error page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import (
    Block,
    MarkdownTextObject,
    Option,
    OverflowMenuElement,
    PlainTextObject,
    SectionBlock,
)
from sqlalchemy import select

from billing.errors import Invalid, NotAllowed, NotFound
from billing.periods import Period, parse_period
from bot.blocks.common import clip, esc, money_text, period_text, slack_date
from bot.blocks.exceptions import KIND_TITLE
from bot.blocks.help import COMMANDS, help_blocks, help_text
from bot.blocks.lists import LIST_MORE_ACTION_ID, PAGE_SIZE, lines_with_more, paged_list, parse_more_value
from bot.blocks.progress import progress_fallback, run_progress
from bot.blocks.run_report import converted_text, totals_text
from bot.handlers.deps import Deps, deps_of
from bot.handlers.errors import after_ack
from bot.handlers.payloads import SlashCommand
from bot.slack.replies import error_text
from bot.workflows.run_reports import run_report
from bot.workflows.schedules import add_schedule, list_schedules, remove_schedule
from storage.models import (
    OPEN_EXCEPTION_STATES,
    Advertiser,
    BillingException,
    BillingRun,
    Invoice,
    PreInvoice,
    SourceState,
    User,
)
from storage.queries import resolve_advertisers
from storage.sources.base import configured_sources

log = logging.getLogger(__name__)

OPERATOR_ROLES = frozenset({"operator", "admin"})
SYNC_MODES = ("standard", "partial")
_FAR = datetime.max.replace(tzinfo=UTC)


def previous_month(today: date) -> str:
    y, m = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{y:04d}-{m:02d}"


def _require_operator(deps: Deps, user_id: str) -> None:
    with deps.db().read() as s:
        user = s.get(User, user_id)
        roles = user.role_names if user is not None else set()
    if not roles & OPERATOR_ROLES:
        raise NotAllowed("Only operators may start syncs and billing runs or change schedules.",
                         code="operator_required")


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text[:3000]))


# --------------------------------------------------------------------------- background work


def _start_job(deps: Deps, client: WebClient, cmd: SlashCommand, title: str, **job: Any) -> None:
    """Post the progress message, then submit the job that keeps it updated."""
    blocks = run_progress(title, state="queued", started_by=cmd.user_id)
    try:
        resp = client.chat_postMessage(channel=cmd.channel_id or cmd.user_id, blocks=blocks,
                                       text=progress_fallback(title, "queued"))
    except SlackApiError:  # e.g. not in that channel: report in a DM instead
        resp = client.chat_postMessage(channel=cmd.user_id, blocks=blocks, text=progress_fallback(title, "queued"))
    deps.background("slack_command", channel=str(resp["channel"]), ts=str(resp["ts"]), actor=cmd.user_id,
                    title=title, **job)


class UsageError(Invalid):
    """Bad ``/billing`` arguments: answered ephemerally with the subcommand's usage line."""

    def __init__(self, sub: str, problem: str) -> None:
        super().__init__(problem, code="usage")
        self.sub = sub


def usage_line(sub: str) -> str:
    """``Usage: /billing run [period] [advertiser…]`` for one subcommand (the help text's wording)."""
    forms = [c for c, _ in COMMANDS if c.split()[0] == sub]
    example = USAGE_EXAMPLES.get(sub)
    return ("Usage: " + " or ".join(f"`/billing {c}`" for c in forms or [sub])
            + (f", e.g. `{example}`" if example else ""))


USAGE_EXAMPLES = {"run": "/billing run 2026-10", "sync": "/billing sync partial tracker",
                  "preinvoices": "/billing preinvoices 2026-10", "invoice": "/billing invoice INV-2026-000123"}
_PERIODISH = re.compile(r"^\d|^(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?$|^q[1-4]$|^w\d",
                        re.IGNORECASE)


def _period_arg(sub: str, word: str) -> Period:
    """The period typed, or a usage error naming what is wrong with it (``2026-13``, ``October``)."""
    try:
        return parse_period(word)
    except Invalid as e:
        hint = " (write the month as 2026-10)" if word[:1].isalpha() else ""
        raise UsageError(sub, f"{e.message}{hint}") from None


def _known_sources(deps: Deps) -> list[str]:
    with deps.db().read() as s:
        stored = set(s.execute(select(SourceState.source)).scalars())
    return sorted(stored | set(configured_sources()))


def cmd_sync(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str], respond: Respond) -> None:
    _require_operator(deps, cmd.user_id)
    mode = "standard"
    if args and args[0].lower() in SYNC_MODES:
        mode = args.pop(0).lower()
    known = _known_sources(deps)
    sources = args or known
    if not sources:
        raise UsageError("sync", "sync: name the source; none is configured or has synced yet")
    unknown = [x for x in sources if x not in known]
    if unknown:
        raise UsageError("sync", f"unknown source(s): {', '.join(unknown)} (known: {', '.join(known) or 'none'})")
    for source in sources:
        _start_job(deps, client, cmd, f"{mode.capitalize()} sync of {source}", kind="sync", source=source, mode=mode)


def cmd_run(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str], respond: Respond) -> None:
    _require_operator(deps, cmd.user_id)
    today = deps.today(datetime.now(UTC))
    period, args = _period_and_advertisers(deps, "run", args, default=previous_month(today))
    title = f"Billing run {period}" + (f" for {', '.join(args)}" if args else "")
    _start_job(deps, client, cmd, title, kind="run", period=period, advertisers=args or None,
               today=today.isoformat())


def _period_and_advertisers(deps: Deps, sub: str, args: list[str], *, default: str) -> tuple[str, list[str]]:
    """``[period] [advertiser…]`` as ``run`` and ``preinvoices create`` take them: the first word is the
    period when it is one, or looks like one and names no advertiser (``2026-13``, ``October``: refused
    with the usage line, never taken as an advertiser); the rest are advertisers that must exist (one
    name with spaces, "Autohaus Elbe KG", rather than several ids when that is what matches)."""
    period = default
    if args and (_is_period(args[0]) or (_PERIODISH.match(args[0]) and not _is_advertiser(deps, args[0]))):
        period = _period_arg(sub, args[0]).label or args[0]
        args = args[1:]
    if args:
        with deps.db().read() as s:
            try:
                resolve_advertisers(s, args)
            except NotFound as e:
                try:
                    resolve_advertisers(s, [" ".join(args)])
                    args = [" ".join(args)]
                except NotFound:
                    raise UsageError(sub, e.message) from None
    return period, args


def _is_period(word: str) -> bool:
    try:
        parse_period(word)
    except Invalid:
        return False
    return True


def _is_advertiser(deps: Deps, word: str) -> bool:
    with deps.db().read() as s:
        try:
            resolve_advertisers(s, [word])
        except NotFound:
            return False
    return True


# --------------------------------------------------------------------------- reads


def cmd_import(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str], respond: Respond) -> None:
    """``/billing import [source…]``: import the files waiting in the watched inbox folders (issue 21)."""
    _require_operator(deps, cmd.user_id)
    for source in args or [""]:  # "": every source folder
        _start_job(deps, client, cmd, f"Import of the {source or 'source'} inbox" + ("" if source else "es"),
                   kind="import", source=source or None)


def _preinvoices_create(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str]) -> None:
    """``/billing preinvoices create [PERIOD] [advertiser…]`` (default: the previous month; issue 21)."""
    _require_operator(deps, cmd.user_id)
    period, args = _period_and_advertisers(deps, "preinvoices", args,
                                           default=previous_month(deps.today(datetime.now(UTC))))
    title = f"Pre-invoices {period}" + (f" for {', '.join(args)}" if args else "")
    _start_job(deps, client, cmd, title, kind="preinvoices", period=period, advertisers=args or None)


NAME_MAX = 80  # a name is clipped inside its entry; an entry is never cut


def preinvoices_page(deps: Deps, period: str | None, offset: int) -> list[Block]:
    """Pre-invoices sorted by the SLA due of their open exceptions (none: last), then amount."""
    q = select(PreInvoice, Advertiser.name).join(Advertiser, Advertiser.id == PreInvoice.advertiser_id)
    label = "all periods"
    if period:
        p = _period_arg("preinvoices", period)
        q = q.where(PreInvoice.period_start >= p.start, PreInvoice.period_end <= p.end)
        label = p.label or period
    with deps.db().read() as s:
        rows = list(s.execute(q).all())
        due: dict[int, datetime] = {}
        for pid, at in s.execute(select(BillingException.preinvoice_id, BillingException.due_at).where(
                BillingException.state.in_(OPEN_EXCEPTION_STATES), BillingException.preinvoice_id.is_not(None))):
            if pid is not None and at is not None and (pid not in due or at < due[pid]):
                due[pid] = at
    rows.sort(key=lambda r: (r[0].id not in due, due.get(r[0].id) or _FAR, -r[0].net, r[0].id))
    lines = [f"• #{pi.id} {clip(esc(name), NAME_MAX)} · {period_text(pi.period_start, pi.period_end)} · "
             f"*{pi.state}* · {money_text(pi.net, pi.currency)}"
             + (f" · SLA {slack_date(due[pi.id])}" if pi.id in due else "")
             for pi, name in rows[offset:offset + PAGE_SIZE]]
    return paged_list(title=f"*Pre-invoices, {esc(label)}*", lines=lines, total=len(rows), offset=offset,
                      kind="preinvoices", period=period)


def cmd_preinvoices(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str], respond: Respond) -> None:
    if args and args[0].lower() == "create":
        _preinvoices_create(deps, client, cmd, args[1:])
        return
    period = args[0] if args else None
    blocks = preinvoices_page(deps, period, 0)
    respond(blocks=blocks, text="Pre-invoices", response_type="ephemeral")


def exceptions_page(deps: Deps, offset: int) -> list[Block]:
    """Open exceptions sorted by SLA due (soonest first), then amount (largest first)."""
    with deps.db().read() as s:
        rows = list(s.execute(
            select(BillingException, Advertiser.name).join(Advertiser, Advertiser.id == BillingException.advertiser_id)
            .where(BillingException.state.in_(OPEN_EXCEPTION_STATES))
        ).all())
    rows.sort(key=lambda r: (r[0].due_at is None, r[0].due_at or _FAR, -(r[0].amount or 0), r[0].id))
    lines = [f"• #{e.id} {KIND_TITLE.get(e.kind, e.kind)} — {clip(esc(name), NAME_MAX)} · "
             f"{money_text(e.amount, e.currency)} · SLA {slack_date(e.due_at)}"
             + (" · escalated" if e.state == "escalated" else "")
             for e, name in rows[offset:offset + PAGE_SIZE]]
    return paged_list(title="*Open exceptions*", lines=lines, total=len(rows), offset=offset, kind="exceptions",
                      empty=":tada: None.", footer="Decide with the buttons on each exception's message "
                      "or in billbot's Home." if rows and offset == 0 else None)


def cmd_exceptions(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str], respond: Respond) -> None:
    respond(blocks=exceptions_page(deps, 0), text="Open exceptions", response_type="ephemeral")


def on_list_more(ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext,  # noqa: PLR0917 - Bolt passes these by name
                 respond: Respond) -> None:
    """The "Show more" button under a list: the next page, as another ephemeral answer."""
    ack()
    with after_ack(body, client):
        try:
            kind, offset, period = parse_more_value(str(action.get("value") or ""))
        except (ValueError, KeyError, TypeError):
            raise Invalid("this button carries no list; type the command again") from None
        deps = deps_of(context)
        if kind == "exceptions":
            blocks = exceptions_page(deps, max(0, offset))
        elif kind == "preinvoices":
            blocks = preinvoices_page(deps, period, max(0, offset))
        else:
            raise Invalid(f"unknown list {kind!r}; type the command again")
        respond(blocks=blocks, text="More", response_type="ephemeral", replace_original=False)


def cmd_invoice(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str], respond: Respond) -> None:
    if not args:
        raise Invalid("invoice: give the invoice number, e.g. `/billing invoice INV-2026-000123`")
    with deps.db().read() as s:
        inv = s.execute(select(Invoice).where(Invoice.number == args[0]).limit(1)).scalar_one_or_none()
        if inv is None:
            raise NotFound(f"invoice {args[0]} does not exist")
        adv = s.get(Advertiser, inv.advertiser_id)
        text = (f"*{'Credit note' if inv.kind == 'credit_note' else 'Invoice'} {esc(inv.number)}* — "
                f"{esc(adv.name if adv else inv.advertiser_id)}\n"
                f"Issued {inv.issue_date.isoformat()}, due {inv.due_date.isoformat()} · service "
                f"{period_text(inv.service_start, inv.service_end)}\n"
                f"Net {money_text(inv.net, inv.currency)} · VAT {money_text(inv.vat, inv.currency)} · "
                f"*Gross {money_text(inv.gross, inv.currency)}* · {len(inv.lines)} line(s) · PDF {inv.pdf_state}")
    section = _section(text)
    if inv.kind == "invoice":  # issue 20: "Dispute" from the invoice's message
        from bot.blocks.disputes import OVERFLOW_ACTION_ID

        section.accessory = OverflowMenuElement(action_id=OVERFLOW_ACTION_ID, options=[
            Option(text=PlainTextObject(text="Dispute"), value=f"dispute:{inv.number}"[:150])])
    respond(blocks=[section], text=f"Invoice {esc(args[0])}", response_type="ephemeral")


def cmd_status(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str], respond: Respond) -> None:
    from bot.workflows.digest import target_text
    from bot.workflows.freshness import report

    with deps.db().read() as s:
        targets = {r.source: target_text(r) for r in report(s, datetime.now(UTC).date())}
        states = list(s.execute(select(SourceState).order_by(SourceState.source)).scalars())
        sources = [f"• *{clip(esc(st.source), NAME_MAX)}*: last sync {slack_date(st.last_success_at)}"
                   + (f", data until {st.data_until.isoformat()}" if st.data_until else "")
                   + (f" · {esc(targets[st.source] or '')}" if targets.get(st.source) else "")
                   for st in states]
        synced = {st.source for st in states}
        sources += [f"• *{esc(src)}*: never synced · {esc(text)}" for src, text in targets.items()
                    if text and src not in synced]
        run = s.execute(select(BillingRun).order_by(BillingRun.id.desc()).limit(1)).scalar_one_or_none()
        open_count = len(s.execute(select(BillingException.id).where(
            BillingException.state.in_(OPEN_EXCEPTION_STATES))).all())
        run_text = "*Last billing run*: none yet"
        if run is not None:
            r = run_report(s, run.id, with_log=False)
            net = totals_text(r.net) + (f" ({c})" if (c := converted_text(r.net_reporting, r.net)) else "")
            run_text = (f"*Last billing run* {esc(run.period)}: {run.state}, started {slack_date(run.started_at)} — "
                        f"{r.created:,} invoice(s), net {net}; {r.skipped:,} skipped; {r.held:,} held")
    blocks: list[Block] = [
        _section(lines_with_more(["*Sources*", *sources], 21) if sources else "*Sources*\nNo sync has run yet."),
        _section(run_text),
        _section(f"*Open exceptions*: {open_count:,}"),
    ]
    respond(blocks=blocks, text="billbot status", response_type="ephemeral")


def _schedule_list(deps: Deps) -> list[Block]:
    lines = [f"• #{r.id} *{esc(r.name)}* `{esc(r.cron)}` ({r.timezone}) → {esc(r.task)}"
             + ("" if r.enabled else " (disabled)")
             for r in list_schedules(deps.db())]
    return [_section("*Schedules*\n" + ("\n".join(lines) if lines else "None."))]


def cmd_schedule(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str], respond: Respond) -> None:
    """``schedule list`` · ``schedule add TASK M H DOM MON DOW [key=value…]`` · ``schedule remove ID``
    (adding and removing: operators only; the schedules workflow validates and audits)."""
    verb = args[0].lower() if args else "list"
    if verb == "list":
        respond(blocks=_schedule_list(deps), text="Schedules", response_type="ephemeral")
        return
    _require_operator(deps, cmd.user_id)
    if verb == "add":
        if len(args) < 7:
            raise Invalid("schedule add: give the task and five cron fields, e.g. "
                          "`/billing schedule add sync 0 2 * * * source=tracker mode=partial`")
        task, cron, rest = args[1], " ".join(args[2:7]), args[7:]
        bad = [w for w in rest if "=" not in w]
        if bad:
            raise Invalid(f"schedule add: arguments are key=value (got {', '.join(bad)})")
        row = add_schedule(deps.db(), task=task, args=dict(w.split("=", 1) for w in rest), cron=cron,
                           actor=cmd.user_id, signing_key=deps.key(), timezone=deps.settings.timezone)
        respond(text=f"Schedule #{row.id} {esc(row.name)} `{esc(row.cron)}` ({row.timezone})",
                response_type="ephemeral")
        return
    if verb == "remove" and len(args) == 2 and args[1].lstrip("#").isdigit():
        row = remove_schedule(deps.db(), int(args[1].lstrip("#")), actor=cmd.user_id, signing_key=deps.key())
        respond(text=f"Schedule #{row.id} {esc(row.name)} removed", response_type="ephemeral")
        return
    raise Invalid("schedule: use `list`, `add TASK CRON… [key=value…]` or `remove ID`")


DISPUTE_KEYS = ("category", "lines", "line", "amount", "ref", "contact", "owner")


def parse_dispute(args: list[str]) -> dict[str, Any]:
    """``INV-… [CATEGORY] [lines=ID,ID] [amount=X] [ref=…] [contact=…] [owner=U…] reason…`` → the
    :func:`bot.workflows.disputes.open_dispute` arguments (category ``other`` when none is named)."""
    from decimal import Decimal, InvalidOperation

    from storage.models import DISPUTE_CATEGORIES

    usage = ("dispute: give the invoice number and what the client disputes, e.g. "
             "`/billing dispute INV-2026-000123 invalid_traffic 20 clicks were bots`")
    if len(args) < 2:
        raise Invalid(usage)
    out: dict[str, Any] = {"number": args[0], "category": "other"}
    rest = args[1:]
    if rest and rest[0].lower().replace("-", "_") in DISPUTE_CATEGORIES:
        out["category"] = rest.pop(0).lower().replace("-", "_")
    while rest and "=" in rest[0] and rest[0].split("=", 1)[0].lower() in DISPUTE_KEYS:
        k, v = rest.pop(0).split("=", 1)
        k = k.lower()
        if k in ("lines", "line"):
            ids = [x for x in v.split(",") if x]
            if not all(x.isdigit() for x in ids):
                raise Invalid(f"dispute: lines={v}: give invoice line ids, e.g. lines=12,13")
            out["line_ids"] = [int(x) for x in ids]
        elif k == "amount":
            try:
                out["amount"] = Decimal(v)
            except InvalidOperation:
                raise Invalid(f"dispute: amount={v}: not a number") from None
        else:
            out[{"ref": "client_reference", "contact": "client_contact"}.get(k, k)] = v.strip("<>@")
    out["reason"] = " ".join(rest)
    if not out["reason"].strip():
        raise Invalid(usage)
    return out


def cmd_dispute(deps: Deps, client: WebClient, cmd: SlashCommand, args: list[str], respond: Respond) -> None:
    """``/billing dispute INV-… [CATEGORY] [lines=…] [amount=…] [ref=…] [contact=…] reason…`` opens a
    dispute (the workflow checks the role); its message and evidence follow in the exceptions channel."""
    from bot.workflows.disputes import CATEGORY_TEXT, get_dispute, open_dispute

    did = open_dispute(deps.db(), actor=cmd.user_id, key=deps.key(), **parse_dispute(args))
    v = get_dispute(deps.db(), did)
    respond(text=(f"Dispute #{v.id} opened on {esc(v.invoice)} ({CATEGORY_TEXT[v.category]}, "
                  f"{money_text(v.amount, v.currency)}); the invoice is out of dunning until it is resolved. "
                  "The evidence follows in its thread."), response_type="ephemeral")


Sub = Callable[[Deps, WebClient, SlashCommand, list[str], Respond], None]
SUBCOMMANDS: dict[str, Sub] = {
    "sync": cmd_sync, "run": cmd_run, "preinvoices": cmd_preinvoices, "exceptions": cmd_exceptions,
    "invoice": cmd_invoice, "status": cmd_status, "schedule": cmd_schedule, "dispute": cmd_dispute,
    "import": cmd_import,
}


def on_billing(ack: Ack, command: dict[str, Any], client: WebClient, context: BoltContext, respond: Respond) -> None:
    cmd = SlashCommand(text=str(command.get("text") or ""), user_id=str(command.get("user_id") or ""),
                       channel_id=command.get("channel_id"), response_url=command.get("response_url"))
    words = cmd.words
    sub = words[0].lower() if words else "help"
    handler = SUBCOMMANDS.get(sub)
    if handler is None:
        problem = None if sub == "help" else f"`/billing {cmd.text.strip()[:200]}` is not a command I know."
        ack(blocks=help_blocks(problem), text=help_text())
        return
    ack()
    with after_ack(command, client):
        try:
            handler(deps_of(context), client, cmd, words[1:], respond)
        except UsageError as e:  # bad arguments: only the person who typed them sees the answer
            respond(text=f"{error_text(e)}\n{usage_line(e.sub)}", response_type="ephemeral", replace_original=False)


def register(app: App) -> None:
    app.command("/billing")(on_billing)
    app.action(LIST_MORE_ACTION_ID)(on_list_more)
