"""Dunning: which reminder an overdue invoice gets, and what it adds — pure rules.

A legal entity's dunning levels say how many days after the due date each letter goes out (e.g.
reminder 7, first notice 21, final notice 35), with an optional flat fee and yearly interest rate
(German B2B default interest is the base rate + 9 percentage points, § 288 (2) BGB; the rate is set
per legal entity, never assumed). An invoice gets the highest level it has reached that it has not
had yet — a run that was missed for weeks sends one letter, not three — and never a level twice.

>>> lv = DEFAULT_LEVELS
>>> next_level(6, lv, sent=()) is None, next_level(7, lv, sent=()).name, next_level(40, lv, sent=(1,)).name
(True, 'reminder', 'final_notice')
>>> next_level(25, lv, sent=(1, 2)) is None
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class DunningLevel:
    level: int
    name: str  # reminder | first_notice | final_notice | …
    days: int  # days after the due date
    fee: Decimal = ZERO
    interest_rate: Decimal = ZERO  # percent per year on the open amount, for the days past due


DEFAULT_LEVELS: tuple[DunningLevel, ...] = (
    DunningLevel(1, "reminder", 7), DunningLevel(2, "first_notice", 21), DunningLevel(3, "final_notice", 35))


def levels_from(rows: Sequence[dict[str, object]] | None) -> tuple[DunningLevel, ...]:
    """Levels from a legal entity's configuration (the scenario's ``dunning`` list), else the defaults."""
    if not rows:
        return DEFAULT_LEVELS
    return tuple(sorted((DunningLevel(int(str(r["level"])), str(r["name"]), int(str(r["days"])),
                                      Decimal(str(r.get("fee") or "0")), Decimal(str(r.get("interest_rate") or "0")))
                         for r in rows), key=lambda x: x.days))


def next_level(days_past_due: int, levels: Iterable[DunningLevel], *, sent: Iterable[int]) -> DunningLevel | None:
    """The letter an invoice ``days_past_due`` gets now, if any (see the module docstring)."""
    done = set(sent)
    reached = [lv for lv in levels if lv.days <= days_past_due]
    if not reached:
        return None
    top = max(reached, key=lambda lv: lv.days)
    if top.level in done or any(d > top.level for d in done):
        return None
    return top


def interest(open_amount: Decimal, rate_percent: Decimal, days: int) -> Decimal:
    """Simple interest, actual/365, half-up to the cent.

    >>> interest(Decimal("1000.00"), Decimal("12.27"), 35)
    Decimal('11.77')
    """
    if rate_percent <= 0 or days <= 0 or open_amount <= 0:
        return ZERO
    return (open_amount * rate_percent / 100 * days / 365).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


LETTER_LABELS: dict[str, dict[str, str]] = {
    "en": {"reminder": "Payment reminder", "first_notice": "First notice", "final_notice": "Final notice",
           "intro": "According to our records, the following invoice is still open:",
           "invoice": "Invoice", "issued": "Issued", "due": "Due", "open": "Open amount", "fee": "Dunning fee",
           "interest": "Interest ({rate} % p.a., {days} days)", "total": "Please pay",
           "ask": "Please transfer the amount within 7 days quoting the payment reference {ref}.",
           "ignore": "If you have paid in the meantime, please disregard this letter."},
    "de": {"reminder": "Zahlungserinnerung", "first_notice": "1. Mahnung", "final_notice": "Letzte Mahnung",
           "intro": "Nach unseren Unterlagen ist folgende Rechnung noch offen:",
           "invoice": "Rechnung", "issued": "Rechnungsdatum", "due": "Fällig am", "open": "Offener Betrag",
           "fee": "Mahngebühr", "interest": "Verzugszinsen ({rate} % p.a., {days} Tage)", "total": "Zahlbetrag",
           "ask": "Bitte überweisen Sie den Betrag innerhalb von 7 Tagen mit dem Verwendungszweck {ref}.",
           "ignore": "Sollten Sie inzwischen gezahlt haben, betrachten Sie dieses Schreiben bitte als gegenstandslos."},
}
