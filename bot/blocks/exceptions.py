"""The exception message: one per exception in the exceptions channel, updated in place.

Open: header, advertiser / period / amount at stake / SLA, the variance in one line with a
"Details" button, and Approve / Reject / Force with confirm dialogs. Decided: the buttons are
replaced by "Approved by @x at t" with the reason. Never over 50 blocks.
"""

from __future__ import annotations

import json
from datetime import date
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
    SECTION_TEXT_MAX,
    cap_blocks,
    clip,
    day_ranges,
    esc,
    mention,
    money_sign,
    money_text,
    pct_text,
    period_text,
    slack_date,
    span_text,
)
from bot.workflows.decisions import valid_approvals
from bot.workflows.review import checklist_for, group_label
from storage.models import OPEN_EXCEPTION_STATES, BillingException, Decision

KIND_TITLE = {"variance": "Variance", "below_threshold": "Below billing threshold",
              "manual_change": "Manual change (maker-checker)", "stale_source": "Stale source data"}

# What each choice does, per kind (DESIGN.md decision table): a short label (modal title and submit
# button, at most 24 characters) and what it does in words. The message's buttons say what each
# choice bills (:func:`choice_labels`).
BUTTON_TEXT = {
    ("variance", "approve"): ("Bill delivered", "Bill the delivered (computed) amount."),
    ("variance", "reject"): ("Hold for correction", "Hold the pre-invoice for correction; its owner is told."),
    ("variance", "force"): ("Bill booked", "Bill the booked amount, overriding the check."),
    ("below_threshold", "approve"): ("Carry over", "Accept the skip; the items carry over to the next run."),
    ("below_threshold", "reject"): ("Write off", "Write the items off: they are never billed. Money leaving, so "
                                                 "only a finance manager may."),
    ("below_threshold", "force"): ("Invoice now", "Invoice now, below the threshold."),
    ("manual_change", "approve"): ("Accept change", "Accept the change; the pre-invoice is billed as changed."),
    ("manual_change", "reject"): ("Hold for correction", "Hold the pre-invoice for correction; its owner is told."),
    # issue 21: stale data is synced (the next run recomputes), not approved; Force bills it as it is
    ("stale_source", "reject"): ("Hold for correction", "Hold the pre-invoice for correction; its owner is told."),
    ("stale_source", "force"): ("Bill as it is", "Bill the data as it is, despite the stale source."),
}
#: Who may take each choice, in words (the role check itself is bot.workflows.decisions).
NEEDS_ROLE = {("variance", "force"): "finance_manager", ("below_threshold", "reject"): "finance_manager",
              ("below_threshold", "force"): "finance_manager", ("stale_source", "force"): "finance_manager"}
DECIDED_ICON = {"approved": ":white_check_mark:", "rejected": ":no_entry_sign:", "forced": ":zap:",
                "closed": ":heavy_minus_sign:"}
DECIDED_VERB = {"approved": "Approved", "rejected": "Rejected", "forced": "Forced", "closed": "Closed"}
#: What the decision was, in the words of the buttons
DECIDED_WHAT = {
    ("variance", "approved"): "billed as delivered", ("variance", "rejected"): "held for correction",
    ("variance", "forced"): "billed as booked", ("below_threshold", "approved"): "carried over",
    ("below_threshold", "rejected"): "written off", ("below_threshold", "forced"): "invoiced now",
    ("manual_change", "approved"): "change accepted", ("manual_change", "rejected"): "held for correction",
}

RULE_TEXT = {"delivered_vs_booked": "delivered vs booked", "first_vs_third_party": "ad server vs third party",
             "period_over_period": "period over period"}
CAUSE_TEXT = {
    "tracking_gap": "tracking gap: days without any ad-server data",
    "under_delivery": "under-delivery: fewer delivered, every day has data",
    "over_delivery": "over-delivery: more delivered than expected",
    "party_discrepancy": "the ad server and the third party count differently",
    "fx_swing": "exchange-rate swing: the quantity is steady, the rate moved",
    "make_good": "make-good (flagged on the item)",
    "below_threshold": "the total is below the advertiser's billing threshold",
    "manual_change": "a pre-invoice was changed by hand",
}

