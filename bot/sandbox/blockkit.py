"""Light Block Kit validation, so the sandbox refuses what real Slack refuses (``invalid_blocks``).

Only the limits billbot can realistically hit are checked: block counts (50 in a message, 100 in a view),
text lengths, unique ``block_id``/``action_id``, element counts. A message that passes here may still be
refused by Slack for rarer reasons; one that fails here would certainly be refused.
"""

from __future__ import annotations

from typing import Any

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
KNOWN_BLOCKS = {
    "header",
    "section",
    "context",
    "divider",
    "actions",
    "image",
    "input",
    "rich_text",
    "file",
    "video",
    "markdown",
}
TEXT_TYPES = {"plain_text", "mrkdwn"}


def _text_len(obj: Any) -> int:
    if isinstance(obj, dict):
        return len(str(obj.get("text", "")))
    return 0


def _check_text(obj: Any, path: str, limit: int, problems: list[str], *, plain_only: bool = False) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in TEXT_TYPES or not isinstance(obj.get("text"), str):
        problems.append(f"{path}: must be a text object")
        return
    if plain_only and obj["type"] != "plain_text":
        problems.append(f"{path}: must be plain_text")
    if len(obj["text"]) > limit:
        problems.append(f"{path}.text: must be at most {limit} characters")


def _check_element(el: Any, path: str, problems: list[str], action_ids: set[str]) -> None:
    if not isinstance(el, dict) or "type" not in el:
        problems.append(f"{path}: must be an element with a type")
        return
    aid = el.get("action_id")
    if aid is not None:
        if len(str(aid)) > 255:
            problems.append(f"{path}.action_id: must be at most 255 characters")
        if aid in action_ids:
            problems.append(f"{path}.action_id: duplicate {aid!r}")
        action_ids.add(str(aid))
    if el["type"] == "button":
        _check_text(el.get("text"), f"{path}.text", 75, problems, plain_only=True)
        if "value" in el and len(str(el["value"])) > 2000:
            problems.append(f"{path}.value: must be at most 2000 characters")
        if el.get("style") not in (None, "primary", "danger"):
            problems.append(f"{path}.style: must be primary or danger")
    confirm = el.get("confirm")
    if confirm is not None:
        _check_text(confirm.get("title"), f"{path}.confirm.title", 100, problems, plain_only=True)
        _check_text(confirm.get("text"), f"{path}.confirm.text", 300, problems)
        _check_text(confirm.get("confirm"), f"{path}.confirm.confirm", 30, problems, plain_only=True)
        _check_text(confirm.get("deny"), f"{path}.confirm.deny", 30, problems, plain_only=True)


def validate_blocks(blocks: Any, *, limit: int = MESSAGE_BLOCKS) -> list[str]:  # noqa: C901, PLR0915 - one branch per Block Kit element type, as Slack's own validator
    """Problems with ``blocks`` as ``path: message`` strings (empty when Slack would accept them)."""
    if not isinstance(blocks, list):
        return ["blocks: must be a list"]
    problems: list[str] = []
    if len(blocks) > limit:
        problems.append(f"blocks: must contain at most {limit} blocks (got {len(blocks)})")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, b in enumerate(blocks):
        path = f"blocks[{i}]"
        if not isinstance(b, dict) or b.get("type") not in KNOWN_BLOCKS:
            problems.append(f"{path}: unknown block type {b.get('type') if isinstance(b, dict) else b!r}")
            continue
        bid = b.get("block_id")
        if bid is not None:
            if bid in block_ids:
                problems.append(f"{path}.block_id: duplicate {bid!r}")
            block_ids.add(str(bid))
            if len(str(bid)) > 255:
                problems.append(f"{path}.block_id: must be at most 255 characters")
        kind = b["type"]
        if kind == "header":
            _check_text(b.get("text"), f"{path}.text", 150, problems, plain_only=True)
        elif kind == "section":
            if "text" not in b and "fields" not in b:
                problems.append(f"{path}: needs text or fields")
            if "text" in b:
                _check_text(b["text"], f"{path}.text", 3000, problems)
            fields = b.get("fields", [])
            if len(fields) > 10:
                problems.append(f"{path}.fields: at most 10 fields")
            for j, f in enumerate(fields):
                _check_text(f, f"{path}.fields[{j}]", 2000, problems)
            if "accessory" in b:
                _check_element(b["accessory"], f"{path}.accessory", problems, action_ids)
        elif kind == "context":
            els = b.get("elements", [])
            if not els or len(els) > 10:
                problems.append(f"{path}.elements: 1 to 10 elements")
            for j, el in enumerate(els):
                if isinstance(el, dict) and el.get("type") in TEXT_TYPES:
                    _check_text(el, f"{path}.elements[{j}]", 3000, problems)
        elif kind == "actions":
            els = b.get("elements", [])
            if not els or len(els) > 25:
                problems.append(f"{path}.elements: 1 to 25 elements")
            for j, el in enumerate(els):
                _check_element(el, f"{path}.elements[{j}]", problems, action_ids)
        elif kind == "image":
            if not b.get("image_url") and not b.get("slack_file"):
                problems.append(f"{path}.image_url: required")
            if not b.get("alt_text"):
                problems.append(f"{path}.alt_text: required")
        elif kind == "input":
            _check_text(b.get("label"), f"{path}.label", 2000, problems, plain_only=True)
            _check_element(b.get("element"), f"{path}.element", problems, action_ids)
    return problems


def validate_view(view: Any) -> list[str]:
    """Problems with a modal or home view."""
    if not isinstance(view, dict):
        return ["view: must be an object"]
    problems: list[str] = []
    vtype = view.get("type")
    if vtype not in ("modal", "home"):
        problems.append("view.type: must be modal or home")
    if vtype == "modal":
        _check_text(view.get("title"), "view.title", 24, problems, plain_only=True)
        for key in ("submit", "close"):
            if view.get(key) is not None:
                _check_text(view[key], f"view.{key}", 24, problems, plain_only=True)
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks", []))
        if has_input and view.get("submit") is None:
            problems.append("view.submit: required when the view has input blocks")
    if len(str(view.get("private_metadata", ""))) > 3000:
        problems.append("view.private_metadata: must be at most 3000 characters")
    if len(str(view.get("callback_id", ""))) > 255:
        problems.append("view.callback_id: must be at most 255 characters")
    problems += validate_blocks(view.get("blocks", []), limit=VIEW_BLOCKS)
    return problems
