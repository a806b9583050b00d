"""Invoices leave billbot by e-mail (issue 19, item 1), end to end: `/billing run` typed in Slack against
billbot's real WSGI app, jobs inline, and a real SMTP server (aiosmtpd) on 127.0.0.1.

The desk's February run bills three advertisers:
- Autohaus Elbe (locale de) → rechnung@ (to) and buchhaltung@ (cc); its mail server answers 451 twice first;
- Fahrrad Nord (locale en) → ap@, whose server refuses it for good (550): an exception message in Slack;
- Optik Süd has ``dispatch: none`` (downloads from a portal): no mail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import facturx
import pytest
from lxml import etree
from sqlalchemy import select
from typer.testing import CliRunner

from storage.models import AuditLog, InvoiceDispatch
from tests.fakes.smtp import SmtpServer
from tests.slack import desk as desk_module
from tests.slack.desk import EXC_CHANNEL, OPERATOR, PERIOD, Desk, open_desk
from tests.slack.desk import scenario as desk_scenario

ELBE_TO, ELBE_CC = "rechnung@autohaus-elbe.example", "buchhaltung@autohaus-elbe.example"
NORD_TO = "ap@fahrrad-nord.example"
MAIL_FROM = "Northwind Billing <billing@northwind.example>"


def _scenario() -> dict[str, Any]:
    sc = desk_scenario()
    by_id = {a["id"]: a for a in sc["advertisers"]}
    by_id["autohaus-elbe"].update(locale="de", invoice_emails=[ELBE_TO], invoice_cc=[ELBE_CC])
    by_id["fahrrad-nord"].update(locale="en", invoice_emails=[NORD_TO])
    by_id["optik-sued"].update(dispatch="none", email="office@optik-sued.example")
    return sc


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def mail_desk(db: Any, key: Any, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    monkeypatch.setenv("SMTP_URL", smtp.url)
    monkeypatch.setenv("MAIL_FROM", MAIL_FROM)
    monkeypatch.setenv("DISPATCH_RETRY_SECONDS", "0.01")
    monkeypatch.setattr(desk_module, "scenario", _scenario)
    with open_desk(db, key, monkeypatch) as d:
        yield d


def _cli(*args: str) -> Any:
    from bot.cli import app

    return CliRunner().invoke(app, list(args))


def test_a_run_mails_each_invoice_once_retries_451_and_tells_slack_about_550(
        mail_desk: Desk, smtp: SmtpServer) -> None:
    smtp.handler.answers[ELBE_TO] = ["451 4.3.0 greylisted, try again later", "451 4.3.0 greylisted, try again later"]
    smtp.handler.refuse[NORD_TO] = "550 5.1.1 mailbox unavailable"

    assert mail_desk.as_user(OPERATOR).command(f"run {PERIOD}").status == 200
    mail_desk.wait()
    invoices = mail_desk.invoices()
    elbe, nord, optik = invoices["autohaus-elbe"], invoices["fahrrad-nord"], invoices["optik-sued"]

    # one mail, Elbe's: the cc took it at once, the greylisted recipient after two 451s (retried alone, the
    # same Message-ID); Nord's was refused for good (a 550 is not retried); Optik's was never tried
    first, mail = smtp.received
    assert (first.rcpt_tos, mail.rcpt_tos) == ([ELBE_CC], [ELBE_TO])
    assert first.message["Message-ID"] == mail.message["Message-ID"]
    assert smtp.handler.rcpt_attempts.count(ELBE_TO) == 3 and smtp.handler.rcpt_attempts.count(ELBE_CC) == 1
    assert smtp.handler.rcpt_attempts.count(NORD_TO) == 1
    assert not any("optik" in a for a in smtp.handler.rcpt_attempts)
    assert mail.mail_from == "billing@northwind.example"
    msg = mail.message
    assert msg["Subject"] == f"Rechnung {elbe.number} von Northwind Media GmbH"
    assert msg["To"] == ELBE_TO and msg["Cc"] == ELBE_CC
    assert msg["Content-Language"] == "de"
    assert msg["Message-ID"] == f"<{elbe.number}.northwind-media@northwind.example>"
    body = msg.get_body(("plain",)).get_content()
    assert "anbei erhalten Sie unsere Rechnung" in body and f"{elbe.gross:.2f} EUR" in body
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == f"{elbe.number}.pdf"
    pdf = attachment.get_content()
    assert pdf.startswith(b"%PDF")
    name, xml = facturx.get_facturx_xml_from_pdf(pdf, check_xsd=True)
    tree = etree.fromstring(xml)
    assert name == "factur-x.xml"
    assert tree.xpath("//*[local-name()='ExchangedDocument']/*[local-name()='ID']")[0].text == elbe.number
    assert tree.xpath("//*[local-name()='GrandTotalAmount']")[0].text == f"{elbe.gross:.2f}"

    # states on the invoices, in `invoices list --json`
    with mail_desk.db.read() as s:
        rows = {r.invoice_id: r for r in s.execute(select(InvoiceDispatch)).scalars()}
        assert rows[elbe.id].state == "sent" and rows[elbe.id].attempts == 3 and rows[elbe.id].sends == 1
        assert rows[nord.id].state == "failed" and rows[nord.id].last_error.startswith("550")
        assert optik.id not in rows
        actions = [(a.action, a.subject_id) for a in s.execute(select(AuditLog).order_by(AuditLog.id)).scalars()
                   if a.action.startswith("invoice.dispatch")]
    assert actions.count(("invoice.dispatched", str(elbe.id))) == 1
    assert actions.count(("invoice.dispatch_failed", str(elbe.id))) == 2  # the two 451s, each audited
    listed = {i["number"]: i for i in json.loads(_cli("invoices", "list", "--json").stdout)}
    assert (listed[elbe.number]["dispatch_state"], listed[nord.number]["dispatch_state"],
            listed[optik.number]["dispatch_state"]) == ("sent", "failed", None)

    # the permanent failure is an exception message for the operators
    texts = [str(c.params.get("text")) for c in mail_desk.api.calls_to("chat.postMessage")
             if c.params.get("channel") == EXC_CHANNEL and "could not be delivered" in str(c.params.get("text"))]
    assert len(texts) == 1
    assert f"Invoice {nord.number} for Fahrrad Nord GmbH could not be delivered: 550" in texts[0]
    assert "mailbox unavailable" in texts[0] and f"billbot invoices send {nord.number} --resend" in texts[0]

    # a rerun (a re-rendered PDF queues the job again; the run itself bills nothing new) sends nothing new
    from bot import jobs

    assert mail_desk.as_user(OPERATOR).command(f"run {PERIOD}").status == 200
    mail_desk.wait()
    jobs.submit("dispatch", invoice_id=elbe.id).result()
    jobs.submit("dispatch", invoice_id=nord.id).result()  # failed: waits for a person's resend
    assert len(smtp.received) == 2
    r = _cli("invoices", "send", elbe.number)
    assert r.exit_code == 0 and "already sent" in r.output  # mails nothing
    assert len(smtp.received) == 2

    # an explicit resend after fixing the address: a new Message-ID that references the first
    smtp.handler.refuse.pop(NORD_TO)
    r = _cli("invoices", "send", nord.number, "--resend", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["state"] == "sent"
    r = _cli("invoices", "send", elbe.number, "--resend")
    assert r.exit_code == 0, r.output
    assert len(smtp.received) == 4
    assert smtp.received[2].rcpt_tos == [NORD_TO]
    again = smtp.received[3].message
    assert again["Message-ID"] == f"<{elbe.number}.r1.northwind-media@northwind.example>"
    assert again["References"] == f"<{elbe.number}.northwind-media@northwind.example>"


def test_sending_by_hand_needs_an_operator_and_a_mail_server(mail_desk: Desk, smtp: SmtpServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import context

    monkeypatch.setenv("SMTP_URL", "")
    context.reset()
    r = _cli("run", "--period", PERIOD, "--json")
    assert r.exit_code == 0, r.output
    number = json.loads(r.stdout)["created"][0]
    assert smtp.received == []  # SMTP_URL unset: nothing is mailed
    r = _cli("invoices", "send", number)
    assert r.exit_code == 2 and "SMTP_URL is not set" in r.output
    monkeypatch.setenv("SMTP_URL", smtp.url)
    context.reset()
    r = _cli("invoices", "send", number, "--as", "U03FINANCE")
    assert r.exit_code == 1 and "needs the admin or operator role" in r.output
    r = _cli("invoices", "send", number)
    assert r.exit_code == 0, r.output
    assert len(smtp.received) == 1


@pytest.mark.parametrize("tls", ["starttls", "smtps"])
def test_mail_goes_over_tls(db: Any, key: Any, tmp_path: Any, tls: str) -> None:
    """STARTTLS (required by the server) and SMTPS, the server's certificate checked against SMTP_CA_FILE."""
    from email.message import EmailMessage

    from bot.mail import SmtpSender
    from bot.workflows.dispatch import SendFailed

    with SmtpServer(tls=tls, cert_dir=tmp_path / "tls") as server:
        assert server.ca_file is not None
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = "hello", "billing@northwind.example", "a@b.example"
        msg.set_content("over TLS")
        SmtpSender.from_url(server.url, ca_file=str(server.ca_file)).send(
            msg, sender="billing@northwind.example", recipients=["a@b.example"])
        assert [m.rcpt_tos for m in server.received] == [["a@b.example"]]
        # an unknown certificate is not trusted: the mail is not handed over (and it is worth another try)
        with pytest.raises(SendFailed) as e:
            SmtpSender.from_url(server.url).send(msg, sender="billing@northwind.example", recipients=["a@b.example"])
        assert e.value.temporary and "CERTIFICATE_VERIFY_FAILED" in e.value.message
        assert len(server.received) == 1


