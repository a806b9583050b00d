"""``billbot audit verify`` and ``billbot users grant|revoke|list``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from typer.testing import CliRunner

from bot.cli import app
from tests import factories as f

runner = CliRunner()


def _decided_log(db, key):
    """A realistic log: an exception opened and decided."""
    from bot.workflows.decisions import decide, subject_hash_of
    from storage.models import BillingException

    f.seed(db)
    f.add_user(db, f.APPROVER, ["approver"], cached=True)
    pid = f.preinvoice(db)
    eid = f.open_exception(db, key, preinvoice_id=pid)
    with db.read() as s:
        digest = subject_hash_of(s.get(BillingException, eid))
    decide(db, exception_id=eid, decision="approve", actor=f.APPROVER, subject_hash=digest, signing_key=key)


def test_audit_verify_passes_on_a_clean_log(db, signing_key):
    _decided_log(db, signing_key)
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("OK: ") and "audit record(s) verified" in r.output


def test_audit_verify_names_the_record_after_a_one_byte_change(db, signing_key, backend):
    _decided_log(db, signing_key)
    with db.engine.begin() as c:
        row = c.execute(text("SELECT id, payload FROM audit_log WHERE action = 'decision.recorded'")).one()
        tampered = row.payload.replace('"approve"', '"apprOve"', 1)  # one byte
        assert len(tampered) == len(row.payload) and tampered != row.payload
        if backend == "postgres":
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable"))
        c.execute(text("UPDATE audit_log SET payload = :p WHERE id = :i"), {"p": tampered, "i": row.id})
        if backend == "postgres":
            c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_immutable"))
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 1
    assert f"audit log broken at record {row.id}: record {row.id} was changed (hash mismatch)" in r.output


def test_users_grant_revoke_and_list(db, signing_key, monkeypatch):
    # a fresh deployment: the first admin is granted while there is none; from then on an admin grants
    assert runner.invoke(app, ["users", "grant", "U0ADMIN", "admin"]).exit_code == 0
    refused = runner.invoke(app, ["users", "grant", "U123", "approver"])  # BILLBOT_USER is no admin
    assert refused.exit_code == 1 and "no such billbot user" in refused.output
    monkeypatch.setenv("BILLBOT_USER", "U0ADMIN")
    r = runner.invoke(app, ["users", "grant", "U123", "approver"])
    assert r.exit_code == 0 and "approver granted" in r.output
    assert "already held" in runner.invoke(app, ["users", "grant", "U123", "approver"]).output
    runner.invoke(app, ["users", "grant", "U123", "finance_manager"])
    bad = runner.invoke(app, ["users", "grant", "U123", "emperor"])
    assert bad.exit_code == 2 and "unknown role 'emperor'" in bad.output
    r = runner.invoke(app, ["users", "revoke", "U123", "approver"])
    assert r.exit_code == 0 and "revoked" in r.output
    missing = runner.invoke(app, ["users", "revoke", "U999", "approver"])
    assert missing.exit_code == 2 and "U999 is not known" in missing.output
    listed = json.loads(runner.invoke(app, ["users", "list", "--json"]).output)
    assert listed == [{"slack_id": "U0ADMIN", "name": "", "email": None, "roles": ["admin"],
                       "profile_fetched_at": None},
                      {"slack_id": "U123", "name": "", "email": None, "roles": ["finance_manager"],
                       "profile_fetched_at": None}]
    with db.read() as s:
        rows = list(s.execute(text("SELECT action, actor FROM audit_log ORDER BY id")))
    assert [tuple(r) for r in rows] == [("key.registered", "system"), ("role.granted", "bootstrap"), ("role.granted", "U0ADMIN"),
                                        ("role.granted", "U0ADMIN"), ("role.revoked", "U0ADMIN")]


def test_profiles_are_looked_up_once_and_refreshed_after_a_day(db, fake_slack):
    from bot.slack.client import make_client
    from bot.slack.users import profile_lookup
    from bot.workflows.users import ensure_user

    client = make_client("xoxb-test", fake_slack.url)
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for at in (t0, t0 + timedelta(hours=23), t0 + timedelta(hours=25)):
        with db.transaction() as s:
            u = ensure_user(s, f.APPROVER, lookup=profile_lookup(client), now=at)
            assert (u.name, u.email) == ("Arne Approver", "arne@northwind.example")
    assert len(fake_slack.calls_to("users.info")) == 2
    with db.transaction() as s:  # Slack does not know the user: the row stays, nameless
        u = ensure_user(s, "UGHOST", lookup=profile_lookup(client), now=t0)
        assert (u.name, u.profile_fetched_at) == ("", None)


# --------------------------------------------------------------------------- issue 14: a log that proves itself


def test_audit_verify_never_creates_a_key_and_names_the_missing_one(db, signing_key, tmp_path, monkeypatch):
    from bot import context

    _decided_log(db, signing_key)
    missing = tmp_path / "nowhere" / "signing_key.pem"
    monkeypatch.setenv("SIGNING_KEY_PATH", str(missing))
    context.reset()
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 1 and str(missing) in r.output
    assert not missing.exists()


def test_audit_verify_fails_when_the_chain_is_cut_below_a_published_anchor(db, signing_key, backend):
    from bot import context

    _decided_log(db, signing_key)
    r = runner.invoke(app, ["audit", "anchor", "--json"])
    assert r.exit_code == 0, r.output
    anchored = json.loads(r.stdout)["seq"]
    assert context.settings().anchor_path.exists()
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    # delete the last two records and reset the head: the chain itself still links
    with db.engine.begin() as c:
        if backend == "postgres":
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable"))
        c.execute(text("DELETE FROM audit_log WHERE id > :n"), {"n": anchored - 2})
        last = c.execute(text("SELECT record_hash FROM audit_log WHERE id = :n"), {"n": anchored - 2}).scalar_one()
        c.execute(text("UPDATE audit_head SET last_id = :n, last_hash = :h"), {"n": anchored - 2, "h": last})
        if backend == "postgres":
            c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_immutable"))
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 1
    assert f"anchor of record {anchored}" in r.output and "no longer in the chain" in r.output
