"""Events after commit.

Workflows never call Slack or render PDFs inside their transaction. They call
``notify(session, "exception.opened", exception_id=…)``; after the transaction commits, the
process's dispatcher runs the event's reactions (the static table in :mod:`bot.runtime`, installed
once per process by ``runtime.wire``). A rollback discards the events. With no dispatcher installed
(a bare script) events are dropped.

Events used across billbot (payload keys in parentheses):
- ``exception.opened`` / ``exception.updated`` / ``exception.closed`` (exception_id)
- ``exception.decided`` (exception_id, decision_id)
- ``exception.approvals_reset`` (exception_id, why, dropped: the approvers whose approvals no longer count)
- ``exception.held`` (exception_id, owner) — held for correction: the owner is told in a DM
- ``preinvoice.changed`` (preinvoice_id)
- ``exception.invoiced`` (exception_id, invoice_ids) — a Force on a below-threshold skip invoiced now, or
  a billing run billed a decided exception's pre-invoice (its message and thread name the invoice)
- ``invoice.finalized`` (invoice_id, billing_run_id)
- ``invoice.rendered`` (invoice_id, pdf_path) — the PDF exists (delivery to Slack threads listens)
- ``invoice.pdf_failed`` (invoice_id, number, error) — no PDF after the last attempt (said in the thread
  the invoice was asked for and in the managers' channel, with a Retry PDF button)
- ``run.progress`` / ``run.finished`` (billing_run_id)
- ``sync.finished`` (sync_run_id)
- ``accounting.exported`` (batch_id) — an accounting export batch (its file goes to the managers' channel)
- ``payment.exception`` (payment_id) — cash application left something for a person (issue 18)
- ``payment.decided`` (payment_id) — a person allocated, wrote off or refunded
- ``credit_note.requested`` / ``credit_note.decided`` (request_id)
- ``dispute.opened`` / ``dispute.updated`` (dispute_id) — a dispute opened, proposed a credit, reopened or ended
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

Dispatcher = Callable[[str, Mapping[str, Any]], None]
_dispatcher: Dispatcher | None = None


def install(dispatcher: Dispatcher | None) -> Dispatcher | None:
    """Make ``dispatcher(name, payload)`` receive every event after commit; returns the previous one.
    Called by the composition root (``bot.runtime.wire``); tests install a recorder."""
    global _dispatcher  # noqa: PLW0603 - one per process
    previous, _dispatcher = _dispatcher, dispatcher
    return previous


def after_commit(s: Session, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``fn(*args, **kwargs)`` once the session's current transaction commits."""
    s.info.setdefault("_after_commit", []).append((fn, args, kwargs))


def notify(s: Session, name: str, **payload: Any) -> None:
    """Queue event ``name`` for delivery after commit."""
    after_commit(s, dispatch, name, **payload)


def dispatch(name: str, **payload: Any) -> None:
    if _dispatcher is not None:
        _dispatcher(name, payload)


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


@contextmanager
def recorded() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Record the events dispatched inside the block, instead of reacting to them (tests)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    previous = install(lambda name, payload: seen.append((name, dict(payload))))
    try:
        yield seen
    finally:
        install(previous)
