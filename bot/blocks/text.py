"""Block Kit as plain text for a terminal (``billbot digest --dry-run``): what a person would read in
Slack, without the markup — ``*bold*`` unstarred, ``<!date^…|fallback>`` as its fallback, links as
their label, entities decoded."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_DATE = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<(?:https?://|mailto:)[^|>]*\|([^>]*)>")
_BARE_LINK = re.compile(r"<((?:https?://|mailto:)[^>]*)>")
_EMOJI = re.compile(r":([a-z0-9_+-]+):")
EMOJI = {"warning": "⚠", "white_check_mark": "✓", "rotating_light": "‼", "x": "✗", "tada": "🎉",
         "hourglass": "⌛", "arrows_counterclockwise": "↻"}
_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)\*(?![\w*])")


def mrkdwn_to_text(text: str) -> str:
    t = _DATE.sub(r"\1", text)
    t = _LINK.sub(r"\1", t)
    t = _BARE_LINK.sub(r"\1", t)
    t = _BOLD.sub(r"\1", t)
    t = t.replace("```", "")
    t = _EMOJI.sub(lambda m: EMOJI.get(m[1], ""), t).replace("  ", " ")
    return t.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(obj: Mapping[str, Any] | None) -> str:
    return mrkdwn_to_text(str(obj.get("text", ""))) if obj else ""


def blocks_as_text(blocks: Iterable[Mapping[str, Any]], *, width: int = 100) -> str:
    lines: list[str] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "header":
            title = _text(b.get("text"))
            lines += [title, "=" * min(width, len(title))]
        elif kind == "section":
            if b.get("text"):
                lines.append(_text(b["text"]))
            for f in b.get("fields") or []:
                head, _, rest = _text(f).partition("\n")
                lines.append(f"  {head} — {rest.replace(chr(10), '; ')}" if rest else f"  {head}")
        elif kind == "context":
            lines.append("  ".join(_text(e) for e in b.get("elements") or [] if e.get("type") != "image"))
        elif kind == "divider":
            lines.append("-" * min(width, 40))
        elif kind == "image":
            lines.append(f"[image: {b.get('alt_text', '')}]")
        elif kind == "actions":
            labels = [_text(e.get("text")) for e in b.get("elements") or [] if e.get("text")]
            lines.append("[" + "] [".join(labels) + "]")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
