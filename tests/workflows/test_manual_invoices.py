"""One-off and adjusted invoices (issue 19, item 7): a one-off invoice goes through a second person's
approval to a numbered invoice; header overrides (payment terms, recipient, notes) are approved the same
way and shown on the resulting invoice; cancelling a whole pre-invoice needs a reason, a second person,
and is refused once it is invoiced. The maker is never the checker; every step is audited."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pdfplumber
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from billing.errors import Conflict, Invalid, NotAllowed
from bot.blocks.exceptions import finding_text
from bot.cli import app
from bot.documents import pdf
from bot.workflows import documents as wf
from bot.workflows.billing_run import run_billing
from bot.workflows.decisions import Refused, decide, subject_hash_of
from bot.workflows.integrity import check_rows
from bot.workflows.invoices import list_invoices
from bot.workflows.manual_invoices import cancel_preinvoice, create_one_off, parse_line, set_overrides
from bot.workflows.preinvoices import create_preinvoices, get_preinvoice, list_preinvoices
from storage.db import Database
from storage.models import AuditLog, BillingException
from tests.factories import OPERATOR, add_user, advertiser, campaign, entity, linear, load, scenario

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
RUN_DAY = date(2026, 4, 1)
MAKER = "U01MAKER"  # an operator who is also an approver: still never the checker of their own change
CHECKER = "U02CHECKER"

runner = CliRunner()


@pytest.fixture
def desk(db: Database, key: Any) -> None:
    add_user(db, OPERATOR, ["operator"])
    add_user(db, MAKER, ["operator", "approver"])
    add_user(db, CHECKER, ["approver"])
    load(db, scenario(entities=[entity()], advertisers=[advertiser("elbe", "Autohaus Elbe", terms=14)],
                      campaigns=[campaign("c-elbe", "elbe", [linear("x-elbe", "3100.00")], start="2026-03-01",
                                          end="2026-03-31")]))


def _exception(db: Database, pid: int, kind_key: str) -> tuple[int, str]:
    with db.read() as s:
        exc = s.execute(select(BillingException).where(BillingException.preinvoice_id == pid,
                                                       BillingException.key.startswith(kind_key),
                                                       BillingException.state == "pending")).scalar_one()
        return exc.id, subject_hash_of(exc)


def _decide(db: Database, key: Any, pid: int, kind_key: str, decision: str, actor: str,
            reason: str | None = None) -> None:
    eid, digest = _exception(db, pid, kind_key)
    decide(db, exception_id=eid, decision=decision, actor=actor, subject_hash=digest,  # type: ignore[arg-type]
           signing_key=key, reason=reason, now=NOW)


def _actions(db: Database, pid: int) -> list[str]:
    with db.read() as s:
        return list(s.execute(select(AuditLog.action).where(AuditLog.subject_type == "preinvoice",
                                                            AuditLog.subject_id == str(pid))
                              .order_by(AuditLog.id)).scalars())


def test_a_one_off_invoice_goes_through_approval_to_a_numbered_invoice(db: Database, key: Any, desk: None) -> None:
    pid = create_one_off(db, advertiser_id="elbe", lines=["Sponsored post; March;2;450.00;19", "Setup fee;1;100;19"],
                         actor=MAKER, key=key, now=NOW)
    v = get_preinvoice(db, pid)
    assert (v.campaign_id, v.campaign, v.state, v.problems) == (None, "one-off", "pending", [])
    assert (v.period_start, v.period_end, v.net, v.gross) == (date(2026, 3, 10), date(2026, 3, 10),
                                                              Decimal("1000.00"), Decimal("1190.00"))
    assert [(x.description, x.quantity, x.unit_price, x.amount) for x in v.lines] == [
        ("Sponsored post; March", Decimal(2), Decimal("450.00"), Decimal("900.00")),
        ("Setup fee", Decimal(1), Decimal(100), Decimal("100.00"))]
    create_preinvoices(db, period="2026-03", actor="t", key=key, now=NOW)
    # not approved yet: the run bills the campaign only and holds the one-off
    run = run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    assert len(run.created) == 1 and [h["preinvoice"] for h in run.held] == [pid]
    assert "waiting for a decision" in run.held[0]["reason"]
    # the maker may not approve their own one-off invoice, whatever their roles
    with pytest.raises(Refused, match="someone else must decide"):
        _decide(db, key, pid, "manual_change:", "approve", MAKER)
    _decide(db, key, pid, "manual_change:", "approve", CHECKER)
    assert get_preinvoice(db, pid).state == "approved"
    run = run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    assert len(run.created) == 1
    (inv,) = [v for v in list_invoices(db) if any(x.campaign == "one-off" for x in v.lines)]
    assert inv.number == "INV-2026-000002" and (inv.net, inv.vat, inv.gross) == (
        Decimal("1000.00"), Decimal("190.00"), Decimal("1190.00"))
    assert [x.description for x in inv.lines] == ["Sponsored post; March", "Setup fee"]  # never merged
    assert get_preinvoice(db, pid).state == "invoiced"
    assert _actions(db, pid)[:3] == ["preinvoice.one_off_created", "preinvoice.pending", "preinvoice.approved"]
    with db.read() as s:  # `billbot audit verify`: every row is as its audit records say
        assert check_rows(s) == []


def test_one_off_lines_are_checked_and_every_bad_one_named(db: Database, key: Any, desk: None) -> None:
    with pytest.raises(Invalid) as e:
        create_one_off(db, advertiser_id="elbe", lines=["Post;1;x;19", "Fee;0;10;19", "no fields"], actor=MAKER,
                       key=key, now=NOW)
    assert e.value.problems == ["--line 'Post;1;x;19': unit price 'x' is not a number",
                                "--line 'Fee;0;10;19': quantity must be more than 0",
                                "--line 'no fields': expected text;quantity;unit price;VAT %, e.g. "
                                "\"Sponsored post;1;450.00;19\""]
    with pytest.raises(Invalid, match=r"line 1 \(Print ad\): VAT 7 % is not the 19 % of invoices from DE to "
                                      r"Autohaus Elbe \(domestic\)"):
        create_one_off(db, advertiser_id="elbe", lines=["Print ad;1;10;7"], actor=MAKER, key=key, now=NOW)
    with pytest.raises(NotAllowed):  # a known user without a maker role
        create_one_off(db, advertiser_id="elbe", lines=["Post;1;10;19"], actor=CHECKER, key=key, now=NOW)
    assert parse_line("Post;1,5;10,00;19 %").quantity == Decimal("1.5")
    assert list_preinvoices(db) == []


def test_header_overrides_are_approved_by_someone_else_and_shown_on_the_invoice(
        db: Database, key: Any, desk: None, tmp_path: Path) -> None:
    (pid,) = create_preinvoices(db, period="2026-03", actor="t", key=key, now=NOW).created
    assert get_preinvoice(db, pid).state == "approved"  # by the system
    got = set_overrides(db, pid, actor=MAKER, key=key, now=NOW, payment_terms_days=45,
                        recipient="Attn. Accounts Payable, cost centre 4711", notes="Order ref. Spring campaign 2026")
    assert got == {"payment_terms_days": 45, "recipient": "Attn. Accounts Payable, cost centre 4711",
                   "notes": "Order ref. Spring campaign 2026"}
    v = get_preinvoice(db, pid)
    assert v.state == "pending" and v.approved_hash is None and v.overrides == got
    with db.read() as s:  # what the checker sees in Slack
        exc = s.get(BillingException, _exception(db, pid, "manual_change:")[0])
        assert exc is not None and exc.started_by == MAKER
        line = finding_text(exc)  # the exception message: the finding, then the changed fields
    assert "payment_terms_days: None → 45" in line and "recipient: None → Attn. Accounts Payable" in line
    with pytest.raises(Refused):
        _decide(db, key, pid, "manual_change:", "approve", MAKER)
    _decide(db, key, pid, "manual_change:", "approve", CHECKER)
    assert get_preinvoice(db, pid).state == "approved"
    run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    (inv,) = list_invoices(db)
    assert (inv.issue_date, inv.due_date) == (RUN_DAY, date(2026, 5, 16))  # 45 days, not the advertiser's 14
    path = wf.render_invoice_pdf(db, inv.id, renderer=pdf, out_dir=tmp_path, key=key)
    with pdfplumber.open(io.BytesIO(path.read_bytes())) as p:
        text = "\n".join(page.extract_text() or "" for page in p.pages).replace("\xa0", " ")
    assert "Attn. Accounts Payable, cost centre 4711" in text
    assert "Order ref. Spring campaign 2026" in text
    assert "(net 45 days)" in text
    assert "preinvoice.header_overridden" in _actions(db, pid)
    with pytest.raises(NotAllowed, match="invoiced and can no longer be edited"):
        set_overrides(db, pid, actor=MAKER, key=key, now=NOW, notes="too late")
    with db.read() as s:
        assert check_rows(s) == []


def test_cancel_needs_a_reason_a_second_person_and_is_refused_once_invoiced(db: Database, key: Any,
                                                                            desk: None) -> None:
    (pid,) = create_preinvoices(db, period="2026-03", actor="t", key=key, now=NOW).created
    with pytest.raises(Invalid, match="needs a reason"):
        cancel_preinvoice(db, pid, reason="  ", actor=MAKER, key=key, now=NOW)
    cancel_preinvoice(db, pid, reason="campaign called off by the client", actor=MAKER, key=key, now=NOW)
    assert get_preinvoice(db, pid).state == "pending"
    with pytest.raises(Conflict, match="already waits"):
        cancel_preinvoice(db, pid, reason="again", actor=MAKER, key=key, now=NOW)
    run = run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    assert run.created == []  # a pre-invoice waiting for its cancellation is not billed
    with pytest.raises(Refused, match="someone else must decide"):
        _decide(db, key, pid, "cancel:", "approve", MAKER)
    _decide(db, key, pid, "cancel:", "reject", CHECKER, reason="the client still owes March")
    assert get_preinvoice(db, pid).state == "approved"  # back to draft, checked again, approved by the system
    cancel_preinvoice(db, pid, reason="campaign called off by the client", actor=MAKER, key=key, now=NOW)
    _decide(db, key, pid, "cancel:", "approve", CHECKER)
    v = get_preinvoice(db, pid)
    assert v.state == "cancelled" and v.hold_reason == "cancelled: campaign called off by the client"
    assert run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW).created == []
    assert [a for a in _actions(db, pid) if a.startswith("preinvoice.cancel")] == [
        "preinvoice.cancel_requested", "preinvoice.cancel_rejected", "preinvoice.cancel_requested",
        "preinvoice.cancelled"]
    with pytest.raises(Conflict, match="already cancelled"):
        cancel_preinvoice(db, pid, reason="twice", actor=MAKER, key=key, now=NOW)
    with db.read() as s:
        assert check_rows(s) == []


def test_cancel_is_refused_for_an_invoiced_pre_invoice(db: Database, key: Any, desk: None) -> None:
    (pid,) = create_preinvoices(db, period="2026-03", actor="t", key=key, now=NOW).created
    run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    with pytest.raises(NotAllowed, match=r"already invoiced \(INV-2026-000001\): a finalized invoice is not "
                                         "cancelled but corrected with a credit note"):
        cancel_preinvoice(db, pid, reason="too late", actor=MAKER, key=key, now=NOW)


def test_cli_create_override_and_cancel(db: Database, key: Any, desk: None) -> None:
    r = runner.invoke(app, ["invoices", "create", "--advertiser", "elbe", "--line", "Sponsored post;1;450.00;19",
                            "--service-start", "2026-03-05", "--json", "--as", MAKER])
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    assert (made["campaign"], made["state"], made["net"], made["period_start"]) == (
        "one-off", "pending", "450.00", "2026-03-05")
    r = runner.invoke(app, ["preinvoices", "override", str(made["id"]), "--payment-terms", "30", "--json",
                            "--as", MAKER])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["overrides"] == {"payment_terms_days": 30}
    r = runner.invoke(app, ["preinvoices", "cancel", str(made["id"]), "--as", MAKER])
    assert r.exit_code == 2 and "needs a reason" in r.output
    r = runner.invoke(app, ["preinvoices", "cancel", str(made["id"]), "--reason", "duplicate", "--as", MAKER])
    assert r.exit_code == 0 and "cancellation requested" in r.output
    r = runner.invoke(app, ["invoices", "create", "--advertiser", "elbe", "--line", "x;1;1;7", "--as", MAKER])
    assert r.exit_code == 2 and "VAT 7 % is not the 19 %" in r.output


def test_a_po_number_override_puts_that_order_number_on_the_invoice(db: Database, key: Any, desk: None) -> None:
    """A header override's PO number wins over the campaign's and advertiser's (BT-13 and the buyer
    snapshot), under the same maker-checker rule as the other overrides; an over-long one is refused."""
    import facturx
    from lxml import etree

    (pid,) = create_preinvoices(db, period="2026-03", actor="t", key=key, now=NOW).created
    with pytest.raises(Invalid, match="po_number: at most 64 characters"):
        set_overrides(db, pid, actor=MAKER, key=key, now=NOW, po_number="4" * 65)
    assert set_overrides(db, pid, actor=MAKER, key=key, now=NOW, po_number=" PO 4711-03 ") == {"po_number": "PO 4711-03"}
    assert get_preinvoice(db, pid).state == "pending"
    with pytest.raises(Refused):
        _decide(db, key, pid, "manual_change:", "approve", MAKER)
    _decide(db, key, pid, "manual_change:", "approve", CHECKER)
    run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    (inv,) = list_invoices(db)
    with db.read() as s:
        from storage.models import Invoice

        row = s.get(Invoice, inv.id)
        assert row is not None and row.parties["buyer"]["po_number"] == "PO 4711-03"
    from billing.documents.facturx import facturx_xml
    from storage.mapping import document_for_invoice

    with db.read() as s:
        xml = facturx_xml(document_for_invoice(s, inv.id))
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    ns = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}
    assert etree.fromstring(xml).xpath("//ram:BuyerOrderReferencedDocument/ram:IssuerAssignedID/text()",
                                       namespaces=ns) == ["PO 4711-03"]