ACTION_IDS = {"approve": "decide_approve", "reject": "decide_reject", "force": "decide_force"}
DETAILS_ACTION_ID = "exception_details"
BUTTON_TEXT_MAX = 75  # Slack's limit for a button's text
ASSIGN_ME_ACTION_ID = "exception_assign_me"  # issue 21: owners
ASSIGN_ACTION_ID = "exception_assign"


def button_value(exception_id: int, subject_hash: str) -> str:
    """``<exception id>:<sha256 of what is decided on>`` — the click binds to what the reader saw."""
    return f"{exception_id}:{subject_hash}"


def parse_button_value(value: str) -> tuple[int, str]:
    ident, _, subject_hash = (value or "").partition(":")
    return int(ident), subject_hash


def dec(v: Any) -> Decimal | None:
    if v is None or isinstance(v, bool) or v == "":
        return None
    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def tolerance_text(v: Any) -> str:
    d = dec(v)
    if d is None:
        return str(v) if v is not None else "—"
    return f"{(d * 100).normalize():f} %" if d <= 1 else f"{d:f}"


def qty_text(d: Decimal | None) -> str:
    """``1,250``, ``1,250.5``, ``−3,960`` — a count as people write it."""
    if d is None:
        return "—"
    if d < 0:
        return "−" + qty_text(-d)
    if d == d.to_integral_value():
        return f"{d.to_integral_value():,}"
    return f"{d.quantize(Decimal('0.01')):,}".rstrip("0").rstrip(".")


def cause_text(cause: str | None) -> str:
    if not cause:
        return "—"
    return CAUSE_TEXT.get(cause) or esc(cause.replace("_", " "))


def rule_text(rule: str | None) -> str:
    if not rule:
        return "—"
    return RULE_TEXT.get(rule) or esc(rule.replace("_", " "))


def _pct_of(diff: Decimal | None, base: Decimal | None) -> Decimal | None:
    if diff is None or base is None or base == 0:
        return None
    return diff * 100 / base


def figures_of(f: dict[str, Any]) -> dict[str, Any]:
    figs = f.get("figures")
    return figs if isinstance(figs, dict) else {}


def finding_headline(ev: dict[str, Any], currency: str) -> str | None:
    """The finding in words and figures: ``50 clicks delivered vs 62 booked, −19 %``."""
    figs = figures_of(ev)
    metric = str(figs.get("metric") or "units")
    rule = ev.get("rule")
    if "le_amount" in figs:  # an exchange-rate swing
        le_cur = str(figs.get("legal_entity_currency") or currency)
        now_, prior_ = dec(figs.get("le_amount")), dec(figs.get("le_prior_amount"))
        return (f"{money_sign(now_, le_cur)} vs {money_sign(prior_, le_cur)}"
                f" in the prior period, {pct_text(dec(figs.get('le_change_pct')))} with the rate "
                f"{figs.get('rate_prior')} → {figs.get('rate_current')}")
    if rule == "first_vs_third_party" or "first_party" in figs:
        first, third = dec(figs.get("first_party")), dec(figs.get("third_party"))
        pct = dec(figs.get("difference_pct"))
        if pct is None and first is not None and third is not None:
            pct = _pct_of(first - third, first)
        return (f"{qty_text(first)} {metric} counted by the ad server vs {qty_text(third)} by the third party, "
                f"{pct_text(pct)}")
    if rule == "period_over_period" or "current_per_day" in figs:
        cur, prior = dec(figs.get("current_per_day")), dec(figs.get("prior_per_day"))
        pct = dec(figs.get("change_pct"))
        if pct is None and cur is not None and prior is not None:
            pct = _pct_of(cur - prior, prior)
        return f"{qty_text(cur)} {metric} a day vs {qty_text(prior)} in the prior period, {pct_text(pct)}"
    delivered = dec(figs.get("delivered"))
    expected = dec(figs.get("expected"))
    if expected is None:
        expected = dec(figs.get("booked"))
    if delivered is not None and expected is not None:
        pct = dec(figs.get("difference_pct"))
        if pct is None:
            pct = _pct_of(delivered - expected, expected)
        return f"{qty_text(delivered)} {metric} delivered vs {qty_text(expected)} booked, {pct_text(pct)}"
    return None


