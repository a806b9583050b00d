"""Block Kit for master-data change sets: the diff with Approve / Reject, and the reason modal."""

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
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.blocks.common import cap_blocks, clip, mention
from bot.workflows.change_sets import ChangeSetView

APPROVE_ACTION_ID = "change_set_approve"
REJECT_ACTION_ID = "change_set_reject"
REASON_CALLBACK_ID = "change_set_reason"
REASON_BLOCK_ID = "reason"
REASON_ACTION_ID = "reason_input"

KIND_NAME = {"legal_entities": "legal entity", "advertisers": "advertiser", "campaigns": "campaign",
             "items": "item"}


def button_value(cs: ChangeSetView) -> str:
    return f"{cs.id}:{cs.subject_hash}"


def parse_button_value(value: str) -> tuple[int, str]:
    cs_id, _, digest = value.partition(":")
    if not cs_id.isdigit() or not digest:
        raise ValueError(value)
    return int(cs_id), digest


def _esc(v: Any) -> str:
    return str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def diff_text(cs: ChangeSetView) -> str:
    return "\n".join(f"• {KIND_NAME.get(d['kind'], d['kind'])} `{_esc(d['id'])}` {_esc(d['field'])}: "
                     f"~{_esc(d['before'])}~ → *{_esc(d['after'])}*" for d in cs.diff)


def fallback_text(cs: ChangeSetView) -> str:
    return f"Change set #{cs.id} by {cs.author}: {len(cs.diff)} master-data change(s) that move money ({cs.state})"


def change_set_message(cs: ChangeSetView) -> list[Block]:
    blocks: list[Block] = [
        SectionBlock(block_id=f"change_set:{cs.id}", text=MarkdownTextObject(text=clip(
            f"*Master-data change set #{cs.id}* by {mention(cs.author)} from `{_esc(cs.source)}` — "
            "changes that move money wait for someone other than their author", 3000))),
        SectionBlock(block_id=f"diff:{cs.id}", text=MarkdownTextObject(text=clip(diff_text(cs), 3000))),
    ]
    if cs.state == "pending":
        blocks.append(ActionsBlock(block_id=f"change_set_decide:{cs.id}", elements=[
            ButtonElement(text=PlainTextObject(text="Approve"), action_id=APPROVE_ACTION_ID,
                          value=button_value(cs), style="primary"),
            ButtonElement(text=PlainTextObject(text="Reject"), action_id=REJECT_ACTION_ID,
                          value=button_value(cs), style="danger"),
        ]))
    else:
        why = f": {_esc(cs.reason)}" if cs.reason else ""
        blocks.append(ContextBlock(block_id=f"decided:{cs.id}", elements=[MarkdownTextObject(text=clip(
            f"{cs.state.capitalize()} by {mention(cs.decided_by)}{why}", 2000))]))
    return cap_blocks(blocks)


def decided_reply(cs: ChangeSetView) -> str:
    done = "applied" if cs.state == "approved" else "dropped; the master data keeps its values"
    return f"{mention(cs.decided_by)} {cs.state} change set #{cs.id}: {done}."


def reason_modal(cs: ChangeSetView, metadata: dict[str, Any]) -> View:
    return View(
        type="modal", callback_id=REASON_CALLBACK_ID,
        title=PlainTextObject(text=clip(f"Reject change set #{cs.id}", 24)),
        submit=PlainTextObject(text="Reject"), close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(metadata, separators=(",", ":")),
        blocks=[
            SectionBlock(text=MarkdownTextObject(text=clip(diff_text(cs), 3000))),
            InputBlock(block_id=REASON_BLOCK_ID, label=PlainTextObject(text="Reason"), optional=False,
                       element=PlainTextInputElement(action_id=REASON_ACTION_ID, multiline=True, min_length=3,
                                                     max_length=2000)),
        ],
    )
