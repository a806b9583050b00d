"""The exception message: one per exception in the exceptions channel, updated in place.

Open: header, advertiser / period / amount at stake / SLA, the variance in one line with a
"Details" button, and Approve / Reject / Force with confirm dialogs. Decided: the buttons are
replaced by "Approved by @x at t" with the reason. Never over 50 blocks.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.blocks.common import (
    FIELD_TEXT_MAX,
    SECTION_TEXT_MAX,
    cap_blocks,
    clip,
    esc,
    mention,
    money_text,
    period_text,
    slack_date,
)
from bot.workflows.decisions import valid_approvals
from storage.models import OPEN_EXCEPTION_STATES, BillingException, Decision

KIND_TITLE = {"variance": "Variance", "below_threshold": "Below billing threshold",
              "manual_change": "Manual change (maker-checker)", "stale_source": "Stale source data"}

# What each button does, per kind (DESIGN.md decision table).
BUTTON_TEXT = {
    ("variance", "approve"): ("Approve", "Bill the computed amount."),
    ("variance", "reject"): ("Reject", "Hold the pre-invoice for correction. You will be asked for a reason."),
    ("variance", "force"): ("Force", "Bill the booked amount, overriding the check. You will be asked for a reason."),
    ("below_threshold", "approve"): ("Approve", "Accept the skip; the items carry over to the next run."),
    ("below_threshold", "reject"): ("Reject", "Withdraw the items from billing. You will be asked for a reason."),
    ("below_threshold", "force"): ("Force", "Invoice now, below the threshold. You will be asked for a reason."),
    ("manual_change", "approve"): ("Approve", "Accept the change; the pre-invoice is billed as changed."),
    ("manual_change", "reject"): ("Reject", "Hold the pre-invoice for correction. You will be asked for a reason."),
    # issue 21: stale data is synced (the next run recomputes), not approved; Force bills it as it is
    ("stale_source", "reject"): ("Reject", "Hold the pre-invoice for correction. You will be asked for a reason."),
    ("stale_source", "force"): ("Force", "Bill the data as it is, despite the stale source. You will be asked "
                                         "for a reason."),
}
DECIDED_ICON = {"approved": ":white_check_mark:", "rejected": ":no_entry_sign:", "forced": ":zap:",
                "closed": ":heavy_minus_sign:"}
DECIDED_VERB = {"approved": "Approved", "rejected": "Rejected", "forced": "Forced", "closed": "Closed"}

ACTION_IDS = {"approve": "decide_approve", "reject": "decide_reject", "force": "decide_force"}
DETAILS_ACTION_ID = "exception_details"
ASSIGN_ME_ACTION_ID = "exception_assign_me"  # issue 21: owners
ASSIGN_ACTION_ID = "exception_assign"


def button_value(exception_id: int, subject_hash: str) -> str:
    """``<exception id>:<sha256 of what is decided on>`` — the click binds to what the reader saw."""
    return f"{exception_id}:{subject_hash}"


def parse_button_value(value: str) -> tuple[int, str]:
    ident, _, subject_hash = (value or "").partition(":")
    return int(ident), subject_hash


def _dec(v: Any) -> Decimal | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None


def tolerance_text(v: Any) -> str:
    d = _dec(v)
    if d is None:
        return str(v) if v is not None else "—"
    return f"{(d * 100).normalize():f} %" if d <= 1 else f"{d:f}"


def diff_lines(diff: Any) -> list[str]:
    """A manual change's before/after, one short phrase per changed field."""
    if not isinstance(diff, dict):
        return []
    before, after = diff.get("before"), diff.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        return [f"line {diff.get('line')} {k}: {before.get(k)} → {after.get(k)}"
                for k in after if before.get(k) != after.get(k)]
    fields = ", ".join(f"{k} {diff[k]}" for k in ("kind", "description", "amount") if k in diff)
    return [f"line {diff.get('line')}: {fields}"] if fields else []