def _days(v: Any) -> list[date]:
    out = []
    for d in v if isinstance(v, list) else []:
        try:
            out.append(date.fromisoformat(str(d)))
        except ValueError:
            continue
    return out


def days_text(exc: BillingException, ev: dict[str, Any] | None = None) -> str | None:
    """The days involved as ranges: ``1–31 Oct, all days`` / ``3–4 Feb (2 of 28 days)``."""
    days = _days((ev if ev is not None else exc.evidence or {}).get("days"))
    if not days:
        return None
    period = (exc.period_start, exc.period_end) if exc.period_start and exc.period_end else None
    if period is not None and not all(period[0] <= d <= period[1] for d in days):
        period = None  # a prior-period comparison names days outside this period
    return day_ranges(days, period=period)


def days_label(f: dict[str, Any]) -> str:
    """What the evidence's days are: for a tracking gap the days without data, else the days compared."""
    return "Days without ad-server data" if f.get("cause") == "tracking_gap" else "Days"


def finding_text(exc: BillingException) -> str:
    """The message's lead: the finding in words and figures, then rule, days and cause."""
    ev = exc.evidence or {}
    lines: list[str] = []
    if exc.kind == "below_threshold":
        total, threshold = dec(ev.get("total")), dec(ev.get("threshold"))
        total = exc.amount if total is None else total
        pct = _pct_of(total - threshold, threshold) if threshold is not None else None
        lines.append(f"*{money_sign(total, exc.currency)} to bill vs a threshold of "
                     f"{money_sign(threshold, exc.currency)}, {pct_text(pct)}*")
        periods = [p for p in ev.get("periods") or [] if isinstance(p, list) and len(p) == 2]
        n = len(ev.get("preinvoice_ids") or [])
        what = f"{n} pre-invoice{'s' if n != 1 else ''}" if n else "The items"
        if periods:
            spans = [span_text(date.fromisoformat(a), date.fromisoformat(b)) for a, b in periods[:4]]
            what += " for " + "; ".join(spans) + (f" and {len(periods) - 4} more" if len(periods) > 4 else "")
        lines.append(f"{what} skipped; they carry over unless someone decides otherwise.")
        return clip("\n".join(lines), SECTION_TEXT_MAX)
    if exc.kind == "manual_change":
        before, after = dec(ev.get("net_before")), dec(ev.get("net_after"))
        if before is not None and after is not None:
            lines.append(f"*Net {money_sign(before, exc.currency)} → {money_sign(after, exc.currency)}, "
                         f"{pct_text(_pct_of(after - before, before))}* — {esc(ev.get('change', 'changed'))} by "
                         f"{mention(str(ev.get('editor')))}")
        lines.extend(esc(x) for x in diff_lines(ev.get("diff"))[:5])
        lines.append("A second person checks the change before it is billed.")
        return clip("\n".join(lines) or esc(exc.summary or ""), SECTION_TEXT_MAX)
    head = finding_headline(ev, exc.currency)
    tol = ev.get("tolerance")
    if head:
        lines.append(f"*{esc(head)}*" + (f" (tolerance {tolerance_text(tol)})" if tol is not None else ""))
    else:
        lines.append(esc(exc.summary or "No figures recorded."))
    item = ev.get("item") or ev.get("item_id")
    facts = []
    if ev.get("rule"):
        facts.append(f"*Rule:* {rule_text(ev.get('rule'))}" + (f" ({clip(esc(item), 80)})" if item else ""))
    days = days_text(exc, ev)
    if days:
        facts.append(f"*{days_label(ev)}:* {days}")
    facts.append(f"*Cause:* {cause_text(ev.get('cause') or exc.cause)}")
    lines.append(" · ".join(facts))
    more = len(ev.get("findings") or []) - 1
    if more > 0:
        lines.append(f"+{more} more finding{'s' if more > 1 else ''} (see Details)")
    return clip("\n".join(lines), SECTION_TEXT_MAX)


