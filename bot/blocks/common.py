"""Small formatting helpers shared by the Block Kit builders."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject

from billing.money import is_currency, quantum
from storage.settings import local_time

MAX_BLOCKS = 50  # Slack refuses messages with more blocks
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000


_BROADCAST = re.compile(r"@(here|channel|everyone)\b", re.IGNORECASE)
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


def esc(text: object) -> str:
    """Text for Slack mrkdwn that shows what it says and does nothing else: ``&``, ``<`` and ``>``
    become entities (so ``<!here>``, ``<!channel>``, ``<@U…>`` and links are shown, never acted on), and
    a bare ``@here`` / ``@channel`` / ``@everyone`` gets a word joiner after the ``@``. The one function
    for every piece of text billbot sends that it did not write itself (names, reasons, causes, log
    lines, error messages)."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060\\1", s)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def money_text(value: Decimal | None, currency: str) -> str:
    """``7,000.00 EUR`` — grouped, rounded to the currency's minor unit."""
    if value is None:
        return "—"
    q = quantum(currency) if is_currency(currency) else Decimal("0.01")
    return f"{value.quantize(q, rounding=ROUND_HALF_UP):,} {currency}"


def slack_date(at: datetime | None, fmt: str = "{date_short_pretty} {time}") -> str:
    """``<!date^…>``: each reader sees the time in their own time zone; the fallback is the
    deployment's (``BILLBOT_TIMEZONE``)."""
    if at is None:
        return "—"
    at = at.astimezone(UTC)
    fallback = local_time(at)
    return f"<!date^{int(at.timestamp())}^{fmt}|{fallback}>"


def period_text(start: date | None, end: date | None) -> str:
    if start is None and end is None:
        return "—"
    if start is None or end is None:
        return str(start or end)
    return f"{start.isoformat()} – {end.isoformat()}"


def mention(slack_id: str | None) -> str:
    if not slack_id:
        return "someone"
    return f"<@{slack_id}>" if _USER_ID.match(slack_id) else esc(slack_id)


def cap_blocks(blocks: list[Block], *, what: str = "more") -> list[Block]:
    """Never more than :data:`MAX_BLOCKS`; the last kept block says how many were left out."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    kept = blocks[: MAX_BLOCKS - 1]
    kept.append(ContextBlock(elements=[MarkdownTextObject(text=f"… and {len(blocks) - len(kept)} {what} not shown")]))
    return kept


CURRENCY_SIGN = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CHF": "CHF", "PLN": "zł", "SEK": "kr",
                 "DKK": "kr", "NOK": "kr", "CZK": "Kč"}


def money_sign(value: Decimal | None, currency: str) -> str:
    """``3,062.00 €`` — like :func:`money_text`, with the currency's sign where it has a short one
    (buttons: Slack cuts a button's text at 75 characters)."""
    if value is None:
        return "—"
    text = money_text(value, currency)
    sign = CURRENCY_SIGN.get(currency)
    return text[: -len(currency)] + sign if sign else text


def pct_text(value: Decimal | None) -> str:
    """``−19 %`` (a true minus sign; whole percent, one decimal below 10 %)."""
    if value is None:
        return "—"
    q = Decimal("1") if abs(value) >= 10 else Decimal("0.1")
    r = value.quantize(q, rounding=ROUND_HALF_UP)
    if r == 0:
        r = abs(r)
    sign = "+" if r > 0 else "−" if r < 0 else ""
    return f"{sign}{abs(r):f} %"


def span_text(a: date, b: date) -> str:
    """``1–31 Oct``, ``30 Sep–2 Oct``, ``3 Feb``."""
    if a == b:
        return f"{a.day} {a:%b}"
    if (a.year, a.month) == (b.year, b.month):
        return f"{a.day}–{b.day} {b:%b}"
    return f"{a.day} {a:%b}–{b.day} {b:%b}"


def day_ranges(days: list[date], *, period: tuple[date | None, date | None] | None = None, limit: int = 8) -> str:
    """Days as ranges: ``1–31 Oct``, ``3–4 Feb, 9 Feb``, ``30 Sep–2 Oct``; with ``period`` it adds
    ``all days`` when the days cover it, else ``N of M days``. More than ``limit`` ranges end in
    ``… (+N more)``."""
    ds = sorted(set(days))
    if not ds:
        return "—"
    spans: list[tuple[date, date]] = []
    for d in ds:
        if spans and (d - spans[-1][1]).days == 1:
            spans[-1] = (spans[-1][0], d)
        else:
            spans.append((d, d))
    text = ", ".join(span_text(a, b) for a, b in spans[:limit])
    if len(spans) > limit:
        text += f" … (+{len(spans) - limit} more)"
    if period is not None and period[0] is not None and period[1] is not None:
        total = (period[1] - period[0]).days + 1
        text += ", all days" if len(ds) >= total and spans == [(period[0], period[1])] else \
            f" ({len(ds)} of {total} days)"
    elif len(ds) > 1:
        text += f" ({len(ds)} days)"
    return text