def evidence_line(exc: BillingException) -> str:
    """The variance and its evidence in one short line."""
    ev = exc.evidence or {}
    parts: list[str] = []
    booked, computed = _dec(ev.get("booked_amount")), _dec(ev.get("computed_amount"))
    if booked is not None or computed is not None:
        parts.append(f"booked {money_text(booked, exc.currency)} vs computed {money_text(computed, exc.currency)}")
    total, threshold = _dec(ev.get("total")), _dec(ev.get("threshold"))
    if total is not None and threshold is not None:
        parts.append(f"total {money_text(total, exc.currency)} below threshold {money_text(threshold, exc.currency)}")
    before, after = _dec(ev.get("net_before")), _dec(ev.get("net_after"))
    if before is not None and after is not None:
        parts.append(f"{ev.get('change', 'changed')} by {mention(str(ev.get('editor')))}: net "
                     f"{money_text(before, exc.currency)} → {money_text(after, exc.currency)}")
        parts.extend(diff_lines(ev.get("diff")))
    if ev.get("rule"):
        parts.append(f"rule `{esc(ev['rule'])}`")
    if ev.get("tolerance") is not None:
        parts.append(f"tolerance {tolerance_text(ev['tolerance'])}")
    days = ev.get("days")
    if isinstance(days, list) and days:
        parts.append(f"{len(days)} day(s) involved")
    line = "; ".join(parts) or esc(exc.summary or "no evidence recorded")
    return clip(line[:1].upper() + line[1:], 1500)


def fallback_text(exc: BillingException, advertiser_name: str | None = None) -> str:
    """Notification text (push, screen readers) for the message."""
    who = advertiser_name or exc.advertiser_id
    return clip(f"{KIND_TITLE.get(exc.kind, exc.kind)} for {esc(who)}: {money_text(exc.amount, exc.currency)} at stake "
                f"({exc.state})", 300)


def _confirm(kind: str, decision: str, exc: BillingException) -> ConfirmObject:
    label, what = BUTTON_TEXT[(kind, decision)]
    return ConfirmObject(
        title=PlainTextObject(text=f"{label} exception #{exc.id}?"),
        text=MarkdownTextObject(text=clip(what, 300)),
        confirm=PlainTextObject(text=label),
        deny=PlainTextObject(text="Cancel"),
        style="danger" if decision != "approve" else "primary",
    )


def decision_buttons(exc: BillingException, subject_hash: str) -> ActionsBlock:
    kind = exc.kind if any((exc.kind, d) in BUTTON_TEXT for d in ACTION_IDS) else "variance"
    styles = {"approve": "primary", "reject": "danger", "force": None}
    elements = []
    for decision in [d for d in ("approve", "reject", "force") if (kind, d) in BUTTON_TEXT]:
        label, _ = BUTTON_TEXT[(kind, decision)]
        elements.append(ButtonElement(
            text=PlainTextObject(text=label), action_id=ACTION_IDS[decision],
            value=button_value(exc.id, subject_hash), style=styles[decision], confirm=_confirm(kind, decision, exc),
        ))
    return ActionsBlock(block_id=f"decide:{exc.id}", elements=elements)


def owner_buttons(exc: BillingException) -> ActionsBlock:
    """"Assign to me" and "Assign…" (a modal to pick the new owner) under an open exception."""
    return ActionsBlock(block_id=f"owner:{exc.id}", elements=[
        ButtonElement(text=PlainTextObject(text="Assign to me"), action_id=ASSIGN_ME_ACTION_ID, value=str(exc.id)),
        ButtonElement(text=PlainTextObject(text="Assign…"), action_id=ASSIGN_ACTION_ID, value=str(exc.id)),
    ])


def approvals_text(exc: BillingException) -> str | None:
    if exc.approvals_needed <= 1:
        return None
    current = valid_approvals(exc) if exc.state in OPEN_EXCEPTION_STATES else list(exc.approvals or [])
    got = len(current)
    names = ", ".join(mention(str(a.get("user"))) for a in current if isinstance(a, dict))
    return f"{got} of {exc.approvals_needed} approvals" + (f" ({names})" if names else "")