def diff_lines(diff: Any) -> list[str]:
    """A manual change's before/after, one short phrase per changed field."""
    if not isinstance(diff, dict):
        return []
    before, after = diff.get("before"), diff.get("after")
    if isinstance(before, dict) and isinstance(after, dict):  # a line edit, or header overrides (no line)
        where = f"line {diff.get('line')} " if "line" in diff else ""
        return [f"{where}{k}: {before.get(k)} → {after.get(k)}"
                for k in {**before, **after} if before.get(k) != after.get(k)]
    fields = ", ".join(f"{k} {diff[k]}" for k in ("kind", "description", "amount") if k in diff)
    return [f"line {diff.get('line')}: {fields}"] if fields else []


def evidence_line(exc: BillingException) -> str:
    """The finding in one short line (lists, the reason modal)."""
    ev = exc.evidence or {}
    if exc.kind == "variance":
        head = finding_headline(ev, exc.currency)
        if head:
            return clip(esc(head), 1500)
    text = finding_text(exc).splitlines()[0].strip("*")
    return clip(text, 1500)


def choice_labels(exc: BillingException) -> dict[str, str]:
    """What each button bills, on the button: ``Bill 3,062.00 € (delivered)``, ``Write off 180.00 €``."""
    ev = exc.evidence or {}
    if exc.kind == "below_threshold":
        total = dec(ev.get("total"))
        total = exc.amount if total is None else total
        labels = {"approve": "Carry over", "reject": f"Write off {money_sign(total, exc.currency)}",
                  "force": "Invoice now"}
    elif exc.kind == "manual_change":
        labels = {"approve": "Accept the change", "reject": "Hold for correction"}
    elif exc.kind == "stale_source":
        labels = {"reject": "Hold for correction", "force": "Bill as it is"}
    else:
        computed, booked = dec(ev.get("computed_amount")), dec(ev.get("booked_amount"))
        labels = {
            "approve": f"Bill {money_sign(computed, exc.currency)} (delivered)" if computed is not None
            else "Bill the delivered amount",
            "reject": "Hold for correction",
            "force": f"Bill {money_sign(booked, exc.currency)} (booked)" if booked is not None
            else "Bill the booked amount",
        }
    return {d: clip(t, BUTTON_TEXT_MAX) for d, t in labels.items()}


def fallback_text(exc: BillingException, advertiser_name: str | None = None) -> str:
    """Notification text (push, screen readers) for the message."""
    who = advertiser_name or exc.advertiser_id
    return clip(f"{KIND_TITLE.get(exc.kind, exc.kind)} for {esc(who)}: {evidence_line(exc)} ({exc.state})", 300)


def _confirm(kind: str, exc: BillingException, label: str) -> ConfirmObject:
    _, what = BUTTON_TEXT[(kind, "approve")]
    return ConfirmObject(
        title=PlainTextObject(text=clip(f"Exception #{exc.id}", 100)),
        text=MarkdownTextObject(text=clip(f"*{esc(label)}*: {what}", 300)),
        confirm=PlainTextObject(text=clip(BUTTON_TEXT[(kind, "approve")][0], 30)),
        deny=PlainTextObject(text="Cancel"),
        style="primary",
    )


def decision_buttons(exc: BillingException, subject_hash: str) -> ActionsBlock:
    """The choices, each saying what it bills. Approve asks for a confirmation; Reject and Force open
    the reason modal directly (the modal is their confirmation)."""
    kind = exc.kind if any((exc.kind, d) in BUTTON_TEXT for d in ACTION_IDS) else "variance"
    styles = {"approve": "primary", "reject": "danger", "force": None}
    labels = choice_labels(exc)
    elements = []
    for decision in [d for d in ("approve", "reject", "force") if (kind, d) in BUTTON_TEXT]:
        label = labels.get(decision) or BUTTON_TEXT[(kind, decision)][0]
        # a checklist opens a modal (its submit is the confirmation), so no confirm dialog before it
        confirm = (_confirm(kind, exc, label) if decision == "approve" and not checklist_for(exc, decision)
                   else None)
        elements.append(ButtonElement(
            text=PlainTextObject(text=label), action_id=ACTION_IDS[decision],
            value=button_value(exc.id, subject_hash), style=styles[decision], confirm=confirm,
        ))
    return ActionsBlock(block_id=f"decide:{exc.id}", elements=elements)


