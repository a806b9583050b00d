"""Issue 14: an audit log that proves itself — the key registry with rotation, and business rows
checked against their audited state (``billbot audit verify``, ``keys rotate|export``, ``evidence verify``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from typer.testing import CliRunner

from billing.signatures import key_id
from bot.cli import app
from bot.workflows import audit
from storage.db import Database
from storage.models import AuditLog, SigningKey
from tests.factories import OPERATOR, add_user, advertiser, campaign, linear, load, scenario

pytestmark = pytest.mark.usefixtures("no_variance")

runner = CliRunner()
ADMIN = "U09ADMIN"


def _ok(*args: str) -> Any:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r


def _billed(db: Database, period: str = "2026-02") -> None:
    """Master data, pre-invoices (system-approved) and an invoice, all through the CLI's workflows."""
    add_user(db, OPERATOR, ["operator"])
    add_user(db, ADMIN, ["admin"])
    load(db, scenario(advertisers=[advertiser("nord", "Autohaus Nord")],
                      campaigns=[campaign("cn", "nord", [linear("a", "1200.00", period="even")])]))
    _ok("preinvoices", "create", "--period", period)
    _ok("run", "--period", period)


def _verify() -> Any:
    return runner.invoke(app, ["audit", "verify"])


def test_rotation_keeps_every_record_verifiable_and_records_the_hand_over(db: Database, key: Any) -> None:
    _billed(db)
    first = key_id(key.public_key())
    assert _verify().exit_code == 0
    _ok("audit", "anchor")  # an anchor signed by the key about to be retired stays valid
    refused = runner.invoke(app, ["keys", "rotate", "--as", OPERATOR])
    assert refused.exit_code == 1 and "needs the admin role" in refused.output
    r = _ok("keys", "rotate", "--as", ADMIN, "--json")
    handover = json.loads(r.stdout)
    assert handover["old_key_id"] == first and handover["new_key_id"] != first
    from bot import context

    assert key_id(context.get_key().public_key()) == handover["new_key_id"]  # the file was replaced
    _ok("preinvoices", "create", "--period", "2026-03")  # more records, signed by the new key
    _ok("run", "--period", "2026-03")
    _ok("audit", "anchor")
    r = _verify()
    assert r.exit_code == 0, r.output
    assert "2 registered key(s)" in r.output
    with db.read() as s:
        keys = {k.key_id: k for k in s.execute(select(SigningKey)).scalars()}
        rec = s.get(AuditLog, handover["record"])
        signers = set(s.execute(select(AuditLog.key_id)).scalars())
    assert set(keys) == {first, handover["new_key_id"]} == signers
    assert keys[first].retired_at_record == handover["record"] and keys[first].valid_until is not None
    assert rec is not None and rec.action == "key.rotated" and rec.key_id == first  # signed by the old key
    assert json.loads(rec.payload)["new_public_key"] == keys[handover["new_key_id"]].public_key
    # the export holds both keys: packs and records of either verify offline
    exported = Path(context.settings().var_dir) / "keys.pem"
    _ok("keys", "export", "-o", str(exported))
    assert exported.read_text().count("BEGIN PUBLIC KEY") == 2


def test_a_retired_key_signs_nothing_more(db: Database, key: Any) -> None:
    _billed(db)
    _ok("keys", "rotate", "--as", ADMIN)
    with db.transaction() as s, pytest.raises(audit.BillingError, match="was retired at audit record"):
        audit.record(s, key=key, actor="x", action="t", subject_type="t", subject_id=1, payload={})


def test_a_record_forged_with_an_unknown_key_fails(db: Database, key: Any, backend: str) -> None:
    _billed(db)
    forger = Ed25519PrivateKey.generate()
    with db.read() as s:
        last = s.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(1)).scalar_one()
    # rewrite the last record's signature with a stranger's key (the chain itself stays intact)
    with db.engine.begin() as c:
        if backend == "postgres":
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable"))
        c.execute(text("UPDATE audit_log SET signature = :sig, key_id = :k WHERE id = :i"),
                  {"sig": audit.sign(forger, last.record_hash), "k": key_id(forger.public_key()), "i": last.id})
        if backend == "postgres":
            c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_immutable"))
    r = _verify()
    assert r.exit_code == 1
    assert f"record {last.id} was signed by key {key_id(forger.public_key())}, which is not in the key registry" \
        in r.output


