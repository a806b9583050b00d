"""The sandbox's Outbox (issue 19): `billbot serve` without Slack credentials starts a local SMTP server with
the sandbox, points SMTP_URL at it, and shows the mails billbot sent on the Outbox page; it stops with the
sandbox. A user's own SMTP_URL wins (no local server)."""

from __future__ import annotations

import os
import smtplib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from storage.db import Database
from tests.sandbox.outbox_mail import MAIL_CC, MAIL_TO, mail_an_invoice


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


def test_an_invoice_mail_shows_on_the_outbox_page(session: Any, db: Database) -> None:
    assert session.outbox is not None and session.outbox.running
    assert os.environ["SMTP_URL"] == session.outbox.url  # billbot mails through the sandbox's server
    page = httpx.get(session.outbox_url, timeout=10)
    assert page.status_code == 200 and "No mails yet" in page.text

    mail_an_invoice(db)

    page = httpx.get(session.outbox_url, timeout=10)
    assert page.status_code == 200
    assert "1 mail(s)" in page.text
    assert "INV-2026-000001" in page.text  # subject and attachment name
    assert MAIL_TO in page.text and MAIL_CC in page.text
    assert "billing@sandbox.localhost" in page.text  # MAIL_FROM was unset: the sandbox's
    mails = httpx.get(f"{session.url}sandbox/outbox", timeout=10).json()["mails"]
    assert len(mails) == 1
    mail = mails[0]
    assert mail["to"] == [MAIL_TO] and mail["cc"] == [MAIL_CC]
    assert "INV-2026-000001" in mail["subject"] and mail["date"]
    assert mail["body"].strip()
    [pdf] = mail["attachments"]
    assert pdf["name"].endswith(".pdf") and pdf["content_type"] == "application/pdf" and pdf["size"] > 1000
    data = httpx.get(f"{session.url}outbox/{mail['id']}/0", timeout=10)
    assert data.status_code == 200 and data.content.startswith(b"%PDF") and len(data.content) == pdf["size"]
    assert httpx.get(f"{session.url}outbox/{mail['id']}/7", timeout=10).status_code == 404

    # the mail is kept under the var dir: a later session (a second `make run`) still shows it
    from bot import context

    assert list((context.settings().var_dir / "outbox").glob("*.eml"))


def test_the_outbox_stops_with_the_sandbox_and_the_environment_is_restored(
        db: Database, key: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.sandbox.session import start_session

    monkeypatch.delenv("SMTP_URL", raising=False)
    monkeypatch.setenv("MAIL_FROM", "Northwind Billing <billing@northwind.example>")
    s = start_session(sandbox_db=tmp_path / "sandbox.db")
    port = s.outbox.port
    smtplib.SMTP("127.0.0.1", port, timeout=5).quit()  # it answers while the sandbox runs
    assert os.environ["MAIL_FROM"] == "Northwind Billing <billing@northwind.example>"  # the user's is kept
    s.stop()
    assert not s.outbox.running
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", port, timeout=5)
    assert "SMTP_URL" not in os.environ


def test_a_users_own_smtp_url_wins(db: Database, key: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.sandbox.session import start_session

    monkeypatch.setenv("SMTP_URL", "smtp://mail.example:25")
    s = start_session(sandbox_db=tmp_path / "sandbox.db")
    try:
        assert s.outbox is None and s.outbox_url is None
        assert os.environ["SMTP_URL"] == "smtp://mail.example:25"
        page = httpx.get(f"{s.url}outbox", timeout=10)
        assert page.status_code == 200 and "SMTP_URL was set" in page.text
    finally:
        s.stop()
    assert os.environ["SMTP_URL"] == "smtp://mail.example:25"
