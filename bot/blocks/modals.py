"""Modals: the reason a Reject or Force needs, and an exception's full evidence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot.blocks.common import cap_blocks, clip, esc, mention, money_text, period_text, slack_date
from bot.blocks.exceptions import BUTTON_TEXT, KIND_TITLE, evidence_json, evidence_line, tolerance_text
from bot.workflows.comments import Comment
from storage.models import BillingException

REASON_CALLBACK_ID = "decision_reason"
REASON_BLOCK_ID = "reason"
REASON_ACTION_ID = "reason_input"
DETAILS_CALLBACK_ID = "exception_details_modal"


def reason_modal(exc: BillingException, decision: str, metadata: dict[str, Any]) -> View:
    """The modal a Reject or Force opens; the reason input is required (Slack will not submit it
    empty, and the server checks again)."""
    kind = exc.kind if (exc.kind, decision) in BUTTON_TEXT else "variance"
    label, what = BUTTON_TEXT[(kind, decision)]
    return View(
        type="modal",
        callback_id=REASON_CALLBACK_ID,
        title=PlainTextObject(text=clip(f"{label} exception #{exc.id}", 24)),
        submit=PlainTextObject(text=label),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata, separators=(",", ":")),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=clip(
                f"*{KIND_TITLE.get(exc.kind, exc.kind)}* — {money_text(exc.amount, exc.currency)} at stake\n"
                f"{what}", 3000))),
            InputBlock(
                block_id=REASON_BLOCK_ID,
                label=PlainTextObject(text="Reason"),
                element=PlainTextInputElement(
                    action_id=REASON_ACTION_ID, multiline=True, min_length=3, max_length=2000,
                    placeholder=PlainTextObject(text="Why? This goes into the signed record.")),
                optional=False,
            ),
        ],
    )


def _kv(label: str, value: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=clip(f"*{label}*\n{value}", 2000))


def _kv_user(label: str, value: object) -> MarkdownTextObject:
    return _kv(label, esc(value))


def comments_text(comments: Sequence[Comment]) -> str:
    """The thread's comments, oldest first: who, when, what (edits marked, deletions struck through)."""
    lines = []
    for c in comments:
        said = f"~{esc(c.text)}~ _(deleted {slack_date(c.deleted_at)})_" if c.deleted_at else esc(c.text)
        edited = f" _(edited {len(c.edits)}×)_" if c.edits and not c.deleted_at else ""
        lines.append(f"• {mention(c.user)}, {slack_date(c.at)}: {said}{edited}")
    return clip("*Comments*\n" + "\n".join(lines), 3000)


def details_modal(exc: BillingException, advertiser_name: str | None = None,
                  comments: Sequence[Comment] = ()) -> View:
    """Everything the message leaves out: each figure compared, the days involved, the rule, and the
    comments from the message's thread (issue 21)."""
    ev = exc.evidence or {}
    blocks: list[Block] = [
        SectionBlock(fields=[
            _kv_user("Advertiser", advertiser_name or exc.advertiser_id),
            _kv("Period", period_text(exc.period_start, exc.period_end)),
            _kv("Amount at stake", money_text(exc.amount, exc.currency)),
            _kv_user("State", exc.state),
            _kv_user("Cause", ev.get("cause") or exc.cause or "—"),
            _kv_user("Rule", ev.get("rule") or "—"),
            _kv("Tolerance", tolerance_text(ev.get("tolerance"))),
            _kv("SLA due", slack_date(exc.due_at)),
            _kv("Owner", mention(exc.owner) if exc.owner else "nobody yet"),
        ]),
        SectionBlock(text=MarkdownTextObject(text=clip(evidence_line(exc), 3000))),
    ]
    if exc.summary:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(esc(exc.summary), 3000))))
    figures = ev.get("figures")
    if isinstance(figures, dict) and figures:
        blocks.append(DividerBlock())
        lines = [f"• {esc(k)}: {esc(v)}" for k, v in figures.items()]
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip("*Figures*\n" + "\n".join(lines), 3000))))
    days = ev.get("days")
    if isinstance(days, list) and days:
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=clip("*Days involved*\n" + ", ".join(esc(d) for d in days), 3000))))
    if comments:
        blocks.append(DividerBlock())
        blocks.append(SectionBlock(block_id=f"comments:{exc.id}",
                                   text=MarkdownTextObject(text=comments_text(comments))))
    blocks.append(DividerBlock())
    blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(f"```{esc(evidence_json(exc))}```", 3000))))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text=f"Exception #{exc.id} · key `{clip(esc(exc.key), 150)}`")]))
    return View(type="modal", callback_id=DETAILS_CALLBACK_ID,
                title=PlainTextObject(text=clip(f"Exception #{exc.id}", 24)),
                close=PlainTextObject(text="Close"), blocks=cap_blocks(blocks))


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
