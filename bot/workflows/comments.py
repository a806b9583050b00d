"""Comments from Slack threads (issues 20 and 21): one capture path for replies in the thread of an
exception's or a dispute's message.

Slack's Events API sends every message of a channel billbot is in (``message.channels`` /
``message.groups``); :func:`capture_thread_message` keeps the people's replies in the thread of a
message billbot posted for an exception or a dispute, and ignores everything else. A comment is an
audit record — ``<subject>.comment`` (author, text, ``ts``), signed and chained like every state change,
so it is in the evidence pack of the invoice the subject belongs to. Slack lets the author edit and
delete their message: an edit (subtype ``message_changed``) is recorded as ``<subject>.comment_edited``
with the new and the previous text, a deletion (``message_deleted``) as ``<subject>.comment_deleted``;
nothing is erased. Slack's retries of one event are kept once (same ``ts``, same text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.workflows import audit
from storage.db import Database
from storage.models import AuditLog, BillingException, Dispute

MAX_TEXT = 4000
ADDED, EDITED, DELETED = "comment", "comment_edited", "comment_deleted"


@dataclass(frozen=True)
class Comment:
    at: datetime
    user: str
    text: str
    ts: str = ""
    edits: tuple[dict[str, Any], ...] = field(default=())  # [{at, text, previous}] oldest first
    deleted_at: datetime | None = None


def _subject(s: Session, channel: str, thread_ts: str) -> tuple[str, int, dict[str, Any]] | None:
    """The exception or dispute whose message starts the thread, locked (a retry waits, then sees it kept)."""
    d = s.execute(select(Dispute).where(Dispute.channel == channel, Dispute.message_ts == thread_ts)
                  .with_for_update()).scalars().first()
    if d is not None:
        return "dispute", d.id, {"invoice": d.invoice_number}
    e = s.execute(select(BillingException).where(BillingException.channel == channel,
                                                 BillingException.message_ts == thread_ts)
                  .with_for_update()).scalars().first()
    if e is not None:
        return "exception", e.id, {"kind": e.kind, "preinvoice_id": e.preinvoice_id}
    return None


def _records(s: Session, subject_type: str, subject_id: int) -> list[tuple[int, datetime, str, str, dict[str, Any]]]:
    actions = [f"{subject_type}.{a}" for a in (ADDED, EDITED, DELETED)]
    rows = s.execute(select(AuditLog.id, AuditLog.at, AuditLog.actor, AuditLog.action, AuditLog.payload).where(
        AuditLog.subject_type == subject_type, AuditLog.subject_id == str(subject_id),
        AuditLog.action.in_(actions)).order_by(AuditLog.id)).all()
    return [(i, at, actor, action.rsplit(".", 1)[1], json.loads(p)) for i, at, actor, action, p in rows]


def capture_thread_message(  # noqa: PLR0913, PLR0917 - the fields of one Slack message event
    db: Database, *, channel: str, thread_ts: str, user: str, text: str, ts: str, change: str = ADDED,
    previous: str | None = None, key: Ed25519PrivateKey | None, now: datetime | None = None,
) -> tuple[str, int] | None:
    """Keep a reply (``change`` ``comment``), an edit (``comment_edited``) or a deletion
    (``comment_deleted``) of a message in the thread of an exception's or dispute's message.
    ``previous``: the message's text before the change, as the event tells it (used when billbot has
    not kept the message yet: events can arrive out of order).

    Returns ``(subject_type, id)``, or None when the thread is nobody's, the text is empty, or the
    event was kept already. An edit or deletion of a reply billbot never kept is kept as what it is
    (the record names it), so nothing said in the thread is lost."""
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        found = _subject(s, channel, thread_ts)
        if found is None:
            return None
        subject_type, subject_id, extra = found
        if change != DELETED and not text.strip():
            return None
        seen = _records(s, subject_type, subject_id)
        same = [r for r in seen if r[4].get("ts") == ts]
        if change == ADDED and any(r[3] == ADDED for r in same):
            return None  # Slack's retry
        latest = [r[4].get("text") for r in same if r[4].get("text") is not None]
        if change == EDITED and (text[:MAX_TEXT] in latest[-1:]
                                 or any(r[4].get("text") == text[:MAX_TEXT] for r in same if r[3] == EDITED)):
            return None  # the retry of an edit, or a change Slack reports without new text (an unfurl)
        if change == DELETED and any(r[3] == DELETED for r in same):
            return None
        payload: dict[str, Any] = {**extra, "ts": ts, "text": None if change == DELETED else text[:MAX_TEXT]}
        if change != ADDED:
            kept = [str(r[4]["text"]) for r in same if r[4].get("text") is not None]
            payload["previous"] = kept[-1] if kept else (previous[:MAX_TEXT] if previous is not None else None)
        audit.record(s, key=key, actor=user, action=f"{subject_type}.{change}", subject_type=subject_type,
                     subject_id=subject_id, now=now, payload=payload)
        return subject_type, subject_id


def thread_comments(s: Session, subject_type: str, subject_id: int) -> list[Comment]:
    """The comments of an exception or dispute, oldest first, each with its edits and deletion."""
    out: dict[str, Comment] = {}
    for _i, at, actor, change, p in _records(s, subject_type, subject_id):
        ts = str(p.get("ts") or "")
        c = out.get(ts)
        if c is None:  # normally the reply itself; an edit or deletion seen first names the text before it
            c = Comment(at, actor, str(p.get("text") if change == ADDED else p.get("previous") or ""), ts)
        elif change == ADDED:  # the reply arrived after its edit or deletion: its time and author stand
            c = Comment(at, actor, c.text or str(p.get("text") or ""), ts, c.edits, c.deleted_at)
        if change == EDITED:
            c = Comment(c.at, c.user, str(p.get("text") or ""), ts,
                        (*c.edits, {"at": at.isoformat(), "text": p.get("text"), "previous": p.get("previous")}),
                        c.deleted_at)
        elif change == DELETED:
            c = Comment(c.at, c.user, c.text, ts, c.edits, at)
        out[ts] = c
    return sorted(out.values(), key=lambda c: c.at)


def comments_of(db: Database, subject_type: str, subject_id: int) -> list[Comment]:
    with db.read() as s:
        return thread_comments(s, subject_type, subject_id)


def comment_json(c: Comment) -> dict[str, Any]:
    return {"at": c.at.isoformat(), "user": c.user, "text": c.text, "ts": c.ts, "edits": list(c.edits),
            "deleted_at": c.deleted_at.isoformat() if c.deleted_at else None}
