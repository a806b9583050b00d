"""Block Kit for disputes (issue 20): the dispute's message with its resolution buttons, the thread
replies, and the reason modals (reject a dispute, reject a credit proposal, open one from an invoice)."""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.blocks.common import cap_blocks, clip, esc, mention, money_text, slack_date
from bot.workflows.disputes import CATEGORY_TEXT, DisputeView

PROPOSE_ACTION_ID = "dispute_propose_credit"
REJECT_ACTION_ID = "dispute_reject"
WITHDRAW_ACTION_ID = "dispute_withdrawn"
CREDIT_APPROVE_ACTION_ID = "dispute_credit_approve"
CREDIT_REJECT_ACTION_ID = "dispute_credit_reject"
OVERFLOW_ACTION_ID = "invoice_overflow"  # the "Dispute" item on invoice messages
REASON_CALLBACK_ID = "dispute_reason"
OPEN_CALLBACK_ID = "dispute_open"
REASON_BLOCK_ID = "reason"
REASON_ACTION_ID = "reason_input"
CATEGORY_BLOCK_ID = "category"
CATEGORY_ACTION_ID = "category_select"

STATE_TEXT = {"open": "open", "proposed": "credit proposed, waiting for approval", "credited": "credited",
              "rejected": "rejected", "withdrawn": "withdrawn by the client"}


def fallback_text(v: DisputeView) -> str:
    return (f"Dispute #{v.id} on {v.invoice} ({v.advertiser}): {CATEGORY_TEXT.get(v.category, v.category)}, "
            f"{money_text(v.amount, v.currency)} — {STATE_TEXT.get(v.state, v.state)}")


def dispute_message(v: DisputeView) -> list[Block]:
    head = (f"*Dispute #{v.id}* on *{esc(v.invoice)}* — {esc(v.advertiser)}\n"
            f"{CATEGORY_TEXT.get(v.category, v.category).capitalize()} · disputed "
            f"*{money_text(v.amount, v.currency)}* · {len(v.lines)} line(s) · owner {mention(v.owner)}")
    facts = [f"_{esc(v.reason)}_"]
    if v.client_contact or v.client_reference:
        facts.append(" · ".join(x for x in (
            f"client contact {esc(v.client_contact)}" if v.client_contact else "",
            f"client reference {esc(v.client_reference)}" if v.client_reference else "") if x))
    blocks: list[Block] = [
        SectionBlock(block_id=f"dispute:{v.id}", text=MarkdownTextObject(text=clip(head, 3000))),
        SectionBlock(block_id=f"dispute_facts:{v.id}", text=MarkdownTextObject(text=clip("\n".join(facts), 3000))),
    ]
    value = str(v.id)
    if v.state == "open":
        blocks.append(ContextBlock(block_id=f"dispute_sla:{v.id}", elements=[MarkdownTextObject(
            text=f"SLA {slack_date(v.due_at)}" + (" · *escalated*" if v.escalated else ""))]))
        blocks.append(ActionsBlock(block_id=f"dispute_resolve:{v.id}", elements=[
            ButtonElement(text=PlainTextObject(text="Propose credit"), action_id=PROPOSE_ACTION_ID, value=value,
                          style="primary"),
            ButtonElement(text=PlainTextObject(text="Reject dispute"), action_id=REJECT_ACTION_ID, value=value,
                          style="danger"),
            ButtonElement(text=PlainTextObject(text="Withdrawn by client"), action_id=WITHDRAW_ACTION_ID,
                          value=value),
        ]))
    elif v.state == "proposed":
        blocks.append(ContextBlock(block_id=f"dispute_state:{v.id}", elements=[MarkdownTextObject(
            text=f"Credit proposal #{v.credit_request} waits for a finance manager other than its proposer")]))
        blocks.append(ActionsBlock(block_id=f"dispute_credit:{v.id}", elements=[
            ButtonElement(text=PlainTextObject(text="Approve credit"), action_id=CREDIT_APPROVE_ACTION_ID,
                          value=f"{v.id}:{v.credit_request}", style="primary"),
            ButtonElement(text=PlainTextObject(text="Reject credit"), action_id=CREDIT_REJECT_ACTION_ID,
                          value=f"{v.id}:{v.credit_request}", style="danger"),
        ]))
    else:
        outcome = (f"credited {money_text(v.credited, v.currency)}" if v.state == "credited"
                   else STATE_TEXT.get(v.state, v.state))
        why = f": {esc(v.resolution)}" if v.resolution and v.state != "credited" else ""
        blocks.append(ContextBlock(block_id=f"dispute_outcome:{v.id}", elements=[MarkdownTextObject(text=clip(
            f"Resolved — {outcome}{why} · by {mention(v.resolved_by)} after {v.days_open} day(s)", 2000))]))
    return cap_blocks(blocks)


def summary_text(v: DisputeView, paragraphs: list[str]) -> str:
    body = "\n\n".join(esc(p) for p in paragraphs) or "No lines."
    return clip(f":mag: *Evidence for dispute #{v.id}* ({esc(v.invoice)})\n\n{body}", 3900)


def updated_reply(v: DisputeView) -> str:
    if v.state == "proposed":
        return (f"Credit proposal #{v.credit_request} for dispute #{v.id} waits for a finance manager other "
                "than its proposer.")
    if v.state == "open":
        return f"The credit proposal for dispute #{v.id} was rejected; the dispute is open again."
    outcome = (f"credited {money_text(v.credited, v.currency)}" if v.state == "credited"
               else STATE_TEXT.get(v.state, v.state))
    why = f" Reason for the client: {esc(v.resolution)}" if v.state == "rejected" and v.resolution else ""
    return (f"Dispute #{v.id} resolved by {mention(v.resolved_by)}: {outcome} after {v.days_open} day(s).{why}")


def reason_modal(title: str, metadata: dict[str, Any], *, label: str = "Reason") -> View:
    return View(
        type="modal", callback_id=REASON_CALLBACK_ID, title=PlainTextObject(text=clip(title, 24)),
        submit=PlainTextObject(text="Submit"), close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata, separators=(",", ":")),
        blocks=[InputBlock(block_id=REASON_BLOCK_ID, label=PlainTextObject(text=label), optional=False,
                           element=PlainTextInputElement(action_id=REASON_ACTION_ID, multiline=True, min_length=3,
                                                         max_length=2000))],
    )


def open_modal(number: str, metadata: dict[str, Any]) -> View:
    """"Dispute" from an invoice message: the category and what the client disputes."""
    return View(
        type="modal", callback_id=OPEN_CALLBACK_ID, title=PlainTextObject(text=clip(f"Dispute {number}", 24)),
        submit=PlainTextObject(text="Open dispute"), close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata, separators=(",", ":")),
        blocks=[
            InputBlock(block_id=CATEGORY_BLOCK_ID, label=PlainTextObject(text="Category"), element=StaticSelectElement(
                action_id=CATEGORY_ACTION_ID, options=[Option(value=c, text=t.capitalize())
                                                       for c, t in CATEGORY_TEXT.items()])),
            InputBlock(block_id=REASON_BLOCK_ID, label=PlainTextObject(text="What the client disputes"),
                       element=PlainTextInputElement(action_id=REASON_ACTION_ID, multiline=True, min_length=3,
                                                     max_length=2000)),
        ],
    )
