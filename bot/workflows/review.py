"""Review controls (issue 21): checklists, approver routing, reminders with backoff, timeout outcome.

The scenario format carries them (``checklists:`` and ``routing:``, stored by the loader under
``review.checklists`` / ``review.routing``). When an exception opens (or its figures change) the
matching rule is resolved ONCE into a snapshot on the row (``exceptions.review``), so the message,
the permission check, the SLA sweep and the signed decision all read the same rule even if the
scenario changes later:

    {"rule": "big-x", "approvers": {"group": "S0LEADS", "name": "finance-leads", "users": [...]},
     "approvals": 2, "checklist": {"approve": [...], "force": [...]},
     "sla": {"hours": "24", "reminders": ["0.5", "0.75", "1"], "repeat_hours": "4",
             "on_timeout": "escalate" | "auto_approve", "auto_approve_below": "100"}}

Routing: the first rule (file order) whose conditions (legal entity, advertiser, kind, amount at
least ``min_amount`` and below ``max_amount``) all hold wins; none → the default rule (any approver;
two approvals from ``TWO_APPROVER_AMOUNT`` on) and ``review`` stays None when no checklist applies
either, so exceptions without rules behave exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from storage.models import BillingException, Setting
from storage.settings import get_settings

CHECKLISTS_KEY = "review.checklists"
ROUTING_KEY = "review.routing"
DEFAULT_RULE = "default"

#: ``members(group_id)`` → the Slack ids in a Slack user group (``usergroups.users.list``)
GroupLookup = Callable[[str], Collection[str]]


def _stored(s: Session, key: str) -> list[dict[str, Any]]:
    row = s.get(Setting, key)
    if row is None:
        return []
    out = json.loads(row.value)
    return out if isinstance(out, list) else []


def _matches(rule: dict[str, Any], *, kind: str, legal_entity_id: str, advertiser_id: str, amount: Decimal) -> bool:
    if rule.get("legal_entity") not in (None, legal_entity_id):
        return False
    if rule.get("advertiser") not in (None, advertiser_id):
        return False
    if rule.get("kind") not in (None, kind):
        return False
    if rule.get("min_amount") is not None and abs(amount) < Decimal(str(rule["min_amount"])):
        return False
    return not (rule.get("max_amount") is not None and abs(amount) >= Decimal(str(rule["max_amount"])))


def route_for(s: Session, *, kind: str, legal_entity_id: str, advertiser_id: str,
              amount: Decimal) -> dict[str, Any] | None:
    """The first routing rule matching the exception, or None (the default rule)."""
    for rule in _stored(s, ROUTING_KEY):
        if _matches(rule, kind=kind, legal_entity_id=legal_entity_id, advertiser_id=advertiser_id, amount=amount):
            return rule
    return None


def checklists_for(s: Session, *, kind: str, cause: str | None) -> dict[str, list[str]]:
    """The items to tick per decision (approve / force) on an exception of ``kind`` and ``cause``:
    a list for the cause wins over the kind's general list."""
    general: dict[str, list[str]] = {}
    specific: dict[str, list[str]] = {}
    for cl in _stored(s, CHECKLISTS_KEY):
        if cl.get("kind") != kind:
            continue
        target = general if cl.get("cause") is None else specific if cl.get("cause") == cause else None
        if target is None:
            continue
        for decision in cl.get("decisions") or ["approve", "force"]:
            target.setdefault(decision, []).extend(str(i) for i in cl.get("items") or [])
    return {**general, **specific}


def default_approvals(amount: Decimal) -> int:
    return 2 if abs(amount) >= get_settings().two_approver_amount else 1


def snapshot(s: Session, *, kind: str, legal_entity_id: str, advertiser_id: str, amount: Decimal,
             cause: str | None) -> dict[str, Any] | None:
    """What the exception is opened under (see the module docstring); None: the default rule and no
    checklist."""
    rule = route_for(s, kind=kind, legal_entity_id=legal_entity_id, advertiser_id=advertiser_id, amount=amount)
    checklist = checklists_for(s, kind=kind, cause=cause)
    if rule is None and not checklist:
        return None
    out: dict[str, Any] = {"rule": DEFAULT_RULE, "approvals": default_approvals(amount)}
    if rule is not None:
        out.update(rule=rule["id"], approvals=int(rule.get("approvals") or 1))
        if rule.get("approvers"):
            out["approvers"] = rule["approvers"]
        if rule.get("sla"):
            out["sla"] = rule["sla"]
    if checklist:
        out["checklist"] = checklist
    return out