def roles_hint(exc: BillingException) -> str | None:
    """``Write off and Invoice now need a finance manager`` — said before anyone clicks."""
    kind = exc.kind if any((exc.kind, d) in BUTTON_TEXT for d in ACTION_IDS) else "variance"
    needs = [BUTTON_TEXT[(kind, d)][0] for d in ("approve", "reject", "force") if (kind, d) in NEEDS_ROLE]
    if not needs:
        return None
    return f"{' and '.join(needs)} need{'s' if len(needs) == 1 else ''} a finance manager"


def amount_fields(exc: BillingException) -> list[MarkdownTextObject]:
    """The money, each figure named for what it is."""
    ev = exc.evidence or {}
    out: list[MarkdownTextObject] = []
    if exc.kind == "variance":
        computed, booked = dec(ev.get("computed_amount")), dec(ev.get("booked_amount"))
        if computed is not None and booked is not None:
            out.append(MarkdownTextObject(text=f"*Delivered / booked amount*\n{money_text(computed, exc.currency)} / "
                                               f"{money_text(booked, exc.currency)}"))
            out.append(MarkdownTextObject(text=f"*Difference (booked − delivered)*\n"
                                               f"{money_text(booked - computed, exc.currency)}"))
        else:
            out.append(MarkdownTextObject(text=f"*Value of the variance*\n{money_text(exc.amount, exc.currency)}"))
    elif exc.kind == "below_threshold":
        total, threshold = dec(ev.get("total")), dec(ev.get("threshold"))
        out.append(MarkdownTextObject(
            text=f"*Unbilled total*\n{money_text(exc.amount if total is None else total, exc.currency)}"))
        if threshold is not None:
            out.append(MarkdownTextObject(text=f"*Billing threshold*\n{money_text(threshold, exc.currency)}"))
    elif exc.kind == "stale_source":
        out.append(MarkdownTextObject(text=f"*Pre-invoice net*\n{money_text(exc.amount, exc.currency)}"))
    else:
        out.append(MarkdownTextObject(text=f"*Net change*\n{money_text(exc.amount, exc.currency)}"))
    return out


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


def routing_text(exc: BillingException) -> str | None:
    """"Decided by <!subteam^S…> (@finance-leads) · rule big-x" when a routing rule names a group."""
    approvers = (exc.review or {}).get("approvers")
    if not approvers:
        return None
    return f"decided by {group_label(approvers)} (rule `{esc(exc.review.get('rule')) if exc.review else ''}`)"


