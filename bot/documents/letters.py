"""Dunning letters as PDF: the invoice renderer's WeasyPrint, fonts and stylesheet, a template of its
own (``templates/dunning_letter.html``), labels in the advertiser's language (en, de)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from babel.numbers import format_decimal
from jinja2 import Environment, FileSystemLoader, select_autoescape
from stdnum import iso11649

from billing.documents.view import TEMPLATES_DIR, fmt_date
from billing.dunning import LETTER_LABELS
from bot.documents.pdf import get_renderer


def _money(d: Decimal, currency: str, loc: str) -> str:
    return f"{format_decimal(d, format='#,##0.00', locale=loc)} {currency}"


def letter_view(letter: Any, *, seller: str, address: str | None) -> dict[str, Any]:
    loc = letter.locale if letter.locale in LETTER_LABELS else "en"
    lab = LETTER_LABELS[loc]
    title = lab.get(letter.name, letter.name.replace("_", " ").capitalize())
    rows = [(lab["open"], _money(letter.open_amount, letter.currency, loc))]
    if letter.fee > 0:
        rows.append((lab["fee"], _money(letter.fee, letter.currency, loc)))
    if letter.interest > 0:
        rows.append((lab["interest"].format(rate=letter.interest_rate, days=letter.days_past_due),
                     _money(letter.interest, letter.currency, loc)))
    rows.append((lab["total"], _money(letter.total, letter.currency, loc)))
    ref = iso11649.format(letter.reference)
    meta = [(lab["invoice"], letter.invoice), (lab["issued"], fmt_date(letter.issue_date, loc)),
            (lab["due"], fmt_date(letter.due_date, loc))]
    return {"lang": loc, "title": f"{title} — {letter.invoice}", "seller": seller, "buyer": letter.advertiser,
            "address": address or "", "meta": "\n".join(f"{k}\t{v}" for k, v in meta), "intro": lab["intro"],
            "rows": rows, "ask": lab["ask"].format(ref=ref), "ignore": lab["ignore"]}


def render_letter(letter: Any, *, seller: str, address: str | None = None,
                  templates_dir: Path = TEMPLATES_DIR) -> bytes:
    env = Environment(loader=FileSystemLoader(str(templates_dir)), autoescape=select_autoescape(["html"]))
    html = env.get_template("dunning_letter.html").render(v=letter_view(letter, seller=seller, address=address))
    r = get_renderer()
    from weasyprint import HTML  # lazy: WeasyPrint loads only in a process that renders

    doc = HTML(string=html, base_url=str(templates_dir) + "/").render(font_config=r.font_config,
                                                                      stylesheets=[r.css])
    return bytes(doc.write_pdf())