def approvals_needed(review: dict[str, Any] | None, amount: Decimal) -> int:
    return int(review["approvals"]) if review else default_approvals(amount)


# --------------------------------------------------------------------------- who may decide


def group_label(approvers: dict[str, Any]) -> str:
    """How people see the group: ``@finance-leads`` / the Slack group mention, else the users."""
    if approvers.get("group"):
        name = approvers.get("name")
        return f"<!subteam^{approvers['group']}>" + (f" (@{name})" if name else "")
    return ", ".join(f"<@{u}>" for u in approvers.get("users") or [])


def group_members(approvers: dict[str, Any], lookup: GroupLookup | None) -> set[str] | None:
    """The members of the rule's group: the listed users, else the Slack user group's members
    (None when Slack cannot be asked)."""
    if approvers.get("users"):
        return set(approvers["users"])
    if approvers.get("group") and lookup is not None:
        return set(lookup(str(approvers["group"])))
    return None


def outside_group(exc: BillingException, user_id: str, lookup: GroupLookup | None) -> str | None:
    """Why ``user_id`` may not decide under the exception's routing rule, or None when they may."""
    approvers = (exc.review or {}).get("approvers")
    if not approvers:
        return None
    members = group_members(approvers, lookup)
    rule = (exc.review or {}).get("rule", DEFAULT_RULE)
    if members is None:
        return (f"Only {group_label(approvers)} may decide this (rule {rule}), and its members could not be "
                "looked up in Slack; please try again.")
    if user_id in members:
        return None
    return f"Only {group_label(approvers)} may decide this (routing rule {rule})."


def checklist_for(exc: BillingException, decision: str) -> list[str]:
    return list(((exc.review or {}).get("checklist") or {}).get(decision) or [])


def missing_items(exc: BillingException, decision: str, checked: Collection[str]) -> list[str]:
    """The checklist items of ``decision`` not ticked (an item ticks by its text or its 1-based number)."""
    items = checklist_for(exc, decision)
    ticked = {str(c).strip() for c in checked}
    return [it for n, it in enumerate(items, 1) if it not in ticked and str(n) not in ticked]


# --------------------------------------------------------------------------- SLA plan


def sla_hours(review: dict[str, Any] | None) -> Decimal:
    hours = ((review or {}).get("sla") or {}).get("hours")
    return Decimal(str(hours)) if hours is not None else Decimal(str(get_settings().sla_hours))


def _plan(review: dict[str, Any] | None) -> list[Decimal]:
    return [Decimal(str(f)) for f in ((review or {}).get("sla") or {}).get("reminders") or ["0.5"]]


def timers(review: dict[str, Any] | None, now: datetime) -> tuple[datetime, datetime]:
    """``(remind_at, due_at)`` of an exception opened at ``now``: the first reminder of the rule's plan
    (default: half the SLA) and the end of the SLA."""
    hours = sla_hours(review)
    due_at = now + timedelta(hours=float(hours))
    return now + timedelta(hours=float(hours * min(_plan(review)))), due_at


def next_reminder(exc: BillingException, now: datetime) -> tuple[datetime | None, bool]:
    """After a reminder at ``now``: the next reminder time of the exception's plan and whether
    ``now``'s reminder goes to the managers (a repeat after expiry). Without a rule SLA: no next one
    (``remind_at`` keeps its value; the reminder went once)."""
    sla = (exc.review or {}).get("sla")
    if not sla or exc.due_at is None:
        return exc.remind_at, False
    hours = sla_hours(exc.review)
    start = exc.due_at - timedelta(hours=float(hours))
    points = [start + timedelta(hours=float(hours * f)) for f in _plan(exc.review)]
    to_managers = now > exc.due_at
    later = [p for p in points if p > now]
    if later:
        return later[0], to_managers
    repeat = sla.get("repeat_hours")
    if repeat is None or sla.get("on_timeout") == "auto_approve" and auto_approves(exc):
        return None, to_managers
    step = timedelta(hours=float(Decimal(str(repeat))))
    k = max(1, int((now - exc.due_at) / step) + 1)
    return exc.due_at + k * step, to_managers


def auto_approves(exc: BillingException) -> bool:
    """Whether the rule's timeout outcome approves this exception at expiry: ``on_timeout:
    auto_approve`` and a variance whose amount at stake is below ``auto_approve_below``."""
    sla = (exc.review or {}).get("sla") or {}
    if sla.get("on_timeout") != "auto_approve" or exc.kind != "variance":
        return False
    below = sla.get("auto_approve_below")
    return below is not None and abs(exc.amount) < Decimal(str(below))
