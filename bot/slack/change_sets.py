"""Change-set messages in Slack (issue 14), reactions run after commit: ``change_set.opened`` posts the
diff with Approve / Reject to the exceptions channel; ``change_set.decided`` updates it in place and
says in its thread who decided."""

from __future__ import annotations

from typing import Any

from bot.blocks.change_sets import change_set_message, decided_reply, fallback_text
from bot.slack.context import SlackContext
from bot.workflows.change_sets import get_change_set, store_message


def on_change_set_opened(sc: SlackContext, *, change_set_id: int, **_: Any) -> None:
    client = sc.client
    if client is None:
        return
    db = sc.db()
    cs = get_change_set(db, change_set_id)
    if cs.state != "pending":
        return
    resp = client.chat_postMessage(channel=sc.exceptions_channel, blocks=change_set_message(cs),
                                   text=fallback_text(cs))
    store_message(db, change_set_id, str(resp.get("channel") or sc.exceptions_channel), str(resp["ts"]))


def on_change_set_decided(sc: SlackContext, *, change_set_id: int, **_: Any) -> None:
    client = sc.client
    if client is None:
        return
    db = sc.db()
    cs = get_change_set(db, change_set_id)
    channel, ts = message_of(db, change_set_id)
    if channel is None or ts is None:
        return
    client.chat_update(channel=channel, ts=ts, blocks=change_set_message(cs), text=fallback_text(cs))
    client.chat_postMessage(channel=channel, thread_ts=ts, text=decided_reply(cs))


def message_of(db: Any, change_set_id: int) -> tuple[str | None, str | None]:
    from storage.models import ChangeSet

    with db.read() as s:
        row = s.get(ChangeSet, change_set_id)
        return (row.channel, row.message_ts) if row is not None else (None, None)
