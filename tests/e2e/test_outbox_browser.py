"""The sandbox's Outbox in headless Chromium (issue 19): an invoice mailed the way `make run` mails it lands in
the sandbox's local SMTP server; the workspace links to the Outbox page, which shows the mail — recipients,
subject, the PDF attachment and the body. Screenshot: test-artifacts/sandbox/e2e-outbox.png."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from storage.db import Database
from tests.sandbox.outbox_mail import MAIL_CC, MAIL_TO, mail_an_invoice
from tests.sandbox.scenario import OPERATOR

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_pdf_rendering")]


@pytest.fixture
def session(db: Database, key: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from bot import jobs
    from bot.sandbox.session import start_session

    monkeypatch.delenv("SMTP_URL", raising=False)
    monkeypatch.delenv("MAIL_FROM", raising=False)
    s = start_session(sandbox_db=tmp_path / "sandbox.db")
    try:
        yield s
    finally:
        s.stop()
        jobs.shutdown(wait=True)


def test_the_outbox_page_shows_the_mail_billbot_sent(session: Any, db: Database, page: Page, shots: Any) -> None:
    mail_an_invoice(db)
    page.goto(f"{session.url}?user={OPERATOR}&channel=billing-exceptions")
    link = page.get_by_test_id("outbox-link")
    expect(link).to_have_attribute("href", "/outbox")
    page.goto(session.outbox_url)
    expect(page.get_by_test_id("outbox-count")).to_have_text("1 mail(s)")
    mail = page.get_by_test_id("outbox-mail")
    expect(mail).to_have_count(1)
    expect(mail.get_by_test_id("outbox-subject")).to_contain_text("INV-2026-000001")
    expect(mail.get_by_test_id("outbox-to")).to_have_text(MAIL_TO)
    expect(mail.get_by_test_id("outbox-cc")).to_have_text(MAIL_CC)
    expect(mail.get_by_test_id("outbox-attachment")).to_have_text("INV-2026-000001.pdf")
    expect(mail.get_by_test_id("outbox-body")).to_contain_text("Autohaus Elbe KG")
    page.screenshot(path=str(shots / "e2e-outbox.png"), full_page=True)
    page.get_by_test_id("back-to-workspace").click()
    expect(page.get_by_test_id("user-picker")).to_be_visible()
