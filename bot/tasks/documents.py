"""Invoice PDFs: rendered after the finalizing commit, away from the web server's GIL."""

from __future__ import annotations

from typing import Any

from bot import context
from bot.tasks.registry import plain, task
from bot.workflows.documents import render_invoice_pdf

RENDER_PDF = "render_pdf"


@task(RENDER_PDF, queue="documents", own_process=True, retry=2, lock=lambda kw: f"pdf:{kw.get('invoice_id')}")
def render_pdf(*, invoice_id: int) -> Any:
    """Render (or re-render) the PDF of one invoice: CPU-heavy, so a process pool in embedded mode.
    Its ``invoice.rendered`` uploads the PDF into the Slack thread the invoice was finalized from,
    if any (a reaction wired by :mod:`bot.runtime` in the process that renders)."""
    return plain(render_invoice_pdf(context.get_db(), invoice_id, renderer=context.pdf_renderer(),
                                    out_dir=context.documents_dir(), key=context.get_key()))
