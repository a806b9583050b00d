"""Invoice mails: sent after the PDF is rendered (``invoice.rendered`` → ``dispatch``)."""

from __future__ import annotations

from typing import Any

from bot import context
from bot.tasks.registry import plain, task
from bot.workflows.dispatch import dispatch_invoice

DISPATCH = "dispatch"


@task(DISPATCH, queue="mail", retry=0, lock=lambda kw: f"mail:{kw.get('invoice_id')}")
def dispatch(*, invoice_id: int) -> Any:
    """Mail one invoice (once: an invoice already sent is skipped). Temporary SMTP errors are retried
    inside the workflow with backoff; the per-invoice lock keeps two workers from mailing it twice."""
    from bot.mail import sender_from_settings

    sender = sender_from_settings()
    if sender is None:  # SMTP_URL unset: invoices are not mailed
        return None
    st = context.settings()
    return plain(dispatch_invoice(context.get_db(), invoice_id, sender=sender, renderer=context.pdf_renderer(),
                                  out_dir=context.documents_dir(), mail_from=st.mail_from, key=context.get_key(),
                                  attempts=st.dispatch_attempts, retry_delay=st.dispatch_retry_seconds,
                                  evidence_url=st.evidence_base_url or None))
