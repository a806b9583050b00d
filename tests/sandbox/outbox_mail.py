"""An invoice mailed the way `make run` mails it (for the Outbox tests): the sandbox scenario with Autohaus
Elbe's invoice addresses, billed for February, its PDF rendered by the job the sweep queues, and the mail
queued by `invoice.rendered` because SMTP_URL points at the sandbox's Outbox."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from storage.db import Database
from tests.sandbox.scenario import OPERATOR, PERIOD, scenario

MAIL_TO = "rechnung@autohaus-elbe.example"
MAIL_CC = "buchhaltung@autohaus-elbe.example"


def mail_an_invoice(db: Database, *, timeout: float = 60.0) -> int:
    """Bill February and wait until its invoice's mail is sent; returns the invoice id."""
    from bot import context, jobs
    from bot.tasks.documents import RENDER_PDF
    from bot.workflows.billing_run import run_billing
    from bot.workflows.dispatch import dispatch_states
    from bot.workflows.preinvoices import create_preinvoices
    from storage.loader import load_scenario

    data = scenario()
    for a in data["advertisers"]:
        if a["id"] == "autohaus-elbe":
            a.update(invoice_emails=[MAIL_TO], invoice_cc=[MAIL_CC], locale="de")
    load_scenario(db, data)
    now = datetime.now(UTC)
    create_preinvoices(db, period=PERIOD, actor="cli", key=context.get_key(), now=now)
    run = run_billing(db, period=PERIOD, actor=OPERATOR, key=context.get_key(), today=now.date(), now=now)
    assert run.created == ["INV-2026-000001"]
    invoice_id = run.invoice_ids[0]
    jobs.submit(RENDER_PDF, invoice_id=invoice_id)
    assert jobs.wait_idle(timeout)
    deadline = time.monotonic() + timeout  # the mail job runs where the PDF was rendered (its own process)
    state = None
    while time.monotonic() < deadline:
        with db.read() as s:
            state = dispatch_states(s, [invoice_id]).get(invoice_id)
        if state in ("sent", "failed"):
            break
        time.sleep(0.2)
    assert state == "sent", f"the invoice mail is {state}"
    return invoice_id
