"""The App Home, the approver's desk: what waits for the viewer and for others (soonest SLA first), their
recent decisions with links, the last sync per source and the last billing runs with totals, published
with ``views.publish`` (on ``app_home_opened`` and after a decision taken there)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from slack_sdk import WebClient
from slack_sdk.models.views import View
from sqlalchemy import select

from bot.blocks.digest import receivables_text
from bot.blocks.exceptions import KIND_TITLE
from bot.blocks.home import DecisionLine, QueueItem, SourceLine, home_view
from bot.workflows.decisions import may_decide, recent_decisions, subject_hash_of
from bot.workflows.digest import receivables_aging, receivables_dso, receivables_in_reporting_currency
from bot.workflows.run_reports import recent_runs
from storage.db import Database
from storage.models import (
    OPEN_EXCEPTION_STATES,
    Advertiser,
    BillingException,
    BillingRun,
    Invoice,
    InvoiceLine,
    SourceState,
    SyncRun,
    User,
)

HOME_RUNS = 3
_FAR = datetime.max.replace(tzinfo=UTC)


def _sla_order(exc: BillingException) -> tuple[bool, datetime, Decimal, int]:
    """Soonest SLA first (none: last), then the largest amount."""
    return exc.due_at is None, exc.due_at or _FAR, -(exc.amount or Decimal(0)), exc.id


def message_url(channel: str | None, ts: str | None) -> str | None:
    """A link to a message (Slack resolves ``/archives/<channel>/p<ts>`` in the viewer's workspace)."""
    if not channel or not ts:
        return None
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def build_home(db: Database, user_id: str) -> View:
    with db.read() as s:
        user = s.get(User, user_id) or User(slack_id=user_id, name="")  # unknown users have no roles
        names = {a.id: a.name for a in s.execute(select(Advertiser)).scalars()}
        mine: list[QueueItem] = []
        others: list[QueueItem] = []
        open_rows = sorted(s.execute(select(BillingException).where(
            BillingException.state.in_(OPEN_EXCEPTION_STATES))).scalars(), key=_sla_order)
        for exc in open_rows:
            item = QueueItem(exc, subject_hash_of(exc), names.get(exc.advertiser_id, exc.advertiser_id))
            (mine if may_decide(s, user, exc) else others).append(item)
        decisions = recent_decisions(s, user_id, limit=10)
        decided = {e.id: e for e in s.execute(select(BillingException).where(
            BillingException.id.in_([d.exception_id for d in decisions]))).scalars()} if decisions else {}
        billed: dict[int, list[str]] = {}
        pre_ids = {e.preinvoice_id for e in decided.values() if e.preinvoice_id is not None}
        if pre_ids:
            for pid, number in s.execute(select(InvoiceLine.preinvoice_id, Invoice.number).distinct()
                                         .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
                                         .where(InvoiceLine.preinvoice_id.in_(pre_ids))):
                if pid is not None:
                    billed.setdefault(int(pid), []).append(str(number))
        decision_lines = []
        for d in decisions:
            e = decided.get(d.exception_id)
            title = (f"{KIND_TITLE.get(e.kind, e.kind)} — {names.get(e.advertiser_id, e.advertiser_id)}"
                     if e is not None else "")
            invoices = tuple(sorted(billed.get(e.preinvoice_id, []))) if e is not None and e.preinvoice_id else ()
            decision_lines.append(DecisionLine(d, title, message_url(e.channel, e.message_ts) if e else None,
                                               invoices))
        sources = []
        for st in s.execute(select(SourceState).order_by(SourceState.source)).scalars():
            last = s.execute(select(SyncRun).where(SyncRun.source == st.source)
                             .order_by(SyncRun.id.desc()).limit(1)).scalar_one_or_none()
            sources.append(SourceLine(st.source, st.last_success_at, st.data_until,
                                      last.state if last is not None else None))
        last_run = s.execute(select(BillingRun).order_by(BillingRun.id.desc()).limit(1)).scalar_one_or_none()
        runs = recent_runs(s, limit=HOME_RUNS)
        receivables = None
        if "finance_manager" in user.role_names:
            now = datetime.now(UTC)
            aging = receivables_aging(s, now)
            receivables = receivables_text(aging, receivables_dso(s, now),
                                           receivables_in_reporting_currency(s, now) if aging else None)
        return home_view(queue=mine, decisions=decisions, sources=sources, last_run=last_run,
                         receivables=receivables, others=others, decision_lines=decision_lines, runs=runs)


def publish_home(client: WebClient, db: Database, user_id: str) -> None:
    client.views_publish(user_id=user_id, view=build_home(db, user_id))
