"""Partner statements as PDF (issue 19): the invoice renderer's WeasyPrint, fonts and stylesheet, a
template of its own (``templates/partner_statement.html``). One row per invoice or credit note of the
partner's branches in the month, with its branches, and totals per currency."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from billing.documents.view import TEMPLATES_DIR
from bot.documents.pdf import get_renderer
from bot.workflows.partners import Statement

KIND = {"invoice": "Invoice", "credit_note": "Credit note"}


def _money(d: Decimal) -> str:
    return f"{d:,.2f}"


def statement_view(st: Statement) -> dict[str, Any]:
    invoicing = ("one consolidated invoice per month for all branches" if st.invoicing == "consolidated"
                 else "each branch is invoiced on its own")
    return {
        "title": f"Partner statement {st.period} — {st.partner_name}",
        "seller": st.seller, "partner": st.partner_name,
        "meta": "\n".join([f"Partner\t{st.partner_id}", f"Period\t{st.period_start.isoformat()} – "
                           f"{st.period_end.isoformat()}", f"Branches\t{len(st.branches)}",
                           f"Documents\t{len(st.rows)}"]),
        "invoicing": f"Invoicing: {invoicing}.",
        "rows": [{"number": r.number, "kind": KIND.get(r.kind, r.kind), "issued": r.issue_date.isoformat(),
                  "due": r.due_date.isoformat(), "branches": "\n".join(r.branches), "currency": r.currency,
                  "net": _money(r.net), "vat": _money(r.vat), "gross": _money(r.gross)} for r in st.rows],
        "totals": [{"currency": c, "net": _money(n), "vat": _money(v), "gross": _money(g)}
                   for c, (n, v, g) in st.totals.items()],
        "empty": f"No invoices of {st.partner_name}'s branches for {st.period}." if not st.rows else "",
    }


def render_statement(st: Statement, *, templates_dir: Path = TEMPLATES_DIR) -> bytes:
    env = Environment(loader=FileSystemLoader(str(templates_dir)), autoescape=select_autoescape(["html"]))
    html = env.get_template("partner_statement.html").render(v=statement_view(st))
    r = get_renderer()
    from weasyprint import HTML  # lazy: WeasyPrint loads only in a process that renders

    doc = HTML(string=html, base_url=str(templates_dir) + "/").render(font_config=r.font_config,
                                                                      stylesheets=[r.css])
    return bytes(doc.write_pdf())
