"""Billing runs settle advertisers in chunks (one transaction each): numbers in advertiser order,
a crash inside a chunk rolls the whole chunk back (numbers included), a rerun completes it, and the
audit chain written in batches is the one single records would have written."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.workflows import audit
from bot.workflows import billing_run as run
from bot.workflows.audit import Entry, record_many, verify_chain
from bot.workflows.billing_run import run_billing
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.models import AuditLog, Invoice, JobLog, NumberSequence, PreInvoice
from tests.factories import load, monthly_advertisers

from .conftest import NOW

pytestmark = pytest.mark.usefixtures("no_variance")  # variance checks off unless with_variance

TODAY = date(2026, 3, 1)


def _numbers(db: Database) -> list[str]:
    with db.read() as s:
        return list(s.execute(select(Invoice.number).order_by(Invoice.id)).scalars())


def test_a_crash_inside_a_chunk_rolls_back_the_chunk_and_a_rerun_completes_it(
    db: Database, key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(db, monthly_advertisers(7))
    create_preinvoices(db, period="2026-02", actor="cli:op", key=key, now=NOW)
    monkeypatch.setattr(run, "CHUNK_SIZE", 3)

    dry = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY, dry_run=True)
    assert dry.created == [f"INV-2026-00000{i}" for i in range(1, 8)] and _numbers(db) == []

    real_write_log = run._write_log
    calls = {"n": 0}

    def failing_write_log(*a: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # inside the second chunk's transaction, after its invoices were numbered
            raise RuntimeError("disk full")
        real_write_log(*a, **kw)

    monkeypatch.setattr(run, "_write_log", failing_write_log)
    with pytest.raises(RuntimeError, match="disk full"):
        run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert _numbers(db) == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]
    with db.read() as s:
        assert s.execute(select(NumberSequence.last_seq)).scalar_one() == 3  # the chunk's numbers rolled back
        states = dict(s.execute(select(PreInvoice.state, func.count()).group_by(PreInvoice.state)).all())
        assert states == {"invoiced": 3, "approved": 4}

    monkeypatch.setattr(run, "_write_log", real_write_log)
    again = run_billing(db, period="2026-02", actor="cli:op", key=key, today=TODAY)
    assert again.created == [f"INV-2026-00000{i}" for i in range(4, 8)]
    assert again.log == [f"Document INV-2026-00000{i + 1} created for Autohaus adv {i:03d}" for i in range(3, 7)]
    with db.read() as s:
        assert [(i.seq, i.advertiser_id) for i in s.execute(select(Invoice).order_by(Invoice.seq)).scalars()] == [
            (i + 1, f"adv-{i:03d}") for i in range(7)]
        assert s.execute(select(NumberSequence.last_seq)).scalar_one() == 7
        assert [j.message for j in s.execute(select(JobLog).where(JobLog.run_id == again.run_id)
                                             .order_by(JobLog.id)).scalars()] == again.log
        finalized = list(s.execute(select(AuditLog.subject_id).where(AuditLog.action == "invoice.finalized")
                                   .order_by(AuditLog.id)).scalars())
        ids = list(s.execute(select(Invoice.id).order_by(Invoice.seq)).scalars())
        assert finalized == [str(i) for i in ids]  # one record per invoice, in number order
        assert verify_chain(s, key.public_key()).ok


def test_record_many_writes_exactly_what_record_would(db: Database, key: Any) -> None:
    entries = [Entry("system", "preinvoice.approved", "preinvoice", 7, {"net": "10.00"}),
               Entry("U1", "exception.closed", "exception", "12", {"reason": "fixed", "n": [1, 2]})]
    with db.Session() as s:
        s.begin()
        singles = [audit.record(s, key=key, actor=e.actor, action=e.action, subject_type=e.subject_type,
                                subject_id=e.subject_id, payload=e.payload, now=NOW) for e in entries]
        expected = [(r.id, r.prev_hash, r.record_hash, r.signature, r.payload) for r in singles]
        s.rollback()
    with db.transaction() as s:
        record_many(s, key=key, entries=entries, now=NOW)
    with db.read() as s:
        rows = list(s.execute(select(AuditLog).order_by(AuditLog.id)).scalars())
        assert rows[0].action == "key.registered"  # a key's first record registers it (issue 14)
        assert [(r.id, r.prev_hash, r.record_hash, r.signature, r.payload) for r in rows[1:]] == expected
        assert verify_chain(s, key.public_key()).ok
