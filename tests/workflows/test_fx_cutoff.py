"""FX cutoff (issue 19, item 4): per legal entity the rate an invoice locks is the rate of its issue date
or of its service period's last day (the agreed month-end rate), at most ``fx_max_age_days`` old; a
campaign may carry a fixed agreed rate. The rule, rate, date and source are kept with the invoice's
locked rate and printed on its PDF."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pdfplumber
import pytest

from bot.documents import pdf
from bot.workflows import documents as wf
from bot.workflows.billing_run import run_billing
from bot.workflows.fx import import_ecb_csv
from bot.workflows.invoices import list_invoices
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.models import PreInvoice
from tests.factories import OPERATOR, add_user, advertiser, campaign, entity, linear, load, scenario

RUN_DAY = date(2026, 4, 5)  # the 5th of the month after the March services
NOW = datetime(2026, 4, 5, 8, 0, tzinfo=UTC)
RATES = "Date,PLN,\n2026-03-31,4.30,\n2026-04-03,4.40,\n"  # the month-end rate, and a later one


def _world(db: Database, key: Any, *, rule: str | None, max_age: int | None = None, rates: str | None = RATES,
           agreed: dict[str, str] | None = None) -> None:
    add_user(db, OPERATOR, ["operator"])
    le = entity()
    if rule is not None:
        le["fx_rule"] = rule
    if max_age is not None:
        le["fx_max_age_days"] = max_age
    load(db, scenario(entities=[le], advertisers=[advertiser("krakow", currency="PLN")],
                      campaigns=[{**campaign("c-krakow", "krakow", [linear("x-krakow", "4300.00")],
                                             start="2026-03-01", end="2026-03-31"), **(agreed or {})}]))
    if rates is not None:
        import_ecb_csv(db, text=rates, actor="t", key=key, now=NOW)
    create_preinvoices(db, period="2026-03", actor="t", key=key, now=NOW)


def _problems(db: Database) -> list[str]:
    with db.read() as s:
        return [p for pi in s.query(PreInvoice).all() for p in (pi.problems or [])]


def test_service_end_accepts_the_month_end_rate_on_the_5th_of_the_next_month(db: Database, key: Any) -> None:
    _world(db, key, rule="service_end")
    assert _problems(db) == []
    run = run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    assert len(run.created) == 1
    (inv,) = list_invoices(db)
    assert inv.issue_date == RUN_DAY
    # the rate of 31 March, not the newer one of 3 April; 1 PLN = 1/4.30 EUR
    assert inv.fx == {"from": "PLN", "to": "EUR", "rate": "0.2325581395", "date": "2026-03-31", "source": "ECB",
                      "rule": "service_end", "net": "1000.00", "vat": "190.00", "gross": "1190.00"}


def test_issue_date_rule_takes_the_rate_of_the_issue_date(db: Database, key: Any) -> None:
    _world(db, key, rule=None)  # the default
    run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    (inv,) = list_invoices(db)
    assert inv.fx is not None
    assert (inv.fx["date"], inv.fx["rate"], inv.fx["rule"]) == ("2026-04-03", "0.2272727273", "issue_date")


def test_a_too_old_rate_is_refused_naming_currency_day_and_rule(db: Database, key: Any) -> None:
    _world(db, key, rule="service_end", rates="Date,PLN,\n2026-03-20,4.30,\n")
    assert _problems(db) == [
        "missing exchange rate PLN→EUR for 2026-03-31 (FX rule service_end: the rate of the service period's "
        "last day, at most 7 days older): no rate published 2026-03-24..2026-03-31"]
    run = run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    assert run.created == [] and list_invoices(db) == []
    assert "missing exchange rate PLN→EUR for 2026-03-31 (FX rule service_end" in run.held[0]["reason"]


def test_the_maximum_rate_age_is_configurable(db: Database, key: Any) -> None:
    _world(db, key, rule="service_end", max_age=14, rates="Date,PLN,\n2026-03-20,4.30,\n")
    assert _problems(db) == []
    run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    (inv,) = list_invoices(db)
    assert inv.fx is not None and inv.fx["date"] == "2026-03-20"


def test_a_fixed_rate_agreed_for_the_campaign_is_used(db: Database, key: Any) -> None:
    _world(db, key, rule="service_end", rates=None, agreed={"fx_rate": "0.25", "fx_rate_date": "2026-01-15"})
    assert _problems(db) == []  # no published rate needed
    run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    (inv,) = list_invoices(db)
    assert inv.fx == {"from": "PLN", "to": "EUR", "rate": "0.2500000000", "date": "2026-01-15",
                      "source": "agreed, campaign Campaign c-krakow", "rule": "agreed",
                      "net": "1075.00", "vat": "204.25", "gross": "1279.25"}
    assert inv.gross == Decimal("5117.00")


@pytest.mark.parametrize(("rule", "agreed", "printed"), [
    ("service_end", None, ["1 PLN = 0.2325581395 EUR (ECB, Mar 31, 2026)",
                           "Exchange rate rule: the rate of the service period's last day."]),
    ("service_end", {"fx_rate": "0.25"}, ["1 PLN = 0.25 EUR (agreed, campaign Campaign c-krakow, Apr 5, 2026)",
                                          "Exchange rate rule: the rate agreed for the campaign."]),
])
def test_the_pdf_states_rule_rate_date_and_source(db: Database, key: Any, tmp_path: Path, rule: str,
                                                  agreed: dict[str, str] | None, printed: list[str]) -> None:
    _world(db, key, rule=rule, agreed=agreed)
    run_billing(db, period="2026-03", actor=OPERATOR, key=key, today=RUN_DAY, now=NOW)
    (inv,) = list_invoices(db)
    path = wf.render_invoice_pdf(db, inv.id, renderer=pdf, out_dir=tmp_path, key=key)
    with pdfplumber.open(io.BytesIO(path.read_bytes())) as p:
        text = " ".join((page.extract_text() or "") for page in p.pages).replace("\xa0", " ").replace("\n", " ")
    for phrase in printed:
        assert phrase in text


def test_changing_the_fx_rule_or_an_agreed_rate_is_held_for_a_second_person(db: Database, key: Any) -> None:
    from storage.loader import load_scenario
    from storage.models import Campaign, LegalEntity

    _world(db, key, rule="issue_date", agreed={"fx_rate": "0.25"})
    changed = scenario(entities=[{**entity(), "fx_rule": "service_end", "fx_max_age_days": 10}],
                       advertisers=[advertiser("krakow", currency="PLN")],
                       campaigns=[{**campaign("c-krakow", "krakow", [linear("x-krakow", "4300.00")],
                                              start="2026-03-01", end="2026-03-31"), "fx_rate": "0.26"}])
    res = load_scenario(db, changed, actor=OPERATOR, hold_money_changes=True)
    assert sorted((h["kind"], h["field"], h["before"], h["after"]) for h in res.held) == [
        ("campaigns", "fx_rate", "0.25", "0.26"),
        ("legal_entities", "fx_max_age_days", 7, 10),
        ("legal_entities", "fx_rule", "issue_date", "service_end")]
    with db.read() as s:  # nothing applied yet
        le, c = s.get(LegalEntity, "northwind"), s.get(Campaign, "c-krakow")
        assert le is not None and c is not None
        assert (le.fx_rule, le.fx_max_age_days, c.fx_rate) == ("issue_date", 7, Decimal("0.25"))
