"""Billing thresholds and the job log lines of a billing run (DESIGN.md "Billing threshold").

Everything approved and not yet invoiced for an advertiser is summed in its currency; below the
advertiser's threshold nothing is created and the items wait for the next run.

>>> below_threshold(Decimal("180.00"), Decimal("250.00"))
True
>>> skipped_line(Decimal("180"), "EUR", "Autohaus Nord", Decimal("250"))
'Skipped items with a total of 180.00 EUR for Autohaus Nord (threshold 250.00 EUR)'
"""

from __future__ import annotations

from decimal import Decimal

from billing.money import fmt


def below_threshold(total: Decimal, threshold: Decimal | None) -> bool:
    """True when the total does not reach the threshold (a total equal to it is billed)."""
    return threshold is not None and total < threshold


def created_line(number: str, advertiser_name: str) -> str:
    return f"Document {number} created for {advertiser_name}"


def skipped_line(total: Decimal, currency: str, advertiser_name: str, threshold: Decimal) -> str:
    return (f"Skipped items with a total of {fmt(total, currency)} {currency} for {advertiser_name} "
            f"(threshold {fmt(threshold, currency)} {currency})")


def held_line(preinvoice_id: int, campaign: str, period: str, advertiser_name: str, reason: str) -> str:
    return f"Held pre-invoice {preinvoice_id} ({campaign}, {period}) for {advertiser_name}: {reason}"
