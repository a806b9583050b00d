"""Issue 17 in headless Chromium: the sandbox page with billbot's real app behind it. A bad
``/billing run 2026-13`` answers only its sender with the usage line; the run report leads with totals;
the approver's App Home; the managers' digest with its chart inline. Screenshots:
test-artifacts/sandbox/surfaces-*.png."""

from __future__ import annotations

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


def test_run_report_home_and_digest_in_the_browser(session: Any, db: Database, page: Page, shots: Any) -> None:
    page.goto(f"{session.url}?user={OPERATOR}&channel=billing-exceptions")
    msgs = page.get_by_test_id("messages")

    # a period that does not exist: told to the operator alone, with the usage line; nothing is started
    page.get_by_test_id("composer").fill("/billing run 2026-13")
    page.get_by_test_id("composer").press("Enter")
    refusal = msgs.get_by_test_id("ephemeral").filter(has_text="2026-13")
    expect(refusal).to_contain_text("Usage: /billing run [period] [advertiser…]")
    expect(msgs.get_by_test_id("message").filter(has_text="Billing run 2026-13")).to_have_count(0)
    page.screenshot(path=str(shots / "surfaces-1-bad-period.png"))

    # the run report: totals first
    page.get_by_test_id("composer").fill(f"/billing run {PERIOD}")
    page.get_by_test_id("composer").press("Enter")
    run = msgs.get_by_test_id("message").filter(has_text=f"Billing run {PERIOD}")
    expect(run).to_contain_text("done", timeout=30_000)
    expect(run).to_contain_text("Invoices created")
    expect(run).to_contain_text("Net invoiced")
    expect(run).to_contain_text("Skipped below threshold")
    page.screenshot(path=str(shots / "surfaces-2-run-report.png"))

    # the approver's desk
    be(page, APPROVER)
    page.get_by_test_id("app-billbot").click()
    home = page.get_by_test_id("home")
    expect(home).to_contain_text("Waiting for you (")
    expect(home).to_contain_text("Waiting for others (")
    expect(home).to_contain_text("Last billing runs")
    expect(home).to_contain_text(f"Run 1 {PERIOD}")
    page.screenshot(path=str(shots / "surfaces-3-home.png"), full_page=True)

    # the digest, posted through the sandbox's Web API, with its chart inline
    from bot import context
    from bot.slack.client import get_client
    from bot.slack.digest import send_digest

    res = send_digest(db, client=get_client(), key=context.get_key(), channel="billing-managers")
    assert res.sent and res.problems == []
    be(page, FINANCE)
    page.get_by_test_id("channel-billing-managers").click()
    digest = msgs.get_by_test_id("message").filter(has_text="Billing digest")
    expect(digest).to_contain_text("Open exceptions:")
    expect(digest).to_contain_text("Last 7 days:")
    chart = digest.locator(".bk-image img")
    expect(chart).to_have_count(1)
    chart.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=chart.element_handle())
    assert chart.evaluate("img => img.naturalWidth") == 640  # the PNG billbot rendered
    page.screenshot(path=str(shots / "surfaces-4-digest.png"), full_page=True)