def exception_message(
    exc: BillingException, *, subject_hash: str, advertiser_name: str | None = None,
    last_decision: Decision | None = None, working: tuple[str, str] | None = None,
    invoice_numbers: list[str] | None = None,
) -> list[Block]:
    """Blocks for the exception's channel message, open or decided.

    It leads with the finding in words and figures; the buttons say what each choice bills.
    ``working=(decision, user)``: a decision is being recorded — the buttons are replaced by
    "Working…" until the final state replaces the message. ``invoice_numbers``: the invoice(s) the
    decided exception was billed in."""
    title = f"{KIND_TITLE.get(exc.kind, exc.kind)} — {advertiser_name or exc.advertiser_id}"
    fields = [
        MarkdownTextObject(text=f"*Advertiser*\n{clip(esc(advertiser_name or exc.advertiser_id), 200)}"),
        MarkdownTextObject(text=f"*Period*\n{period_text(exc.period_start, exc.period_end)}"),
        *amount_fields(exc),
    ]
    if exc.preinvoice_id is not None:
        fields.append(MarkdownTextObject(text=f"*Pre-invoice*\n#{exc.preinvoice_id}"))
    if exc.state in OPEN_EXCEPTION_STATES:
        sla = slack_date(exc.due_at)
        fields.append(MarkdownTextObject(
            text=f"*SLA due*\n{sla}" + (" :rotating_light: escalated" if exc.state == "escalated" else "")))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(title, 150))),
        SectionBlock(
            block_id=f"evidence:{exc.id}",
            text=MarkdownTextObject(text=clip(finding_text(exc), SECTION_TEXT_MAX)),
            accessory=ButtonElement(text=PlainTextObject(text="Details"), action_id=DETAILS_ACTION_ID,
                                    value=str(exc.id)),
        ),
        SectionBlock(block_id=f"facts:{exc.id}", fields=fields[:10]),
    ]
    context = [f"Exception #{exc.id}"]
    if exc.started_by:
        context.append(f"started by {mention(exc.started_by)}")
    context.append(f"owner {mention(exc.owner)}" if exc.owner else "no owner yet")
    approvals = approvals_text(exc)
    if approvals:
        context.append(approvals)
    hint = roles_hint(exc) if exc.state in OPEN_EXCEPTION_STATES else None
    if hint:
        context.append(hint)
    routed = routing_text(exc)
    if routed:
        context.append(routed)
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=clip(" · ".join(context), 2000))]))
    if exc.state in OPEN_EXCEPTION_STATES and working is not None:
        decision, user = working
        kind = exc.kind if (exc.kind, decision) in BUTTON_TEXT else "variance"
        label = choice_labels(exc).get(decision) or BUTTON_TEXT.get((kind, decision), (decision, ""))[0]
        blocks.append(ContextBlock(block_id=f"working:{exc.id}", elements=[MarkdownTextObject(
            text=clip(f":hourglass_flowing_sand: Working… *{esc(label)}* by {mention(user)}", 2000))]))
    elif exc.state in OPEN_EXCEPTION_STATES:
        blocks.append(decision_buttons(exc, subject_hash))
        blocks.append(owner_buttons(exc))
    else:
        blocks.append(DividerBlock())
        blocks.append(SectionBlock(block_id=f"decided:{exc.id}",
                                   text=MarkdownTextObject(text=decided_text(exc, last_decision, invoice_numbers))))
    return cap_blocks(blocks)


def decided_text(exc: BillingException, last_decision: Decision | None = None,
                 invoice_numbers: list[str] | None = None) -> str:
    icon = DECIDED_ICON.get(exc.state, "")
    verb = DECIDED_VERB.get(exc.state, exc.state.capitalize())
    if exc.state == "closed" and not exc.decided_by:
        return clip(f"{icon} Closed: the check no longer fires.", SECTION_TEXT_MAX)
    what = DECIDED_WHAT.get((exc.kind, exc.state))
    text = f"{icon} *{verb}* by {mention(exc.decided_by)} at {slack_date(exc.decided_at)}" + \
        (f" — {what}" if what else "")
    if exc.approvals_needed > 1 and exc.state == "approved":
        others = [mention(str(a.get("user"))) for a in exc.approvals or [] if isinstance(a, dict)]
        text += f" ({len(others)} of {exc.approvals_needed} approvals: {', '.join(others)})"
    if invoice_numbers:
        text += "\n:receipt: Invoiced in " + ", ".join(f"*{esc(n)}*" for n in invoice_numbers[:10]) + \
            (f" and {len(invoice_numbers) - 10} more" if len(invoice_numbers) > 10 else "")
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
        ("below_threshold", "rejected"): "The items were written off: they will not be billed.",
        ("below_threshold", "forced"): "Invoiced now, below the threshold.",
        ("stale_source", "rejected"): "The pre-invoice is held for correction.",
        ("stale_source", "forced"): "The pre-invoice will be billed from the data as it is.",
    }.get((exc.kind, exc.state), "")
    text = f"{DECIDED_ICON.get(exc.state, '')} {verb} by {who} at {slack_date(decision.decided_at)}. {consequence}"
    if decision.reason:
        text += f"\nReason: {clip(esc(decision.reason), 2000)}"
    ticked = checklist_for(exc, decision.decision) if decision.actor_id != "system" else []
    if ticked:  # a decision under a checklist was only recorded with every item ticked (issue 21)
        text += "\nChecklist: " + "; ".join(f":ballot_box_with_check: {esc(it)}" for it in ticked)
    text += f"\nSigned record: SHA-256 `{decision.subject_hash[:16]}…`"
    return clip(text, SECTION_TEXT_MAX)


def evidence_json(exc: BillingException) -> str:
    return json.dumps(exc.evidence or {}, indent=2, ensure_ascii=False, default=str)
