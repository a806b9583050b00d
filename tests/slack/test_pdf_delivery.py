"""Invoice PDFs delivered into Slack threads (issue 8, item 5), end to end: signed requests to billbot's real
WSGI app, the fake Slack Web API recording ``files_upload_v2``'s three calls.

- `/billing run` typed in Slack → the run's PDFs go into its progress message's thread, capped, then one
  "… and N more" reply;
- a finance manager's Force on a below-threshold skip → the new invoice's PDF goes into the exception's thread
  (even though that invoice carries the run's id);
- `billbot run` from the CLI → nothing is uploaded;
- a failing render is retried, never touches the invoice number, and the PDF is delivered once it renders.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from billing.money import fmt
from storage.models import AuditLog, BillingRun, Invoice
from tests.slack.desk import FINANCE, OPERATOR, PERIOD, Desk
from tests.slack.helpers import click, submit_reason

BILLED = ("autohaus-elbe", "fahrrad-nord", "optik-sued")  # above threshold, in advertiser order


def _audit(desk: Desk, action: str) -> list[AuditLog]:
    with desk.db.read() as s:
        return list(s.execute(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)).scalars())


def _force_the_skip(desk: Desk) -> Any:
    exc = desk.below_threshold()
    click(desk, FINANCE, exc.id, "force")  # type: ignore[arg-type]
    submit_reason(desk, FINANCE, "Client asked for the February invoice now")  # type: ignore[arg-type]
    return desk.below_threshold()


def _cli_run(desk: Desk) -> None:
    from bot.cli import app

    r = CliRunner().invoke(app, ["run", "--period", PERIOD, "--json"])
    assert r.exit_code == 0, r.output


def _assert_pdf_of(upload: dict[str, Any], inv: Invoice) -> None:
    assert upload["filename"] == f"{inv.number}.pdf"
    assert upload["data"].startswith(b"%PDF")
    assert upload["length"] == len(upload["data"])
    assert hashlib.sha256(upload["data"]).hexdigest() == inv.pdf_sha256
    assert upload["title"].startswith(f"{inv.number} · ") and upload["title"].endswith(f" · {fmt(inv.gross, 'EUR')} EUR")


def test_a_run_from_slack_uploads_capped_pdfs_into_its_thread_and_a_force_into_the_exceptions_thread(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.slack.invoice_pdfs.RUN_UPLOAD_CAP", 2)
    assert desk.as_user(OPERATOR).command(f"run {PERIOD}").status == 200
    desk.wait()
    channel, ts = desk.run_message()
    invoices = desk.invoices()
    assert sorted(invoices) == sorted(BILLED)
    run_invoices = [invoices[a] for a in BILLED]
    run_invoices.sort(key=lambda i: i.id)

    # the cap: the first two PDFs in the run's thread, the third only named
    uploads = desk.uploads()
    assert [(u["channel"], u["thread_ts"]) for u in uploads] == [(channel, ts)] * 2
    for upload, inv in zip(uploads, run_invoices[:2], strict=True):
        _assert_pdf_of(upload, inv)
    third = run_invoices[2].number
    assert desk.thread_texts(channel, ts) == [f"… and 1 more — `billbot invoices pdf NUMBER -o FILE` ({third})"]
    with desk.db.read() as s:
        [run] = s.execute(select(BillingRun)).scalars().all()
        assert (run.channel, run.message_ts) == (channel, ts)
    assert [json.loads(a.payload)["number"] for a in _audit(desk, "invoice.delivered")] == [
        i.number for i in run_invoices[:2]]

    # a Force on the skip: the new invoice carries the run's id, yet goes to the exception's thread
    exc = _force_the_skip(desk)
    assert exc.state == "forced"
    forced = desk.invoices()["kiosk-alster"]
    assert forced.billing_run_id == run.id and forced.net == Decimal("180.00")
    uploads = desk.uploads()
    assert len(uploads) == 3
    assert (uploads[2]["channel"], uploads[2]["thread_ts"]) == (exc.channel, exc.message_ts)
    _assert_pdf_of(uploads[2], forced)
    assert f"Invoice(s) created: {forced.number}" in desk.thread_texts(exc.channel, exc.message_ts)
    assert len(desk.thread_texts(channel, ts)) == 1  # nothing more in the run's thread


def test_a_cli_run_uploads_nothing_and_a_force_from_slack_lands_in_the_exceptions_thread(desk: Desk) -> None:
    _cli_run(desk)
    invoices = desk.invoices()
    assert sorted(invoices) == sorted(BILLED)
    # rendered after commit like any invoice, but finalized from the CLI: no thread to upload into
    assert {i.pdf_state for i in invoices.values()} == {"done"}
    assert desk.api.calls_to("files.getUploadURLExternal") == []
    assert desk.api.calls_to("files.completeUploadExternal") == []
    assert _audit(desk, "invoice.delivered") == []

    exc = _force_the_skip(desk)
    forced = desk.invoices()["kiosk-alster"]
    [upload] = desk.uploads()  # the Force came from Slack: only its invoice is delivered
    assert (upload["channel"], upload["thread_ts"]) == (exc.channel, exc.message_ts)
    _assert_pdf_of(upload, forced)
    [delivered] = _audit(desk, "invoice.delivered")
    assert delivered.subject_id == str(forced.id) and json.loads(delivered.payload)["thread_ts"] == exc.message_ts

    # delivering again (a re-render, a retried job) uploads nothing more
    from bot import context
    from bot.slack.client import get_client
    from bot.slack.invoice_pdfs import upload_invoice_pdf as deliver_invoice
    from bot.workflows.documents import render_invoice_pdf

    render_invoice_pdf(desk.db, forced.id, renderer=context.pdf_renderer(), out_dir=context.documents_dir(),
                       key=context.get_key(), force=True)
    assert deliver_invoice(desk.db, forced.id, client=get_client(), key=context.get_key()) is False
    assert len(desk.uploads()) == 1


def test_a_failing_render_is_retried_and_never_touches_the_number(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.documents.pdf as documents

    _cli_run(desk)
    numbers = sorted(i.number for i in desk.invoices().values())
    real = documents.render_pdf
    failures = {"left": 1}

    def flaky(doc: Any) -> Any:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OSError("disk full")
        return real(doc)

    monkeypatch.setattr(documents, "render_pdf", flaky)
    exc = _force_the_skip(desk)
    assert exc.state == "forced"
    forced = desk.invoices()["kiosk-alster"]
    # the number was taken in the finalizing transaction, the next one of the series, whatever the renderer did
    prefix, last = numbers[-1].rsplit("-", 1)
    assert forced.number == f"{prefix}-{int(last) + 1:0{len(last)}d}"
    assert (forced.pdf_state, forced.pdf_attempts, forced.pdf_error) == ("done", 2, None)
    [failed] = _audit(desk, "invoice.pdf_failed")
    assert failed.subject_id == str(forced.id) and "disk full" in json.loads(failed.payload)["error"]
    [upload] = desk.uploads()
    _assert_pdf_of(upload, forced)
    assert upload["thread_ts"] == exc.message_ts


def test_a_render_that_keeps_failing_leaves_the_invoice_numbered_and_delivers_once_it_renders(
        desk: Desk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bot.documents.pdf as documents

    _cli_run(desk)
    real = documents.render_pdf

    def broken(doc: Any) -> Any:
        raise OSError("fonts missing")

    monkeypatch.setattr(documents, "render_pdf", broken)
    exc = _force_the_skip(desk)
    forced = desk.invoices()["kiosk-alster"]
    assert exc.state == "forced" and forced.number  # the decision and the invoice stand
    assert (forced.pdf_state, forced.pdf_attempts) == ("failed", 3)
    assert desk.uploads() == []
    assert f"Invoice(s) created: {forced.number}" in desk.thread_texts(exc.channel, exc.message_ts)

    # fixed: `billbot invoices pdf NUMBER -o FILE` renders it, and the waiting delivery goes out
    monkeypatch.setattr(documents, "render_pdf", real)
    from bot.cli import app

    r = CliRunner().invoke(app, ["invoices", "pdf", forced.number, "-o", str(tmp_path / "out.pdf")])
    assert r.exit_code == 0, r.output
    [upload] = desk.uploads()
    _assert_pdf_of(upload, desk.invoices()["kiosk-alster"])
    assert (upload["channel"], upload["thread_ts"]) == (exc.channel, exc.message_ts)


def test_embedded_mode_renders_in_the_process_pool_and_the_rendering_process_delivers(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `billbot serve` runs by default: `/billing run` in the job thread pool, each PDF a `render_pdf` job in
    the process pool. The child that renders uploads (its own Slack client, from the settings it inherited)."""
    from bot import jobs

    monkeypatch.delenv("BILLBOT_JOBS")
    monkeypatch.setattr("bot.slack.invoice_pdfs.RUN_UPLOAD_CAP", 2)
    try:
        assert desk.as_user(OPERATOR).command(f"run {PERIOD}").status == 200
        desk.api.wait_for("files.completeUploadExternal", 2, timeout=60)
        channel, ts = desk.run_message()
        assert desk.api.wait_for("chat.postMessage", where=lambda c: c.params.get("thread_ts") == ts)
        exc = _force_the_skip(desk)
        desk.api.wait_for("files.completeUploadExternal", 3, timeout=60)
        jobs.shutdown(wait=True)  # every render job finished: nothing more may arrive
    finally:
        jobs.shutdown(wait=True)
    invoices = desk.invoices()
    assert {i.pdf_state for i in invoices.values()} == {"done"}
    by_number = {i.number: i for i in invoices.values()}
    uploads = desk.uploads()
    assert len(uploads) == 3
    first_two = sorted((i for a, i in invoices.items() if a in BILLED), key=lambda i: i.id)[:2]
    assert sorted(u["filename"] for u in uploads if u["thread_ts"] == ts) == sorted(f"{i.number}.pdf"
                                                                                     for i in first_two)
    [forced] = [u for u in uploads if u["thread_ts"] == exc.message_ts]
    assert forced["filename"] == f"{invoices['kiosk-alster'].number}.pdf"
    for u in uploads:
        _assert_pdf_of(u, by_number[u["filename"].removesuffix(".pdf")])


