"""App Home: ``app_home_opened`` → ``views.publish`` of the viewer's queue, their recent decisions,
the last sync per source and the last billing run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.handlers.deps import Deps, deps_of


def build_home(deps: Deps, user_id: str) -> Any:
    from bot.blocks.home import QueueItem, SourceLine, home_view
    from bot.workflows.decisions import queue_for, recent_decisions, subject_digest
    from storage.models import Advertiser, BillingRun, SourceState, SyncRun, User

    with deps.db().read() as s:
        user = s.get(User, user_id) or User(slack_id=user_id, name="")  # unknown users have no roles
        names = {a.id: a.name for a in s.execute(select(Advertiser)).scalars()}
        queue = [QueueItem(exc, subject_digest(exc), names.get(exc.advertiser_id, exc.advertiser_id))
                 for exc in queue_for(s, user, limit=50)]
        decisions = recent_decisions(s, user_id, limit=10)
        sources = []
        for st in s.execute(select(SourceState).order_by(SourceState.source)).scalars():
            last = s.execute(select(SyncRun).where(SyncRun.source == st.source)
                             .order_by(SyncRun.id.desc()).limit(1)).scalar_one_or_none()
            sources.append(SourceLine(st.source, st.last_success_at, st.data_until,
                                      last.state if last is not None else None))
        last_run = s.execute(select(BillingRun).order_by(BillingRun.id.desc()).limit(1)).scalar_one_or_none()
        return home_view(queue=queue, decisions=decisions, sources=sources, last_run=last_run)


def publish_home(deps: Deps, client: Any, user_id: str) -> None:
    client.views_publish(user_id=user_id, view=build_home(deps, user_id))


def on_home_opened(event: dict[str, Any], client: Any, context: Any) -> None:
    if event.get("tab", "home") != "home":
        return
    publish_home(deps_of(context), client, str(event.get("user")))


def register(app: Any) -> None:
    app.event("app_home_opened")(on_home_opened)