def test_a_key_slipped_in_without_a_hand_over_fails(db: Database, key: Any) -> None:
    """Another key file put in place (no rotation) registers itself, but verify names it: only the first
    key may introduce itself."""
    _billed(db)
    other = Ed25519PrivateKey.generate()
    with db.transaction() as s:
        audit.record(s, key=other, actor="x", action="t.t", subject_type="t", subject_id=1, payload={},
                     now=datetime.now(UTC))
    r = _verify()
    assert r.exit_code == 1 and "without a hand-over" in r.output


def test_a_changed_invoice_gross_is_named(db: Database, key: Any, backend: str) -> None:
    _billed(db)
    assert _verify().exit_code == 0
    with db.engine.begin() as c:
        if backend == "postgres":  # the trigger refuses it: an attacker with DDL rights switches it off
            c.execute(text("ALTER TABLE invoices DISABLE TRIGGER invoices_immutable"))
        c.execute(text("UPDATE invoices SET gross = gross * 10 WHERE number = 'INV-2026-000001'"))
        if backend == "postgres":
            c.execute(text("ALTER TABLE invoices ENABLE TRIGGER invoices_immutable"))
    r = _verify()
    assert r.exit_code == 1
    assert "invoice INV-2026-000001: gross differs from its audited state" in r.output


def test_changed_lines_pre_invoices_and_decisions_are_named(db: Database, key: Any, backend: str) -> None:
    _billed(db)
    with db.engine.begin() as c:
        if backend == "postgres":
            c.execute(text("ALTER TABLE invoice_lines DISABLE TRIGGER invoice_lines_immutable"))
        c.execute(text("UPDATE invoice_lines SET description = 'something else'"))
        if backend == "postgres":
            c.execute(text("ALTER TABLE invoice_lines ENABLE TRIGGER invoice_lines_immutable"))
        pid = c.execute(text("SELECT min(id) FROM preinvoices WHERE state = 'invoiced'")).scalar_one()
        c.execute(text("UPDATE preinvoice_lines SET amount = amount + 1 WHERE preinvoice_id = :p"), {"p": pid})
    r = _verify()
    assert r.exit_code == 1
    assert "invoice INV-2026-000001: content (lines, dates, parties or VAT) differs from its audited state" in r.output
    assert f"pre-invoice {pid}: lines, net differ from its audited state" in r.output


def test_an_approval_set_in_sql_is_named(db: Database, key: Any) -> None:
    add_user(db, OPERATOR, ["operator"])
    load(db, scenario(advertisers=[advertiser("nord", "Autohaus Nord")],
                      campaigns=[campaign("cn", "nord", [linear("a", "1200.00", period="even")])]))
    _ok("preinvoices", "create", "--period", "2026-02")
    with db.engine.begin() as c:
        pid = c.execute(text("SELECT min(id) FROM preinvoices")).scalar_one()
        c.execute(text("UPDATE preinvoices SET approved_hash = 'f00' WHERE id = :p"), {"p": pid})
    r = _verify()
    assert r.exit_code == 1
    assert f"pre-invoice {pid}: its approval (approved) has no audit record approving that content" in r.output


def test_a_pack_made_before_a_rotation_verifies_with_the_registry_and_the_export(db: Database, key: Any,
                                                                               tmp_path: Path) -> None:
    _billed(db)
    pack = tmp_path / "pack.zip"
    _ok("evidence", "INV-2026-000001", "-o", str(pack))
    _ok("keys", "rotate", "--as", ADMIN)
    r = runner.invoke(app, ["evidence", "verify", str(pack)])
    assert r.exit_code == 0, r.output
    newer = tmp_path / "newer.zip"  # a pack made after: its old records are signed by the retired key
    _ok("evidence", "INV-2026-000001", "-o", str(newer))
    assert runner.invoke(app, ["evidence", "verify", str(newer)]).exit_code == 0
    keys = tmp_path / "keys.pem"
    _ok("keys", "export", "-o", str(keys))
    for p in (pack, newer):
        r = runner.invoke(app, ["evidence", "verify", str(p), "--public-key", str(keys)])
        assert r.exit_code == 0, r.output
