"""The App Home: the viewer's queue, their recent decisions, the last sync per source and the last
billing run, published with ``views.publish`` (on ``app_home_opened`` and after a decision taken there)."""

from __future__ import annotations

from datetime import UTC, datetime

from slack_sdk import WebClient
from slack_sdk.models.views import View
from sqlalchemy import select

from bot.blocks.digest import receivables_text
from bot.blocks.home import QueueItem, SourceLine, home_view
from bot.workflows.decisions import queue_for, recent_decisions, subject_hash_of
from bot.workflows.digest import receivables_aging, receivables_dso, receivables_in_reporting_currency
from storage.db import Database
from storage.models import Advertiser, BillingRun, SourceState, SyncRun, User


def build_home(db: Database, user_id: str) -> View:
    with db.read() as s:
        user = s.get(User, user_id) or User(slack_id=user_id, name="")  # unknown users have no roles
        names = {a.id: a.name for a in s.execute(select(Advertiser)).scalars()}
        queue = [QueueItem(exc, subject_hash_of(exc), names.get(exc.advertiser_id, exc.advertiser_id))
                 for exc in queue_for(s, user, limit=50)]
        decisions = recent_decisions(s, user_id, limit=10)
        sources = []
        for st in s.execute(select(SourceState).order_by(SourceState.source)).scalars():
            last = s.execute(select(SyncRun).where(SyncRun.source == st.source)
                             .order_by(SyncRun.id.desc()).limit(1)).scalar_one_or_none()
            sources.append(SourceLine(st.source, st.last_success_at, st.data_until,
                                      last.state if last is not None else None))
        last_run = s.execute(select(BillingRun).order_by(BillingRun.id.desc()).limit(1)).scalar_one_or_none()
        receivables = None
        if "finance_manager" in user.role_names:
            now = datetime.now(UTC)
            aging = receivables_aging(s, now)
            receivables = receivables_text(aging, receivables_dso(s, now),
                                           receivables_in_reporting_currency(s, now) if aging else None)
        return home_view(queue=queue, decisions=decisions, sources=sources, last_run=last_run,
                         receivables=receivables)


def publish_home(client: WebClient, db: Database, user_id: str) -> None:
    client.views_publish(user_id=user_id, view=build_home(db, user_id))