def exception_message(
    exc: BillingException, *, subject_hash: str, advertiser_name: str | None = None,
    last_decision: Decision | None = None,
) -> list[Block]:
    """Blocks for the exception's channel message, open or decided."""
    title = f"{KIND_TITLE.get(exc.kind, exc.kind)} — {advertiser_name or exc.advertiser_id}"
    fields = [
        MarkdownTextObject(text=f"*Advertiser*\n{clip(esc(advertiser_name or exc.advertiser_id), 200)}"),
        MarkdownTextObject(text=f"*Period*\n{period_text(exc.period_start, exc.period_end)}"),
        MarkdownTextObject(text=f"*Amount at stake*\n{money_text(exc.amount, exc.currency)}"),
        MarkdownTextObject(text=f"*Cause*\n{clip(esc(exc.cause or '—'), 200)}"),
    ]
    if exc.preinvoice_id is not None:
        fields.append(MarkdownTextObject(text=f"*Pre-invoice*\n#{exc.preinvoice_id}"))
    if exc.state in OPEN_EXCEPTION_STATES:
        sla = slack_date(exc.due_at)
        fields.append(MarkdownTextObject(
            text=f"*SLA due*\n{sla}" + (" :rotating_light: escalated" if exc.state == "escalated" else "")))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(title, 150))),
        SectionBlock(block_id=f"facts:{exc.id}", fields=fields[:10]),
        SectionBlock(
            block_id=f"evidence:{exc.id}",
            text=MarkdownTextObject(text=clip(evidence_line(exc), FIELD_TEXT_MAX)),
            accessory=ButtonElement(text=PlainTextObject(text="Details"), action_id=DETAILS_ACTION_ID,
                                    value=str(exc.id)),
        ),
    ]
    context = [f"Exception #{exc.id}"]
    if exc.started_by:
        context.append(f"started by {mention(exc.started_by)}")
    context.append(f"owner {mention(exc.owner)}" if exc.owner else "no owner yet")
    approvals = approvals_text(exc)
    if approvals:
        context.append(approvals)
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=clip(" · ".join(context), 2000))]))
    if exc.state in OPEN_EXCEPTION_STATES:
        blocks.append(decision_buttons(exc, subject_hash))
        blocks.append(owner_buttons(exc))
    else:
        blocks.append(DividerBlock())
        blocks.append(SectionBlock(block_id=f"decided:{exc.id}",
                                   text=MarkdownTextObject(text=decided_text(exc, last_decision))))
    return cap_blocks(blocks)


def decided_text(exc: BillingException, last_decision: Decision | None = None) -> str:
    icon = DECIDED_ICON.get(exc.state, "")
    verb = DECIDED_VERB.get(exc.state, exc.state.capitalize())
    if exc.state == "closed" and not exc.decided_by:
        return clip(f"{icon} Closed: the check no longer fires.", SECTION_TEXT_MAX)
    text = f"{icon} *{verb}* by {mention(exc.decided_by)} at {slack_date(exc.decided_at)}"
    if exc.approvals_needed > 1 and exc.state == "approved":
        others = [mention(str(a.get("user"))) for a in exc.approvals or [] if isinstance(a, dict)]
        text += f" ({len(others)} of {exc.approvals_needed} approvals: {', '.join(others)})"
    if exc.reason:
        text += "\n" + "\n".join(f">{line}" for line in clip(esc(exc.reason), 2000).splitlines())
    return clip(text, SECTION_TEXT_MAX)



def approvals_reset_text(exc: BillingException, *, why: str, dropped: list[str]) -> str:
    """The threaded reply when approvals given on older content stop counting."""
    names = ", ".join(mention(u) for u in dropped) or "nobody"
    what = "the pre-invoice" if exc.preinvoice_id is not None else "the exception"
    return clip(f":arrows_counterclockwise: Approvals reset: {what} changed after {len(dropped)} approval(s) "
                f"({names}) — {why}. {exc.approvals_needed} approval(s) of the new content are needed.",
                SECTION_TEXT_MAX)


def thread_reply_text(exc: BillingException, decision: Decision, *, final: bool) -> str:
    """The threaded reply after a decision."""
    who = mention(decision.actor_id)
    if not final:
        return clip(f":ballot_box_with_check: Approval {len(exc.approvals or [])} of {exc.approvals_needed} "
                    f"by {who} at {slack_date(decision.decided_at)}; a second, different approver is needed.",
                    SECTION_TEXT_MAX)
    verb = DECIDED_VERB.get(exc.state, exc.state)
    consequence = {
        ("variance", "approved"): "The computed amount will be billed.",
        ("variance", "rejected"): "The pre-invoice is held for correction.",
        ("variance", "forced"): "The booked amount will be billed, overriding the check.",
        ("below_threshold", "approved"): "The skip stands; the items carry over to the next run.",
        ("below_threshold", "rejected"): "The items were withdrawn from billing.",
        ("below_threshold", "forced"): "Invoiced now, below the threshold.",
        ("stale_source", "rejected"): "The pre-invoice is held for correction.",
        ("stale_source", "forced"): "The pre-invoice will be billed from the data as it is.",
    }.get((exc.kind, exc.state), "")
    text = f"{DECIDED_ICON.get(exc.state, '')} {verb} by {who} at {slack_date(decision.decided_at)}. {consequence}"
    if decision.reason:
        text += f"\nReason: {clip(esc(decision.reason), 2000)}"
    text += f"\nSigned record: SHA-256 `{decision.subject_hash[:16]}…`"
    return clip(text, SECTION_TEXT_MAX)


def evidence_json(exc: BillingException) -> str:
    return json.dumps(exc.evidence or {}, indent=2, ensure_ascii=False, default=str)
