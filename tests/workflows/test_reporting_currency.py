"""One rule for amounts in the reporting currency (bot.workflows.fx.Converter): run reports, the digest,
receivables aging and the App Home all convert through it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from storage.db import Database
from tests.factories import rate

FX_PLN = {"from": "PLN", "to": "EUR", "rate": "0.2325", "date": "2026-10-30", "source": "ECB"}
FX_EUR_CHF = {"from": "EUR", "to": "CHF", "rate": "0.9400", "date": "2026-10-30", "source": "ECB"}


def test_locked_rates_either_way_round_then_the_latest_rate_and_a_missing_one_is_named(db: Database) -> None:
    from bot.workflows.fx import Converter

    with db.transaction() as s:
        rate(s, date(2026, 10, 29), "EUR", "PLN", "4.0000")
        rate(s, date(2026, 10, 30), "EUR", "PLN", "4.3000")  # the latest on or before the day wins
        rate(s, date(2026, 10, 30), "EUR", "JPY", "160")
        conv = Converter(s, "EUR", date(2026, 10, 31))
        assert conv.amount(Decimal("100.00"), "EUR") == Decimal("100.00")
        # the invoice's own locked rate, whatever the market did since
        assert conv.amount(Decimal("1000.00"), "PLN", FX_PLN) == Decimal("232.50")
        # a rate locked the other way round (EUR → CHF on a CHF invoice) is used inverted
        assert conv.amount(Decimal("94.00"), "CHF", FX_EUR_CHF) == Decimal("100.00")
        # no lock: the latest stored rate, inverse of EUR→PLN, half-up to the cent
        assert conv.amount(Decimal("1000.00"), "PLN") == Decimal("232.56")
        assert conv.amount(Decimal("1000"), "JPY") == Decimal("6.25")
        assert conv.amount(Decimal("5.00"), "USD") is None
        total = conv.sum([(Decimal("1000.00"), "PLN", FX_PLN), (Decimal("10.00"), "EUR", None),
                          (Decimal("7.00"), "USD", None)])
        assert (total.currency, total.amount, total.missing) == ("EUR", Decimal("242.50"), ("USD",))
        # into a currency without cents: half-up to its minor unit (10.01 EUR = 1601.6 → 1602; 43 PLN = 10 EUR via
        # the cross through EUR = 1600)
        yen = Converter(s, "JPY", date(2026, 10, 31))
        assert yen.total({"EUR": Decimal("10.01"), "PLN": Decimal("43.00")}).amount == Decimal("3202")
