"""A scaled-out billing run's workflow (issue 22): ``plan_run`` splits it into chunks, ``settle_chunk``
settles one in any order (each on a worker in distributed mode), the run row aggregates the chunks and
the last chunk finishes the run. Here on the suite's database, one chunk after another; the parallel
workers and the killed one are in ``tests/tasks/test_distributed_run.py`` (PostgreSQL)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from billing.errors import Conflict
from bot.workflows import billing_run as run
from bot.workflows.audit import verify_chain
from bot.workflows.billing_run import plan_run, run_progress, settle_chunk
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.models import BillingRun, Invoice, JobLog, PreInvoice
from tests.factories import load, monthly_advertisers

from .conftest import NOW

pytestmark = pytest.mark.usefixtures("no_variance")

TODAY = date(2026, 3, 1)


def test_chunks_settled_in_any_order_finish_the_run_once_with_gapless_numbers(
    db: Database, key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(db, monthly_advertisers(7))
    create_preinvoices(db, period="2026-02", actor="cli:op", key=key, now=NOW)
    monkeypatch.setattr(run, "CHUNK_SIZE", 3)

    plan = plan_run(db, period="2026-02", actor="cli:op", key=key, today=TODAY, now=NOW, min_chunks=2)
    assert plan is not None
    assert plan.chunks == [["adv-000", "adv-001", "adv-002"], ["adv-003", "adv-004", "adv-005"], ["adv-006"]]
    with pytest.raises(Conflict, match="already running"):  # the run holds its period until the last chunk
        plan_run(db, period="2026-02", actor="cli:op", key=key, today=TODAY, now=NOW)

    last = settle_chunk(db, run_id=plan.run_id, index=2, advertisers=plan.chunks[2], actor="cli:op", key=key, now=NOW)
    assert (last.created, last.done, last.total, last.finished) == (["INV-2026-000001"], 1, 7, False)
    first = settle_chunk(db, run_id=plan.run_id, index=0, advertisers=plan.chunks[0], actor="cli:op", key=key, now=NOW)
    assert first.created == ["INV-2026-000002", "INV-2026-000003", "INV-2026-000004"]
    progress = run_progress(db, plan.run_id)
    assert {k: progress[k] for k in ("state", "done", "total", "chunks", "chunks_done", "created")} == {
        "state": "running", "done": 4, "total": 7, "chunks": 3, "chunks_done": 2, "created": 4}

    again = settle_chunk(db, run_id=plan.run_id, index=0, advertisers=plan.chunks[0], actor="cli:op", key=key, now=NOW)
    assert again.already and again.created == []  # a re-delivered job of a committed chunk does nothing

    middle = settle_chunk(db, run_id=plan.run_id, index=1, advertisers=plan.chunks[1], actor="cli:op", key=key,
                          now=NOW)
    assert (middle.finished, middle.state, middle.done) == (True, "done", 7)
    with db.read() as s:
        r = s.get(BillingRun, plan.run_id)
        assert r is not None and (r.state, r.lock_key, r.summary["created"]) == ("done", None, 7)
        # numbers in commit order, gapless; every advertiser once
        assert [(i.seq, i.advertiser_id) for i in s.execute(select(Invoice).order_by(Invoice.seq)).scalars()] == [
            (1, "adv-006"), (2, "adv-000"), (3, "adv-001"), (4, "adv-002"), (5, "adv-003"), (6, "adv-004"),
            (7, "adv-005")]
        assert set(s.execute(select(PreInvoice.state)).scalars()) == {"invoiced"}
        created = [m for m in s.execute(select(JobLog.message).where(JobLog.run_id == plan.run_id)).scalars()
                   if m.startswith("Document")]
        assert len(created) == len(set(created)) == 7
        assert verify_chain(s, key.public_key()).ok
    late = settle_chunk(db, run_id=plan.run_id, index=1, advertisers=plan.chunks[1], actor="cli:op", key=key, now=NOW)
    assert late.already and late.state == "done"


def test_a_run_of_one_chunk_is_not_split(db: Database, key: Any) -> None:
    load(db, monthly_advertisers(2))
    create_preinvoices(db, period="2026-02", actor="cli:op", key=key, now=NOW)
    assert plan_run(db, period="2026-02", actor="cli:op", key=key, today=TODAY, now=NOW, min_chunks=2) is None
    with db.read() as s:
        assert s.execute(select(BillingRun)).first() is None  # nothing started
