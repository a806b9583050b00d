"""The sandbox page renders every ``:shortcode:`` billbot writes (its table is in static/mrkdwn.js)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHORTCODE = re.compile(r"(?<![\w:`]):([a-z][a-z0-9_+-]*):(?![\w<{`])")
# reStructuredText roles in docstrings and SQLite's ":memory:", not emoji
NOT_EMOJI = {"func", "mod", "class", "data", "attr", "meth", "exc", "obj", "ref", "doc", "param", "return", "rtype",
             "memory"}


def page_table() -> set[str]:
    js = (ROOT / "bot" / "sandbox" / "static" / "mrkdwn.js").read_text()
    table = js[js.index("const EMOJI = {") : js.index("};", js.index("const EMOJI = {"))]
    return {m.group(1) or m.group(2) for m in re.finditer(r'(?:([a-z0-9_]+)|"([^"]+)"):\s*"', table)}


def shortcodes_in_billbot() -> dict[str, str]:
    """shortcode → a file that writes it (string literals of bot/, docstrings' roles left out)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "bot").rglob("*.py")):
        for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if tok.type != tokenize.STRING:
                continue
            for m in SHORTCODE.finditer(tok.string):
                if m.group(1) not in NOT_EMOJI:
                    found.setdefault(m.group(1), str(path.relative_to(ROOT)))
    return found


def test_the_page_knows_every_shortcode_billbot_writes() -> None:
    used = shortcodes_in_billbot()
    assert {"warning", "white_check_mark", "raised_hand", "ledger", "boom"} <= set(used)  # the scan finds them
    missing = {name: where for name, where in used.items() if name not in page_table()}
    assert not missing, f"add these to EMOJI in bot/sandbox/static/mrkdwn.js: {missing}"
