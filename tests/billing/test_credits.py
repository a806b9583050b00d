"""The partial-credit rules of billing/credits.py, without a database (issue 20)."""

from __future__ import annotations

import doctest
from decimal import Decimal

import pytest

import billing.credits as credits
from billing.credits import CreditAsk, Credited, credit_line
from billing.errors import Invalid
from billing.invoice import InvoiceLineDraft, line_problems

D = Decimal
CLICKS = InvoiceLineDraft("Search clicks", D(300), "clicks", D("0.60"), D("180.00"))
CPM = InvoiceLineDraft("Display", D("883.44"), "1,000 impressions", D("4.05"), D("3577.93"))


def test_the_doctests_hold() -> None:
    assert doctest.testmod(credits).failed == 0


def test_a_cpm_line_is_credited_in_its_stored_unit_and_recomputes_as_a_receiver_would() -> None:
    c = credit_line(CPM, ask=CreditAsk(1, quantity=D("100")), credited=Credited(), currency="EUR")
    assert (c.quantity, c.unit, c.amount) == (D(-100), "1,000 impressions", D("-405.00"))
    assert line_problems([c], "EUR") == []


def test_the_rest_of_a_line_after_an_amount_credit_is_a_lump_sum_and_never_more() -> None:
    took = Credited(D(0), D("33.33"))
    rest = credit_line(CLICKS, ask=CreditAsk(1), credited=took, currency="EUR")
    assert (rest.quantity, rest.unit, rest.unit_price, rest.amount) == (D(-1), "lump sum", D("146.67"), D("-146.67"))
    assert line_problems([rest], "EUR") == []
    after_quantity = credit_line(CLICKS, ask=CreditAsk(1), credited=Credited(D(20), D("12.00")), currency="EUR")
    assert (after_quantity.quantity, after_quantity.amount) == (D(-280), D("-168.00"))
    with pytest.raises(Invalid) as e:
        credit_line(CLICKS, ask=CreditAsk(1, amount=D("1.00")), credited=Credited(D(300), D("180.00")),
                    currency="EUR")
    assert e.value.problems == ["line 1 (Search clicks) is already credited"]


@pytest.mark.parametrize(("ask", "problem"), [
    (CreditAsk(1, quantity=D(0)), "line 1 (Search clicks): the quantity to credit must be positive, not 0"),
    (CreditAsk(1, amount=D("-5.00")), "line 1 (Search clicks): the amount to credit must be positive, not -5.00"),
    (CreditAsk(1, amount=D("1.005")), "line 1 (Search clicks): 1.005 has more decimals than EUR allows"),
    (CreditAsk(1, quantity=D(1), amount=D("1.00")), "line 1 (Search clicks): give a quantity or an amount, not both"),
])
def test_bad_asks_are_refused_naming_the_line(ask: CreditAsk, problem: str) -> None:
    with pytest.raises(Invalid) as e:
        credit_line(CLICKS, ask=ask, credited=Credited(), currency="EUR")
    assert e.value.problems == [problem]


def test_a_discount_line_is_only_credited_whole() -> None:
    discount = InvoiceLineDraft("Discount", D(1), "lump sum", D("-50.00"), D("-50.00"))
    whole = credit_line(discount, ask=CreditAsk(2), credited=Credited(), currency="EUR")
    assert (whole.quantity, whole.amount) == (D(-1), D("50.00"))
    with pytest.raises(Invalid, match="only a line with a positive amount can be credited in part"):
        credit_line(discount, ask=CreditAsk(2, amount=D("10.00")), credited=Credited(), currency="EUR")
