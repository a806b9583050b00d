"""Modals: the reason a Reject or Force needs, and an exception's full evidence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    DividerBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot.blocks.common import cap_blocks, clip, esc, mention, money_text, pct_text, period_text, slack_date, span_text
from bot.blocks.exceptions import (
    BUTTON_TEXT,
    KIND_TITLE,
    RULE_TEXT,
    amount_fields,
    cause_text,
    choice_labels,
    days_label,
    days_text,
    dec,
    evidence_line,
    figures_of,
    finding_headline,
    finding_text,
    qty_text,
    rule_text,
    tolerance_text,
)
from bot.workflows.comments import Comment
from bot.workflows.review import checklist_for
from storage.models import BillingException

REASON_CALLBACK_ID = "decision_reason"
REASON_BLOCK_ID = "reason"
REASON_ACTION_ID = "reason_input"
CHECKLIST_BLOCK_ID = "checklist"
CHECKLIST_ACTION_ID = "checklist_input"
DETAILS_CALLBACK_ID = "exception_details_modal"
DOWNLOAD_ACTION_ID = "exception_evidence_download"


def reason_modal(exc: BillingException, decision: str, metadata: dict[str, Any]) -> View:
    """The modal a Reject or Force opens at once (it is the confirmation) — and an Approve when a
    checklist applies (issue 21). The reason input is required for Reject / Force (Slack will not submit
    it empty, and the server checks again); the checklist's items are checkboxes, all to be ticked (the
    submission is refused naming the missing ones otherwise)."""
    kind = exc.kind if (exc.kind, decision) in BUTTON_TEXT else "variance"
    label, what = BUTTON_TEXT[(kind, decision)]
    choice = choice_labels(exc).get(decision, label)
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=clip(
            f"*{esc(choice)}* — exception #{exc.id}, {KIND_TITLE.get(exc.kind, exc.kind).lower()}\n"
            f"{evidence_line(exc)}\n{what}", 3000))),
    ]
    items = checklist_for(exc, decision)
    if items:
        blocks.append(InputBlock(
            block_id=CHECKLIST_BLOCK_ID,
            label=PlainTextObject(text="Checklist (tick every item)"),
            hint=PlainTextObject(text="The ticked items go into the signed decision record."),
            element=CheckboxesElement(action_id=CHECKLIST_ACTION_ID, options=[
                Option(value=str(n), text=PlainTextObject(text=clip(item, 75))) for n, item in enumerate(items, 1)
            ]),
            optional=False,  # Slack refuses an empty one itself; billbot refuses a partial one naming what is missing
        ))
    if decision != "approve":
        blocks.append(InputBlock(
            block_id=REASON_BLOCK_ID,
            label=PlainTextObject(text="Reason"),
            element=PlainTextInputElement(
                action_id=REASON_ACTION_ID, multiline=True, min_length=3, max_length=2000,
                placeholder=PlainTextObject(text="Why? This goes into the signed record.")),
            optional=False,
        ))
    return View(
        type="modal",
        callback_id=REASON_CALLBACK_ID,
        title=PlainTextObject(text=clip(label, 24)),
        submit=PlainTextObject(text=clip(label, 24)),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata, separators=(",", ":")),
        blocks=blocks,
    )


def _kv(label: str, value: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=clip(f"*{label}*\n{value}", 2000))


def _kv_user(label: str, value: object) -> MarkdownTextObject:
    return _kv(label, esc(value))


STATE_TEXT = {"pending": "waiting for a decision", "escalated": "escalated (SLA passed)", "approved": "approved",
              "rejected": "rejected", "forced": "forced", "closed": "closed (the check no longer fires)"}
TOLERANCE_SOURCE = {"item": "set on the item", "campaign": "set on the campaign", "advertiser": "set on the advertiser",
                    "legal_entity": "set on the legal entity", "default": "the default"}
PCT_FIGURES = {"difference_pct", "change_pct", "le_change_pct", "amount_change_pct", "rate_change_pct"}
DAY_FIGURES = {"running_days", "item_days", "days_with_data", "missing_days", "days_with_first_party",
               "days_with_third_party", "current_days", "prior_days"}
MONEY_FIGURES = {"amount": "currency", "prior_amount": "currency", "le_amount": "legal_entity_currency",
                 "le_amount_at_prior_rate": "legal_entity_currency", "le_prior_amount": "legal_entity_currency"}
FIGURE_LABELS = {
    "delivered": "Delivered", "expected": "Booked for the period", "booked_quantity": "Booked, whole flight",
    "booked": "Booked", "difference": "Difference", "difference_pct": "Difference in %",
    "running_days": "Days running in the period", "item_days": "Days in the flight",
    "days_with_data": "Days with ad-server data", "missing_days": "Days without ad-server data",
    "first_party": "Ad server (first party)", "third_party": "Third party",
    "days_with_first_party": "Days with ad-server data", "days_with_third_party": "Days with third-party data",
    "current": "This period", "prior": "Prior period", "current_per_day": "This period, a day",
    "prior_per_day": "Prior period, a day", "change_pct": "Change a day", "current_days": "Days this period",
    "prior_days": "Days prior period", "amount": "Amount", "prior_amount": "Prior amount",
    "rate_current": "Exchange rate now", "rate_prior": "Exchange rate before", "le_amount": "Value now",
    "le_amount_at_prior_rate": "Value at the prior rate", "le_prior_amount": "Prior value",
    "le_change_pct": "Value change", "amount_change_pct": "Amount change", "rate_change_pct": "Rate change",
}
SKIP_FIGURES = {"metric", "currency", "legal_entity_currency", "prior_period_start", "prior_period_end"}


def figure_text(name: str, value: Any, figs: dict[str, Any], currency: str) -> str:
    """One figure with its unit: ``2,100 clicks``, ``−30 %``, ``31 days``, ``3,062.00 EUR``."""
    d = dec(value)
    if d is None:
        return esc(value) if value not in (None, "") else "—"
    if name in PCT_FIGURES:
        return pct_text(d)
    if name in DAY_FIGURES:
        return f"{qty_text(d)} day{'s' if d != 1 else ''}"
    if name in MONEY_FIGURES:
        return money_text(d, str(figs.get(MONEY_FIGURES[name]) or currency))
    if name.startswith("rate_"):
        return f"{d.normalize():f}"
    return f"{qty_text(d)} {esc(figs.get('metric') or 'units')}"


def finding_fields(f: dict[str, Any], currency: str) -> list[MarkdownTextObject]:
    figs = figures_of(f)
    order = {k: i for i, k in enumerate(FIGURE_LABELS)}
    keys = sorted((k for k, v in figs.items() if k not in SKIP_FIGURES and v not in (None, "")),
                  key=lambda k: (order.get(k, len(order)), k))
    out = [_kv(FIGURE_LABELS.get(k, esc(k).replace("_", " ").capitalize()), figure_text(k, figs[k], figs, currency))
           for k in keys]
    if figs.get("prior_period_start") and figs.get("prior_period_end"):
        try:
            out.append(_kv("Prior period", span_text(date.fromisoformat(str(figs["prior_period_start"])),
                                                     date.fromisoformat(str(figs["prior_period_end"])))))
        except ValueError:
            pass
    return out


def _finding_block(i: int, f: dict[str, Any], exc: BillingException) -> list[Block]:
    tol = f.get("tolerance")
    src = TOLERANCE_SOURCE.get(str(f.get("tolerance_source")), "")
    head = finding_headline(f, exc.currency)
    lines = [f"*Finding {i}: {rule_text(f.get('rule'))}*" + (f" — {clip(esc(f.get('item') or f.get('item_id')), 150)}"
                                                              if f.get("item") or f.get("item_id") else "")]
    if head:
        lines.append(esc(head))
    lines.append(f"Cause: {cause_text(f.get('cause'))}")
    if tol is not None:
        lines.append(f"Tolerance: {tolerance_text(tol)}" + (f" ({src})" if src else ""))
    days = days_text(exc, f)
    if days:
        lines.append(f"{days_label(f)}: {days}")
    if f.get("amount_at_stake") is not None:
        lines.append(f"Money at stake: {money_text(dec(f.get('amount_at_stake')), exc.currency)}")
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=clip("\n".join(lines), 3000)))]
    fields = finding_fields(f, exc.currency)
    if fields:
        blocks.append(SectionBlock(fields=fields[:10]))
    return blocks


def table_text(header: list[str], rows: list[list[str]], *, limit: int = 2900) -> str:
    """A monospace table in a code block: aligned columns, whole rows only, the fence always closed
    (rows that do not fit are counted: ``… and N more rows``)."""
    rows = [[esc(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    out = [line(header)]
    used = len(out[0]) + 8
    shown = 0
    for r in rows:
        ln = line(r)
        if used + len(ln) + 1 + 40 > limit:
            break
        out.append(ln)
        used += len(ln) + 1
        shown += 1
    text = "```" + "\n".join(out) + "```"
    if shown < len(rows):
        text += f"\n… and {len(rows) - shown} more rows (Download evidence)"
    return text


def findings_table(exc: BillingException) -> str | None:
    """Every finding in one table: item, rule, measured, expected, difference, money at stake."""
    ev = exc.evidence or {}
    findings = [f for f in ev.get("findings") or [] if isinstance(f, dict)]
    if len(findings) < 2:
        return None
    rows = []
    for f in findings:
        figs = figures_of(f)
        measured = figs.get("delivered", figs.get("first_party", figs.get("current_per_day", figs.get("le_amount"))))
        expected = figs.get("expected", figs.get("third_party", figs.get("prior_per_day", figs.get("le_prior_amount"))))
        pct = figs.get("difference_pct", figs.get("change_pct", figs.get("le_change_pct")))
        rule = str(f.get("rule") or "")
        rows.append([clip(str(f.get("item") or f.get("item_id") or ""), 28), RULE_TEXT.get(rule, rule),
                     qty_text(dec(measured)), qty_text(dec(expected)), pct_text(dec(pct)),
                     money_text(dec(f.get("amount_at_stake")), exc.currency)])
    return table_text(["item", "rule", "measured", "expected", "diff", "at stake"], rows)


def rows_table(rows: list[dict[str, Any]]) -> str | None:
    """The delivery rows behind the primary finding (top rows): day, party, source and counts."""
    if not rows:
        return None
    body = [[str(r.get("day", "")), str(r.get("party", "")).replace("_", " "), str(r.get("source", "")),
             *(qty_text(dec(r.get(k))) for k in ("impressions", "clicks", "conversions"))] for r in rows]
    return table_text(["day", "party", "source", "impressions", "clicks", "conversions"], body)


def comments_text(comments: Sequence[Comment]) -> str:
    """The thread's comments, oldest first: who, when, what (edits marked, deletions struck through)."""
    lines = []
    for c in comments:
        said = f"~{esc(c.text)}~ _(deleted {slack_date(c.deleted_at)})_" if c.deleted_at else esc(c.text)
        edited = f" _(edited {len(c.edits)}×)_" if c.edits and not c.deleted_at else ""
        lines.append(f"• {mention(c.user)}, {slack_date(c.at)}: {said}{edited}")
    return clip("*Comments*\n" + "\n".join(lines), 3000)


