"""Issue 21 in headless Chromium: the sandbox page, billbot's real app behind it, the sandbox scenario plus a
checklist for variances. The approver's Approve opens a modal with the checklist; it cannot be submitted
until every item is ticked (billbot answers ``response_action: errors`` naming the missing one); the signed
decision lists the items. Screenshots: test-artifacts/sandbox/e2e-checklist-*.png.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from storage.db import Database
from storage.models import AuditLog
from tests.sandbox import flows
from tests.sandbox.scenario import APPROVER, PERIOD

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_pdf_rendering")]

ITEMS = ["Checked the third-party report for the same days", "Make-good agreed with the client?"]


@pytest.fixture
def session(db: Database, key: Any, tmp_path: Any) -> Iterator[Any]:
    from bot import context, jobs
    from bot.sandbox.session import start_session
    from bot.workflows.preinvoices import create_preinvoices
    from storage.loader import load_scenario
    from tests.sandbox.scenario import scenario

    load_scenario(db, {**scenario(), "checklists": [{"kind": "variance", "items": ITEMS}]})
    create_preinvoices(db, period=PERIOD, actor="cli", key=context.get_key(), now=datetime.now(UTC))
    s = start_session(sandbox_db=tmp_path / "sandbox.db")
    try:
        yield s
    finally:
        s.stop()
        jobs.shutdown(wait=True)


def test_approve_modal_with_a_checklist_is_refused_until_every_item_is_ticked(
    session: Any, db: Database, page: Page, shots: Any
) -> None:
    page.goto(f"{session.url}?user={APPROVER}&channel=billing-exceptions")
    variance = page.get_by_test_id("messages").get_by_test_id("message").filter(
        has_text="Variance — Garage du Rhône SARL")
    variance.get_by_test_id("button-decide_approve").click()
    expect(page.get_by_test_id("confirm-dialog")).to_have_count(0)  # the modal is the confirmation
    modal = page.get_by_test_id("modal")
    expect(modal).to_be_visible(timeout=15_000)
    choices = modal.get_by_test_id("choices-checklist_input")
    expect(choices).to_contain_text(ITEMS[0])
    expect(choices).to_contain_text(ITEMS[1])

    # one item ticked: billbot refuses the submission, naming the other; the modal stays open
    choices.locator("input[type=checkbox]").nth(0).check()
    page.get_by_test_id("modal-submit").click()
    error = modal.get_by_test_id("error-checklist")
    expect(error).to_contain_text("Make-good agreed with the client?", timeout=15_000)
    expect(modal).to_be_visible()
    page.screenshot(path=str(shots / "e2e-checklist-1-refused.png"))
    assert flows.exception_row(db, "variance").state == "pending"

    # both ticked: approved, and the signed decision lists them
    choices.locator("input[type=checkbox]").nth(1).check()
    page.get_by_test_id("modal-submit").click()
    expect(modal).to_have_count(0, timeout=15_000)
    expect(variance).to_contain_text("Approved", timeout=15_000)
    variance.get_by_test_id("thread-link").click()
    expect(page.get_by_test_id("thread")).to_contain_text("Checklist:", timeout=15_000)
    page.screenshot(path=str(shots / "e2e-checklist-2-approved.png"))

    row = flows.exception_row(db, "variance")
    assert (row.state, row.decided_by) == ("approved", APPROVER)
    with db.read() as s:
        [entry] = s.execute(select(AuditLog).where(AuditLog.action == "decision.recorded")).scalars()
    assert [c["item"] for c in json.loads(entry.payload)["checklist"]] == ITEMS and entry.signature
