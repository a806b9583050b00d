"""Many people deciding one exception at the same moment: exactly one decision is recorded; every
other click is told who won. 50 deciders from 10 threads on PostgreSQL (real row-level races on the
conditional UPDATE); a smaller threaded run on SQLite, whose writers queue on BEGIN IMMEDIATE."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from billing.errors import Conflict
from storage.models import AuditLog, BillingException, Decision
from tests import factories as f


def _decide_all(db, key, eid, digest, deciders):
    from bot.workflows.decisions import decide

    go = threading.Event()

    def one(who_and_what):
        who, what = who_and_what
        go.wait(timeout=10)  # start together
        try:
            out = decide(db, exception_id=eid, decision=what, actor=who, subject_hash=digest,
                         reason="race" if what != "approve" else None, signing_key=key)
            return ("won", who, out)
        except Conflict as e:
            return ("told", who, e.message)

    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(one, d) for d in deciders]
        go.set()
        return [fut.result() for fut in futures]


def test_conflicting_decisions_record_exactly_one(db, signing_key, backend):
    from bot.workflows.decisions import subject_hash_of

    n = 50 if backend == "postgres" else 12
    f.seed(db)
    deciders = []
    for i in range(n):
        uid = f"U9{i:05d}"
        role = "finance_manager" if i % 3 == 0 else "approver"
        f.add_user(db, uid, [role], cached=True)
        deciders.append((uid, ("force", "reject", "approve")[i % 3] if role == "finance_manager"
                         else ("approve", "reject")[i % 2]))
    pid = f.preinvoice(db)
    eid = f.open_exception(db, signing_key, preinvoice_id=pid)
    with db.read() as s:
        digest = subject_hash_of(s.get(BillingException, eid))

    results = _decide_all(db, signing_key, eid, digest, deciders)

    winners = [r for r in results if r[0] == "won"]
    told = [r for r in results if r[0] == "told"]
    assert len(winners) == 1 and len(told) == n - 1
    _, winner, outcome = winners[0]
    with db.read() as s:
        exc = s.get(BillingException, eid)
        recorded = list(s.execute(select(Decision).where(Decision.exception_id == eid)).scalars())
        audits = list(s.execute(select(AuditLog).where(AuditLog.action == "decision.recorded")).scalars())
    assert [d.actor_id for d in recorded] == [winner] and len(audits) == 1
    assert exc.decided_by == winner and exc.version == 2
    state = {"approve": "approved", "reject": "rejected", "force": "forced"}[outcome.decision]
    assert exc.state == state
    for _, _who, message in told:
        assert message.startswith(f"Already {state} by <@{winner}> at ")


def test_a_winner_between_the_checks_and_the_update_is_named(db, signing_key, monkeypatch):
    """The guarded UPDATE itself (rowcount 0): someone else's decision lands after this click passed
    its checks. Simulated inside the transaction, exactly what PostgreSQL's re-evaluated WHERE sees."""
    from sqlalchemy import update
    from sqlalchemy.orm import object_session

    from bot.workflows import decisions

    f.seed(db)
    pid = f.preinvoice(db)
    eid = f.open_exception(db, signing_key, preinvoice_id=pid)
    real_check = decisions._check_stale

    def winner_commits_first(exc, subject_hash):
        digest = real_check(exc, subject_hash)
        object_session(exc).execute(
            update(BillingException).where(BillingException.id == exc.id)
            .values(state="rejected", decided_by="UWINNER", decided_at=exc.created_at, version=exc.version + 1)
            .execution_options(synchronize_session=False))
        return digest

    monkeypatch.setattr(decisions, "_check_stale", winner_commits_first)
    with db.read() as s:
        digest = decisions.subject_hash_of(s.get(BillingException, eid))
    try:
        decisions.decide(db, exception_id=eid, decision="approve", actor=f.APPROVER, subject_hash=digest,
                         signing_key=signing_key)
    except Conflict as e:
        assert e.code == "already_decided" and e.message.startswith("Already rejected by <@UWINNER> at ")
    else:
        raise AssertionError("the losing click must be told")
    with db.read() as s:
        assert s.execute(select(Decision)).first() is None
