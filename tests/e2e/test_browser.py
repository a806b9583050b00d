"""End to end in headless Chromium: the sandbox page, billbot's real app behind it (wired as `billbot serve`
wires it without Slack credentials), a small scenario with a variance and a below-threshold advertiser.

An operator runs `/billing run 2026-02`; an approver approves the variance; the approver's Force on the
below-threshold skip is refused; a finance manager forces it with a reason; the messages update in place and
the invoice shows up in the thread. Screenshots of each step: test-artifacts/sandbox/e2e-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from storage.db import Database
from tests.sandbox import flows
from tests.sandbox.scenario import APPROVER, FINANCE, OPERATOR, PERIOD

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_pdf_rendering")]


@pytest.fixture
def session(db: Database, key: Any, tmp_path: Any) -> Iterator[Any]:
    from bot import jobs
    from bot.sandbox.session import start_session

    flows.prepare(db)
    s = start_session(sandbox_db=tmp_path / "sandbox.db")
    try:
        yield s
    finally:
        s.stop()
        jobs.shutdown(wait=True)


def be(page: Page, user: str) -> None:
    page.get_by_test_id("user-picker").select_option(user)
    expect(page.get_by_test_id("user-picker")).to_have_value(user)


def test_billing_run_and_decisions_in_the_browser(session: Any, db: Database, page: Page, shots: Any) -> None:
    assert len(session.posted) == 1  # the variance found when the pre-invoices were made, posted at start
    page.goto(f"{session.url}?user={OPERATOR}&channel=billing-exceptions")
    msgs = page.get_by_test_id("messages")
    variance = msgs.get_by_test_id("message").filter(has_text="Variance — Garage du Rhône SARL")
    # the finding leads in words and figures; the buttons say what each choice bills
    expect(variance).to_contain_text(re.compile(r"40 clicks delivered vs [\d,]+ booked, −\d+ %"))
    expect(variance.get_by_test_id("button-decide_approve")).to_have_text(re.compile(r"^Bill [\d,]+\.\d\d € \(delivered\)$"))
    expect(variance.get_by_test_id("button-decide_reject")).to_have_text("Hold for correction")
    expect(variance.get_by_test_id("button-decide_force")).to_have_text(re.compile(r"^Bill [\d,]+\.\d\d € \(booked\)$"))
    expect(variance).not_to_contain_text("Amount at stake")
    variance.screenshot(path=str(shots / "e2e-0-variance-message.png"))
    page.screenshot(path=str(shots / "e2e-1-variance-waiting.png"))
    # its Details modal, in plain language
    variance.get_by_test_id("button-exception_details").click()
    details = page.get_by_test_id("modal")
    expect(details).to_contain_text("Booked for the period")
    expect(details).to_contain_text("Download evidence")
    expect(details).not_to_contain_text("delivered_vs_booked")
    page.screenshot(path=str(shots / "e2e-0-variance-details.png"))
    page.get_by_test_id("modal-close").click()
    expect(details).to_have_count(0)

    # 1. the operator runs the billing for the demo period
    page.get_by_test_id("composer").fill(f"/billing run {PERIOD}")
    page.get_by_test_id("composer").press("Enter")
    run = msgs.get_by_test_id("message").filter(has_text=f"Billing run {PERIOD}")
    expect(run).to_contain_text("done", timeout=30_000)
    expect(run).to_contain_text("Document INV-2026-000001 created for Autohaus Elbe KG")
    expect(run).to_contain_text("Skipped items with a total of 180.00 EUR for Kiosk Alster (threshold 250.00 EUR)")
    below = msgs.get_by_test_id("message").filter(has_text="Below billing threshold — Kiosk Alster")
    expect(below.get_by_test_id("button-decide_force")).to_be_visible()
    page.screenshot(path=str(shots / "e2e-2-run-done.png"))

    # 2. an approver approves the variance (through the confirm dialog)
    be(page, APPROVER)
    expect(page.get_by_test_id("user-roles")).to_have_text("approver")
    variance.get_by_test_id("button-decide_approve").click()
    expect(page.get_by_test_id("confirm-dialog")).to_contain_text("Bill the delivered (computed) amount")
    page.screenshot(path=str(shots / "e2e-3-approve-confirm.png"))
    page.get_by_test_id("confirm-ok").click()
    expect(variance).to_contain_text("Approved", timeout=15_000)
    expect(variance.get_by_test_id("button-decide_approve")).to_have_count(0)
    expect(variance.get_by_test_id("edited")).to_have_count(1)
    page.screenshot(path=str(shots / "e2e-4-variance-approved.png"))

    # 3. the approver's Force on the below-threshold skip is refused
    below.get_by_test_id("button-decide_force").click()
    if page.get_by_test_id("confirm-dialog").count():
        page.get_by_test_id("confirm-ok").click()
    refusal = msgs.get_by_test_id("ephemeral").filter(has_text="Invoice now needs a finance manager")
    expect(refusal).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id("modal")).to_have_count(0)
    expect(below.get_by_test_id("button-decide_force")).to_be_visible()
    page.screenshot(path=str(shots / "e2e-5-approver-force-refused.png"))

    # 4. the finance manager forces it, with a reason
    be(page, FINANCE)
    expect(msgs.get_by_test_id("ephemeral")).to_have_count(0)  # Arne's refusal was his alone
    below.get_by_test_id("button-decide_force").click()
    if page.get_by_test_id("confirm-dialog").count():
        page.get_by_test_id("confirm-ok").click()
    modal = page.get_by_test_id("modal")
    expect(modal).to_be_visible(timeout=15_000)
    modal.locator("textarea, input[type=text]").first.fill("Kiosk asked for the invoice now")
    page.screenshot(path=str(shots / "e2e-6-force-reason.png"))
    page.get_by_test_id("modal-submit").click()
    expect(modal).to_have_count(0, timeout=15_000)
    expect(below).to_contain_text("Forced", timeout=15_000)
    expect(below).to_contain_text("Kiosk asked for the invoice now")
    expect(below.get_by_test_id("button-decide_force")).to_have_count(0)
    page.screenshot(path=str(shots / "e2e-7-forced.png"))

    # 5. the invoice appears in the exception's thread
    below.get_by_test_id("thread-link").click()
    thread = page.get_by_test_id("thread")
    expect(thread).to_contain_text("INV-2026-000002", timeout=30_000)
    page.screenshot(path=str(shots / "e2e-8-invoice-in-thread.png"))

    assert flows.invoices(db) == {"autohaus-elbe": "INV-2026-000001", "kiosk-alster": "INV-2026-000002"}
    assert flows.exception_row(db, "variance").state == "approved"
    assert flows.exception_row(db, "below_threshold").decided_by == FINANCE