def test_a_failed_upload_waits_and_goes_out_on_the_next_try(desk: Desk) -> None:
    from bot import context
    from bot.slack.client import get_client
    from bot.slack.invoice_pdfs import upload_invoice_pdf as deliver_invoice
    from bot.workflows.invoice_uploads import Target, set_targets, target_of

    _cli_run(desk)
    inv = desk.invoices()["autohaus-elbe"]
    with desk.db.transaction() as s:
        assert set_targets(s, [inv.id], Target("CBILLING", "1700000000.000100", "run", 1)) == [inv.id]
        assert set_targets(s, [inv.id], Target("COTHER", "1", "exception")) == []  # one thread per invoice
    desk.api.fail_next("files.completeUploadExternal", status=500, times=3)  # the client's retries run out
    assert deliver_invoice(desk.db, inv.id, client=get_client(), key=context.get_key()) is False
    target = target_of(desk.db, inv.id)
    assert target is not None and target["state"] == "waiting" and "fatal_error" in target["error"]
    assert len(desk.api.calls_to("files.completeUploadExternal#fault")) == 3
    assert _audit(desk, "invoice.delivered") == []

    assert deliver_invoice(desk.db, inv.id, client=get_client(), key=context.get_key()) is True
    [done] = desk.api.calls_to("files.completeUploadExternal")
    assert (done.params["channel_id"], done.params["thread_ts"]) == ("CBILLING", "1700000000.000100")
    assert target_of(desk.db, inv.id)["state"] == "sent"  # type: ignore[index]
    assert deliver_invoice(desk.db, inv.id, client=get_client(), key=context.get_key()) is False
    assert len(desk.api.calls_to("files.completeUploadExternal")) == 1


