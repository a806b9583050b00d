"""Invoice terms (issue 19, item 3): which day an invoice is dated and when it falls due.

Rules per legal entity, overridable per advertiser:

- issue date ``run_day`` (the day of the billing run, the default), ``service_end`` (the last day of the
  invoice's service period: September services are dated 30 September) or ``day_after_service`` (the
  first day after it); never later than the run day — an invoice is not dated in the future;
- due date ``net`` (issue date + payment terms, the default) or ``end_of_month`` (the end of the issue
  date's month + payment terms).

>>> invoice_date("service_end", run_day=date(2026, 12, 1), service_end=date(2026, 9, 30))
datetime.date(2026, 9, 30)
>>> invoice_date("day_after_service", run_day=date(2026, 12, 1), service_end=date(2026, 9, 30))
datetime.date(2026, 10, 1)
>>> due_date("end_of_month", issue=date(2026, 9, 30), terms_days=14)
datetime.date(2026, 10, 14)
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

from billing.errors import Invalid

ISSUE_DATE_RULES = ("run_day", "service_end", "day_after_service")
DUE_DATE_RULES = ("net", "end_of_month")


def invoice_date(rule: str, *, run_day: date, service_end: date | None) -> date:
    """The issue date under ``rule`` (see the module docstring); ``run_day`` when there is no service period."""
    if rule not in ISSUE_DATE_RULES:
        raise Invalid(f"unknown invoice date rule {rule!r} (one of {', '.join(ISSUE_DATE_RULES)})")
    if rule == "run_day" or service_end is None:
        return run_day
    day = service_end if rule == "service_end" else service_end + timedelta(days=1)
    return min(day, run_day)


def due_date(rule: str, *, issue: date, terms_days: int) -> date:
    """The due date under ``rule``: ``net`` = issue + terms; ``end_of_month`` = end of the issue month + terms."""
    if rule not in DUE_DATE_RULES:
        raise Invalid(f"unknown due date rule {rule!r} (one of {', '.join(DUE_DATE_RULES)})")
    if rule == "net":
        return issue + timedelta(days=terms_days)
    month_end = date(issue.year, issue.month, calendar.monthrange(issue.year, issue.month)[1])
    return month_end + timedelta(days=terms_days)
