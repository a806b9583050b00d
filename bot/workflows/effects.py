"""Side effects after commit, and a tiny in-process event bus.

Workflows never call Slack or render PDFs inside their transaction. They call
``notify(session, "exception.opened", exception_id=…)``; after the transaction commits, every
subscriber of that event runs (Slack posting, PDF rendering, …). A rollback discards the events.
Subscribers are registered by the surfaces that care (the Slack app, the jobs facade); with none
registered (plain CLI use) events are simply dropped.

Events used across billbot (payload keys in parentheses):
- ``exception.opened`` / ``exception.updated`` / ``exception.closed`` (exception_id)
- ``exception.decided`` (exception_id, decision_id)
- ``preinvoice.changed`` (preinvoice_id)
- ``exception.invoiced`` (exception_id, invoice_ids) — a Force on a below-threshold skip invoiced now
- ``invoice.finalized`` (invoice_id, billing_run_id)
- ``invoice.rendered`` (invoice_id, pdf_path) — the PDF exists (delivery to Slack threads listens)
- ``run.progress`` / ``run.finished`` (billing_run_id)
- ``sync.finished`` (sync_run_id)
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

Subscriber = Callable[..., None]
_subscribers: dict[str, list[Subscriber]] = defaultdict(list)


def subscribe(name: str, fn: Subscriber) -> None:
    if fn not in _subscribers[name]:
        _subscribers[name].append(fn)


def unsubscribe_all() -> None:
    _subscribers.clear()


def after_commit(s: Session, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``fn(*args, **kwargs)`` once the session's current transaction commits."""
    s.info.setdefault("_after_commit", []).append((fn, args, kwargs))


def notify(s: Session, name: str, **payload: Any) -> None:
    """Queue event ``name`` for delivery after commit."""
    after_commit(s, dispatch, name, **payload)


def dispatch(name: str, **payload: Any) -> None:
    for fn in list(_subscribers.get(name, ())):
        try:
            fn(**payload)
        except Exception:  # a failed side effect must not undo a committed decision; it is logged
            log.exception("subscriber %s of %s failed", getattr(fn, "__name__", fn), name)


@event.listens_for(Session, "after_commit")
def _run_after_commit(s: Session) -> None:
    if s.in_nested_transaction():  # a SAVEPOINT was released (SQLAlchemy fires this for it too): not committed yet
        return
    pending = s.info.pop("_after_commit", [])
    for fn, args, kwargs in pending:
        fn(*args, **kwargs)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(s: Session) -> None:
    if s.in_nested_transaction():  # only the SAVEPOINT rolled back; the transaction's events still stand
        return
    s.info.pop("_after_commit", None)