def test_a_failed_pdf_says_why_in_the_runs_thread_and_to_managers_and_an_operator_retries_it(
        desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PDF that cannot be rendered is told — with its reason — in the thread of the `/billing run` it came
    from and in the managers' channel, each with a Retry PDF button; only an operator's click renders it again."""
    import bot.documents.pdf as documents

    real = documents.render_pdf

    def broken(doc: Any) -> Any:
        raise OSError("fonts missing")

    monkeypatch.setattr(documents, "render_pdf", broken)
    assert desk.as_user(OPERATOR).command(f"run {PERIOD}").status == 200
    desk.wait()
    channel, ts = desk.run_message()
    failed = {i.number: i for i in desk.invoices().values() if i.pdf_state == "failed"}
    assert len(failed) == len(BILLED)
    posts = [c.params for c in desk.api.calls_to("chat.postMessage") if "PDF of" in str(c.params.get("text"))]
    in_thread = [p for p in posts if p.get("channel") == channel and p.get("thread_ts") == ts]
    to_managers = [p for p in posts if p.get("channel") == "billing-managers"]
    assert len(in_thread) == len(to_managers) == len(BILLED)
    for p in in_thread + to_managers:
        number = str(p["text"]).split("PDF of ")[1].split(" ")[0]
        assert number in failed and str(p["text"]).endswith("failed: OSError: fonts missing")
    blocks = json.loads(to_managers[0]["blocks"]) if isinstance(to_managers[0]["blocks"], str) \
        else to_managers[0]["blocks"]
    [button] = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == "pdf_retry" and button["text"]["text"] == "Retry PDF"
    invoice_id = int(button["value"])

    monkeypatch.setattr(documents, "render_pdf", real)
    desk.as_user(FINANCE).click("pdf_retry", button["value"], channel="billing-managers", message_ts="1.0")
    desk.wait()
    with desk.db.read() as s:
        assert s.get(Invoice, invoice_id).pdf_state == "failed"  # type: ignore[union-attr]
    desk.as_user(OPERATOR).click("pdf_retry", button["value"], channel="billing-managers", message_ts="1.0")
    desk.wait()
    with desk.db.read() as s:
        inv = s.get(Invoice, invoice_id)
        assert inv is not None and inv.pdf_state == "done"
    ephemeral = [str(c.params.get("text")) for c in desk.api.calls_to("chat.postEphemeral")]
    assert ":no_entry: Only operators may retry a PDF." in ephemeral
    assert [a.actor for a in _audit(desk, "invoice.pdf_retry")] == [OPERATOR]


def test_invoices_pdf_retry_failed_renders_every_failed_pdf_again(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.documents.pdf as documents
    from bot.cli import app

    real = documents.render_pdf

    def broken(doc: Any) -> Any:
        raise OSError("fonts missing")

    monkeypatch.setattr(documents, "render_pdf", broken)
    _cli_run(desk)
    for inv in desk.invoices().values():  # the CLI leaves rendering to serve's sweep: render them here
        with pytest.raises(Exception, match="fonts missing"):
            from bot import context
            from bot.workflows.documents import render_invoice_pdf

            render_invoice_pdf(desk.db, inv.id, renderer=context.pdf_renderer(), out_dir=context.documents_dir(),
                               retry_delay=0)
    assert {i.pdf_state for i in desk.invoices().values()} == {"failed"}
    r = CliRunner().invoke(app, ["invoices", "pdf", "--retry-failed", "--json"])
    assert r.exit_code == 1 and {x["error"] for x in json.loads(r.stdout)} == {
        f"invoice {n}: PDF not rendered after 3 attempts (OSError: fonts missing)"
        for n in (i.number for i in desk.invoices().values())}
    monkeypatch.setattr(documents, "render_pdf", real)
    r = CliRunner().invoke(app, ["invoices", "pdf", "--retry-failed", "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(x["number"] for x in json.loads(r.stdout)) == sorted(i.number for i in desk.invoices().values())
    assert {i.pdf_state for i in desk.invoices().values()} == {"done"}
    r = CliRunner().invoke(app, ["invoices", "pdf", "--retry-failed"])
    assert r.exit_code == 0 and "0 failed PDF(s) retried" in r.stdout