def details_modal(exc: BillingException, advertiser_name: str | None = None,
                  comments: Sequence[Comment] = (), *,
                  rows: list[dict[str, Any]] | None = None, total_rows: int | None = None) -> View:
    """Everything the message leaves out, in plain language: each finding's figures with units, the
    days as ranges, the rows behind it as a table (``rows``: the top ones), and a "Download
    evidence" button for the full pack; the comments from the message's thread (issue 21)."""
    ev = exc.evidence or {}
    fields = [
        _kv_user("Advertiser", advertiser_name or exc.advertiser_id),
        _kv("Period", period_text(exc.period_start, exc.period_end)),
        *amount_fields(exc),
        _kv("State", STATE_TEXT.get(exc.state, esc(exc.state))),
        _kv("SLA due", slack_date(exc.due_at)),
        _kv("Owner", mention(exc.owner) if exc.owner else "nobody yet"),
    ]
    if exc.preinvoice_id is not None:
        fields.append(_kv("Pre-invoice", f"#{exc.preinvoice_id}"))
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=clip(finding_text(exc), 3000))),
        SectionBlock(fields=fields[:10]),
    ]
    findings = [f for f in ev.get("findings") or [] if isinstance(f, dict)] or ([ev] if ev.get("figures") else [])
    for i, f in enumerate(findings[:5], start=1):
        blocks.append(DividerBlock())
        blocks.extend(_finding_block(i, f, exc))
    if len(findings) > 5:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"… and {len(findings) - 5} more findings (all of them in the table below and the download)")]))
    table = findings_table(exc)
    if table:
        blocks.append(DividerBlock())
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip("*All findings*\n" + table, 3000))))
    rt = rows_table(rows or [])
    if rt:
        more = f" (top {len(rows or [])} of {total_rows})" if total_rows and total_rows > len(rows or []) else ""
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(f"*Rows behind it{more}*\n" + rt, 3000))))
    if exc.summary and not findings:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(esc(exc.summary), 3000))))
    if comments:
        blocks.append(DividerBlock())
        blocks.append(SectionBlock(block_id=f"comments:{exc.id}",
                                   text=MarkdownTextObject(text=comments_text(comments))))
    blocks.append(ActionsBlock(block_id=f"evidence_actions:{exc.id}", elements=[ButtonElement(
        text=PlainTextObject(text="Download evidence"), action_id=DOWNLOAD_ACTION_ID, value=str(exc.id))]))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text=f"Exception #{exc.id} · the download (zip: evidence, findings and source rows as CSV) is posted "
             "in the exception's thread")]))
    return View(type="modal", callback_id=DETAILS_CALLBACK_ID,
                title=PlainTextObject(text=clip(f"Exception #{exc.id}", 24)),
                close=PlainTextObject(text="Close"), blocks=cap_blocks(blocks, what="sections"))


ASSIGN_CALLBACK_ID = "exception_assign_modal"
ASSIGN_BLOCK_ID = "owner"
ASSIGN_INPUT_ID = "owner_input"


def assign_modal(exc: BillingException, metadata: dict[str, Any]) -> View:
    """"Assign…": pick the exception's new owner (issue 21)."""
    return View(
        type="modal", callback_id=ASSIGN_CALLBACK_ID,
        title=PlainTextObject(text=clip(f"Assign exception #{exc.id}", 24)),
        submit=PlainTextObject(text="Assign"), close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata, separators=(",", ":")),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=clip(
                f"*{KIND_TITLE.get(exc.kind, exc.kind)}* — {money_text(exc.amount, exc.currency)} at stake\n"
                f"Owner now: {mention(exc.owner) if exc.owner else 'nobody'}. The owner gets the reminders in a DM.",
                3000))),
            InputBlock(block_id=ASSIGN_BLOCK_ID, label=PlainTextObject(text="New owner"),
                       element=UserSelectElement(action_id=ASSIGN_INPUT_ID, initial_user=exc.owner or None,
                                                 placeholder=PlainTextObject(text="Who owns it?")),
                       optional=False),
        ],
    )