def test_a_mail_being_sent_is_not_claimed_twice_and_a_dead_senders_claim_is_taken_over(
        mail_desk: Desk, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Two processes mailing the same invoice (e.g. `invoices send` rendering the PDF inline, whose
    `invoice.rendered` queues the dispatch job too): the second finds the claim and sends nothing. A claim
    older than the lease (its sender died) is listed by the sweep and taken over."""
    from datetime import UTC, datetime, timedelta

    from bot import context
    from bot.mail import sender_from_settings
    from bot.workflows.dispatch import SENDING_LEASE, DispatchOutcome, dispatch_invoice, stalled_dispatches

    monkeypatch.setenv("SMTP_URL", "")
    context.reset()
    r = _cli("run", "--period", PERIOD, "--json")
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("SMTP_URL", smtp.url)
    context.reset()
    db = context.get_db()
    elbe = mail_desk.invoices()["autohaus-elbe"]
    real = sender_from_settings()
    assert real is not None
    inner: list[DispatchOutcome] = []

    def mail(invoice_id: int, sender: Any, now: datetime) -> DispatchOutcome:
        return dispatch_invoice(db, invoice_id, sender=sender, renderer=context.pdf_renderer(), out_dir=tmp_path,
                                mail_from=MAIL_FROM, key=context.get_key(), retry_delay=0.0, now=lambda: now)

    class RacedSender:
        def send(self, msg: Any, *, sender: str, recipients: list[str]) -> dict[str, str]:
            inner.append(mail(elbe.id, real, datetime.now(UTC)))  # a second process, while this one sends
            return real.send(msg, sender=sender, recipients=recipients)

    outcome = mail(elbe.id, RacedSender(), datetime.now(UTC))
    assert outcome.state == "sent"
    assert [o.state for o in inner] == ["skipped"] and "being sent since" in (inner[0].note or "")
    assert [sorted(m.rcpt_tos) for m in smtp.received] == [sorted([ELBE_TO, ELBE_CC])]  # one mail, once

    # a sender that died after its claim: not listed within the lease, listed and taken over after it
    nord = mail_desk.invoices()["fahrrad-nord"]
    with db.transaction() as s:
        s.add(InvoiceDispatch(invoice_id=nord.id, state="queued", message_id="<x@y>", recipients={}, attempts=0,
                              sends=0, queued_at=datetime.now(UTC), updated_at=datetime.now(UTC)))
    assert stalled_dispatches(db, now=datetime.now(UTC)) == []
    later = datetime.now(UTC) + SENDING_LEASE + timedelta(minutes=1)
    assert stalled_dispatches(db, now=later) == [nord.id]
    assert mail(nord.id, real, later).state == "sent"
    assert stalled_dispatches(db, now=later) == []


def test_every_unsent_invoice_goes_out_over_one_connection_under_the_same_rules(
        mail_desk: Desk, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`billbot invoices send --unsent` (a month's close, `dispatch_many`): the never-mailed invoices are
    claimed together and mailed over one SMTP connection; a 451 is retried alone afterwards (the same
    Message-ID), a 550 fails for good for that recipient, a `dispatch: none` advertiser is not mailed, and
    every attempt is audited as one by one; a second call finds nothing to mail."""
    from bot import context
    from storage.models import Advertiser

    monkeypatch.setenv("SMTP_URL", "")
    context.reset()
    assert _cli("run", "--period", PERIOD, "--json").exit_code == 0
    assert smtp.received == []
    with mail_desk.db.transaction() as s:
        s.get(Advertiser, "fahrrad-nord").invoice_cc = ["kasse@fahrrad-nord.example"]
    elbe_pdf = Path(mail_desk.invoices()["autohaus-elbe"].pdf_path)
    elbe_pdf.unlink()  # gone from disk: rendered again before it is mailed
    monkeypatch.setenv("SMTP_URL", smtp.url)
    context.reset()
    smtp.handler.answers[ELBE_TO] = ["451 4.3.0 greylisted, try again later"]
    smtp.handler.refuse[NORD_TO] = "550 5.1.1 mailbox unavailable"

    r = _cli("invoices", "send", "--unsent", "--json")
    assert r.exit_code == 1 and "550" in r.output  # a failure exits 1 and names the server's answer
    outcomes = {o["number"]: o for o in json.loads(r.stdout)}
    invoices = mail_desk.invoices()
    elbe, nord, optik = invoices["autohaus-elbe"], invoices["fahrrad-nord"], invoices["optik-sued"]
    assert (outcomes[elbe.number]["state"], outcomes[elbe.number]["attempts"]) == ("sent", 2)
    assert outcomes[nord.number]["state"] == "failed" and outcomes[nord.number]["error"].startswith("550")
    assert outcomes[optik.number]["state"] == "skipped" and "dispatch: none" in outcomes[optik.number]["note"]

    # Elbe's cc and Nord's cc over the batch's one connection; Elbe's greylisted address after, on its own
    first, second, retried = smtp.received
    assert (first.rcpt_tos, second.rcpt_tos, retried.rcpt_tos) == ([ELBE_CC], ["kasse@fahrrad-nord.example"],
                                                                   [ELBE_TO])
    assert first.peer == second.peer != retried.peer
    assert elbe_pdf.read_bytes() == next(first.message.iter_attachments()).get_content()
    assert retried.message["Message-ID"] == first.message["Message-ID"] == f"<{elbe.number}.northwind-media@northwind.example>"
    with mail_desk.db.read() as s:
        rows = {r.invoice_id: r for r in s.execute(select(InvoiceDispatch)).scalars()}
        assert (rows[elbe.id].state, rows[elbe.id].attempts, rows[elbe.id].sends) == ("sent", 2, 1)
        assert rows[nord.id].state == "failed" and rows[nord.id].last_error.startswith("550")
        assert optik.id not in rows
        actions = [(a.action, a.subject_id) for a in s.execute(select(AuditLog).order_by(AuditLog.id)).scalars()
                   if a.action.startswith("invoice.dispatch")]
    assert [a for a, i in actions if i == str(elbe.id)] == ["invoice.dispatch_queued", "invoice.dispatch_failed",
                                                             "invoice.dispatched"]
    assert [a for a, i in actions if i == str(nord.id)] == ["invoice.dispatch_queued", "invoice.dispatch_failed"]
    assert _cli("audit", "verify").exit_code == 0

    # the failed one waits for a person's --resend; nothing else is left to mail
    again = _cli("invoices", "send", "--unsent")
    assert again.exit_code == 0 and "0 sent, 0 failed, 1 not mailed (of 1 never mailed before)" in again.output
    assert len(smtp.received) == 3
