"""Where each exception's Slack message lives, and who may post it (bookkeeping, not business state).

An exception gets exactly one channel message, whichever process notices first that it has none:
the process whose transaction opened it (after commit), or the next sweep (a CLI without Slack, an
outage of Slack, a process that died). To make "first" unique across processes, posting is
*claimed*: a ``kv`` row ``post:exception:<id>`` is inserted (primary key: a second claimer's insert
fails) and removed once the message's ``channel``/``message_ts`` are stored, or when the post
failed. A claim older than :data:`CLAIM_STALE` belongs to a process that died mid-post and is
taken over. None of this is audited: it records where a message is, not a decision.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import OPEN_EXCEPTION_STATES, BillingException, Setting

CLAIM_PREFIX = "post:exception:"
#: A claim older than this is a post that never finished (its process died): taken over.
CLAIM_STALE = timedelta(minutes=2)


def _claim_key(exception_id: int) -> str:
    return f"{CLAIM_PREFIX}{int(exception_id)}"


def claim_post(db: Database, exception_id: int, *, now: datetime | None = None) -> bool:
    """True if this caller may post the exception's first message now: it has none and nobody else
    is posting it. One transaction; the claim row's primary key settles concurrent claimers."""
    now = now or datetime.now(UTC)
    k = _claim_key(exception_id)
    try:
        with db.transaction() as s:
            exc = s.get(BillingException, exception_id)
            if exc is None or exc.message_ts:
                return False
            row = s.execute(select(Setting).where(Setting.key == k).with_for_update()).scalar_one_or_none()
            value = json.dumps({"since": now.isoformat()})
            if row is None:
                s.add(Setting(key=k, value=value))
            elif now - datetime.fromisoformat(json.loads(row.value)["since"]) >= CLAIM_STALE:
                row.value = value
            else:
                return False
    except IntegrityError:  # another process inserted the claim first
        return False
    return True


def store_message(db: Database, exception_id: int, channel: str, ts: str) -> None:
    """The first message is out: remember where it lives and drop the claim."""
    with db.transaction() as s:
        s.execute(
            update(BillingException)
            .where(BillingException.id == exception_id, BillingException.message_ts.is_(None))
            .values(channel=channel, message_ts=ts)
            .execution_options(synchronize_session=False)
        )
        s.execute(delete(Setting).where(Setting.key == _claim_key(exception_id)))


def release_post(db: Database, exception_id: int) -> None:
    """The post failed: drop the claim so the next sweep tries again."""
    with db.transaction() as s:
        s.execute(delete(Setting).where(Setting.key == _claim_key(exception_id)))


def missing_messages(db: Database, *, limit: int = 200) -> list[int]:
    """Open exceptions that have no Slack message yet, oldest first."""
    with db.read() as s:
        return [int(i) for i in s.execute(
            select(BillingException.id)
            .where(BillingException.state.in_(OPEN_EXCEPTION_STATES), BillingException.message_ts.is_(None))
            .order_by(BillingException.id).limit(limit)
        ).scalars()]
