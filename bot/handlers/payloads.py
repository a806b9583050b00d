"""Slack payloads parsed into small pydantic models (handlers never dig through raw dicts)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from billing.errors import Invalid
from bot.blocks.exceptions import parse_button_value
from bot.blocks.modals import CHECKLIST_ACTION_ID, CHECKLIST_BLOCK_ID, REASON_ACTION_ID, REASON_BLOCK_ID
from bot.slack.replies import Where
from bot.workflows.decisions import DecisionKind


class DecisionClick(BaseModel):
    decision: DecisionKind
    exception_id: int
    subject_hash: str
    trigger_id: str | None = None
    where: Where

    @classmethod
    def parse(cls, body: dict[str, Any], action: dict[str, Any]) -> DecisionClick:
        try:
            exception_id, digest = parse_button_value(str(action.get("value", "")))
        except ValueError:
            raise Invalid("this button carries no exception; the message may be from an older billbot") from None
        decision = str(action.get("action_id", "")).removeprefix("decide_").split(":", 1)[0]
        try:
            return cls(decision=decision, exception_id=exception_id, subject_hash=digest,
                       trigger_id=body.get("trigger_id"), where=where_of(body))
        except ValidationError:
            raise Invalid(f"unknown decision {decision!r}; the message may be from an older billbot") from None

    def metadata(self) -> dict[str, Any]:
        return {"e": self.exception_id, "h": self.subject_hash, "d": self.decision,
                "c": self.where.channel_id, "t": self.where.message_ts, "home": self.where.from_home}


class ReasonSubmission(BaseModel):
    decision: DecisionKind
    exception_id: int
    subject_hash: str
    reason: str
    where: Where
    checked: list[str] = []  # the checklist items ticked, by their 1-based number

    @classmethod
    def parse(cls, body: dict[str, Any], view: dict[str, Any]) -> ReasonSubmission:
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            values = view.get("state", {}).get("values", {})
            reason = (values.get(REASON_BLOCK_ID, {}).get(REASON_ACTION_ID, {}) or {}).get("value") or ""
            ticked = (values.get(CHECKLIST_BLOCK_ID, {}).get(CHECKLIST_ACTION_ID, {}) or {}).get("selected_options")
            return cls(
                decision=meta["d"], exception_id=int(meta["e"]), subject_hash=meta["h"], reason=str(reason),
                checked=[str(o["value"]) for o in ticked or []],
                where=Where(user_id=body["user"]["id"], channel_id=meta.get("c"), message_ts=meta.get("t"),
                            from_home=bool(meta.get("home"))),
            )
        except (KeyError, TypeError, ValueError, ValidationError):
            raise Invalid("this form is incomplete; please click the button again") from None


class SlashCommand(BaseModel):
    text: str = ""
    user_id: str
    channel_id: str | None = None
    response_url: str | None = None

    @property
    def words(self) -> list[str]:
        return self.text.split()


def where_of(body: dict[str, Any]) -> Where:
    """The user and, if any, the channel/message of a block_actions or view payload."""
    user = body.get("user") or {}
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    ts = (body.get("message") or {}).get("ts") or container.get("message_ts")
    return Where(user_id=str(user.get("id") or body.get("user_id") or ""), channel_id=channel, message_ts=ts,
                 from_home=container.get("type") == "view" and channel is None)
