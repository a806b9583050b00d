"""``/billing`` over signed HTTP: help, reads through response_url, operator-only sync and run with a
progress message that is kept updated, and an ack that never waits for the work."""

from __future__ import annotations

import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from tests import factories as f
from tests.slack.helpers import ephemerals, spy_module


def _texts(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(b["text"]["text"] for b in blocks if b.get("text"))


def test_help_and_unknown_input_answer_with_the_help_text(world):
    for text in ("", "help", "frobnicate the ledger"):
        r = world.as_user(f.NOBODY).command(text)
        assert r.status == 200
        body = r.json()
        assert "/billing sync [standard|partial] [source]" in _texts(body["blocks"])
        assert "help" in body["text"]
    assert "is not a command I know" in _texts(r.json()["blocks"])


def test_reads_answer_ephemerally_through_the_response_url(world):
    pid = f.preinvoice(world.db)
    f.open_exception(world.db, world.key, preinvoice_id=pid)
    user = world.as_user(f.NOBODY)
    for text in ("exceptions", "preinvoices 2026-02", "status", "schedule"):
        assert user.command(text).status == 200
        world.wait()
    answers = world.api.calls_to("response_url")
    assert [a["response_type"] for a in answers] == ["ephemeral"] * 4
    exceptions, preinvoices, status, schedule = (_texts(a["blocks"]) for a in answers)
    assert "*Open exceptions* (1)" in exceptions and "Autohaus Elbe KG · 900.00 EUR" in exceptions
    assert f"#{pid} Autohaus Elbe KG · 2026-02-01 – 2026-02-28 · *pending* · 3,000.00 EUR" in preinvoices
    assert "*Open exceptions*: 1" in status and "No sync has run yet." in status
    assert "*Schedules*" in schedule


def test_an_unknown_invoice_is_told_not_crashed(world):
    world.as_user(f.NOBODY).command("invoice INV-2026-999999")
    world.wait()
    assert ephemerals(world, f.NOBODY) == [":mag: invoice INV-2026-999999 does not exist"]


def test_only_operators_start_syncs_and_runs(world):
    user = world.as_user(f.APPROVER)
    user.command("sync partial tracker")
    user.command("run 2026-02")
    world.wait()
    assert ephemerals(world, f.APPROVER) == [":no_entry: Only operators may start syncs and billing runs or change schedules."] * 2
    assert world.api.calls_to("chat.postMessage") == []


def test_sync_posts_a_progress_message_and_finishes_with_the_job_log(world, monkeypatch):
    seen: dict[str, Any] = {}

    def run_sync(db, *, source, mode, actor, signing_key, now=None, on_progress=None):
        seen.update(source=source, mode=mode, actor=actor)
        on_progress("stats", 1, 2)
        return SimpleNamespace(log=["Fetched 2 pages from tracker", "Upserted 120 delivery rows"], counts={})

    spy_module(monkeypatch, "bot.workflows.sync", run_sync=run_sync)
    monkeypatch.setattr("bot.slack.progress.UPDATE_EVERY_S", 0.0)
    monkeypatch.setenv("BILLBOT_SOURCE_TRACKER_KIND", "hasoffers")  # /billing sync names only known sources
    r = world.as_user(f.OPERATOR).command("sync partial tracker")
    world.wait()
    assert r.status == 200
    assert seen == {"source": "tracker", "mode": "partial", "actor": f.OPERATOR}
    [post] = world.api.calls_to("chat.postMessage")
    assert post["channel"] == "CBILLING" and "Partial sync of tracker* — queued" in _texts(post["blocks"])
    final = world.api.message("CBILLING", world.api.calls_to("chat.update")[-1]["ts"])
    text = _texts(final["blocks"])
    assert "— done" in text and "Upserted 120 delivery rows" in text
    assert any("stats: 1/2" in _texts(c["blocks"]) for c in world.api.calls_to("chat.update"))


def test_run_acks_at_once_while_the_work_goes_on_and_reports_its_log(world, monkeypatch):
    def run_billing(db, *, period, advertisers=None, actor, key, today, dry_run=False, on_progress=None, job=None):
        on_progress(1, 1)
        time.sleep(1.0)  # a long run must not delay the ack
        return SimpleNamespace(run_id=1, created=["NW-2026-00001"], skipped=[], held=[],
                               log=["Document NW-2026-00001 created for Autohaus Elbe KG",
                                    "Skipped items with a total of 180.00 EUR for Garage du Rhône SARL "
                                    "(threshold 250.00 EUR)"])

    spy_module(monkeypatch, "bot.workflows.billing_run", run_billing=run_billing)
    started = time.monotonic()
    r = world.as_user(f.OPERATOR).command("run 2026-02 autohaus-elbe")
    acked = time.monotonic() - started
    assert r.status == 200 and acked < 0.8
    world.wait()
    [post] = world.api.calls_to("chat.postMessage")
    assert "Billing run 2026-02 for autohaus-elbe" in _texts(post["blocks"])
    final = _texts(world.api.message(post["channel"], world.api.calls_to("chat.update")[-1]["ts"])["blocks"])
    assert "Document NW-2026-00001 created for Autohaus Elbe KG" in final and "— done" in final


def test_a_failing_run_says_so_in_its_message(world, monkeypatch):
    from billing.errors import Conflict

    def run_billing(db, **kw):
        raise Conflict("a billing run for 2026-02 is already running")

    spy_module(monkeypatch, "bot.workflows.billing_run", run_billing=run_billing)
    world.as_user(f.OPERATOR).command("run 2026-02")
    world.wait()
    final = _texts(world.api.calls_to("chat.update")[-1]["blocks"])
    assert "— failed" in final and "already running" in final


def test_app_home_shows_the_viewers_queue_decisions_and_runs(world):
    pid = f.preinvoice(world.db)
    eid = f.open_exception(world.db, world.key, preinvoice_id=pid)
    world.as_user(f.APPROVER).open_home()
    world.as_user(f.NOBODY).open_home()
    world.wait()
    by_user = {c["user_id"]: c["view"] for c in world.api.calls_to("views.publish")}
    approver, nobody = by_user[f.APPROVER], by_user[f.NOBODY]
    assert approver["type"] == "home" and len(approver["blocks"]) <= 50
    assert approver["blocks"][0]["text"]["text"] == "Waiting for you (1)"
    assert "SLA due <!date^" in _texts(approver["blocks"])
    assert any(b["type"] == "actions" and b["elements"][0]["value"].startswith(f"{eid}:") for b in approver["blocks"])
    assert nobody["blocks"][0]["text"]["text"] == "Waiting for you (0)"
    assert any(b["type"] == "header" and b["text"]["text"] == "Waiting for others (1)" for b in nobody["blocks"])
    assert f"#{eid} Variance" in _texts(nobody["blocks"])
    assert "No billing run yet." in _texts(nobody["blocks"])


def test_schedules_are_listed_added_and_removed_by_operators(world):
    op = world.as_user(f.OPERATOR)
    op.command("schedule add sync 0 2 * * * source=tracker mode=partial")
    world.wait()
    world.as_user(f.APPROVER).command("schedule remove 1")
    world.wait()
    op.command("schedule list")
    world.wait()
    added, listed = (c for c in world.api.calls_to("response_url"))
    assert added["text"].startswith("Schedule #1 ") and "`0 2 * * *`" in added["text"]
    assert "→ sync" in _texts(listed["blocks"])
    assert ephemerals(world, f.APPROVER) == [":no_entry: Only operators may start syncs and billing runs or change schedules."]
    op.command("schedule remove 1")
    world.wait()
    assert world.api.calls_to("response_url")[-1]["text"].endswith("removed")


def test_whole_flow_run_skips_below_threshold_and_force_invoices_now(world):
    """The real billing run and finalization (no spies): `/billing run` skips an advertiser below its
    threshold, the skip is posted as an exception, a finance manager forces it with a reason, and the
    invoice is created and named in the exception's thread."""
    from sqlalchemy import select

    from storage.models import BillingException, Invoice
    from tests.slack.helpers import click, message_of, submit_reason

    f.preinvoice(world.db, net="180.00", state="approved")
    world.as_user(f.OPERATOR).command("run 2026-02")
    world.wait()
    progress = world.api.calls_to("chat.update")[-1]
    assert "Skipped items with a total of 180.00 EUR for Autohaus Elbe KG (threshold 250.00 EUR)" in _texts(
        progress["blocks"])
    with world.db.read() as s:
        [exc] = s.execute(select(BillingException)).scalars().all()
        assert (exc.kind, exc.state, exc.started_by) == ("below_threshold", "pending", f.OPERATOR)
    click(world, f.MANAGER, exc.id, "force")
    submit_reason(world, f.MANAGER, "Client asked for the February invoice now")
    with world.db.read() as s:
        [inv] = s.execute(select(Invoice)).scalars().all()
        assert inv.net == Decimal("180.00") and s.get(BillingException, exc.id).state == "forced"
    replies = [r["text"] for r in message_of(world, exc.id)["replies"]]
    assert replies[0].startswith(":zap: Forced by <@U04FINANCE>") and "Invoiced now, below the threshold." in replies[0]
    assert replies[1] == f"Invoice(s) created: {inv.number}"


def test_app_home_opens_for_every_user_after_a_billing_run(world):
    """A finished run stores counts in its summary; the Home shows them instead of crashing, for an
    approver with a queue and for a user with no role at all."""
    f.preinvoice(world.db, net="3000.00", state="approved")
    world.as_user(f.OPERATOR).command("run 2026-02")
    world.wait()
    world.api.reset()
    for user in (f.APPROVER, f.NOBODY, f.OPERATOR):
        world.as_user(user).open_home()
    world.wait()
    by_user = {c["user_id"]: c["view"] for c in world.api.calls_to("views.publish")}
    assert set(by_user) == {f.APPROVER, f.NOBODY, f.OPERATOR}
    for view in by_user.values():
        assert "*Last billing runs*\n• *Run 1* 2026-02 — done, <!date^" in _texts(view["blocks"])
        assert ": 1 invoice(s), net 3,000.00 EUR; 0 skipped; 0 held" in _texts(view["blocks"])
