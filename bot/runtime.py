"""The composition root: what happens after a commit, read in one table, wired once per process.

Workflows change state and ``notify(session, event, **payload)``; after the transaction commits,
:func:`dispatch` runs the event's reactions from :data:`REACTIONS`, in order. A reaction takes the
process's :class:`~bot.slack.context.SlackContext` and the event's payload; a failing reaction is
logged and never undoes the committed change (the sweep repairs what a reaction could not do:
missing exception messages, PDFs nobody queued).

Each process entry point calls :func:`wire` exactly once with its role:

=========  ==========================================================  ===============================
role       entry point                                                 Slack client
=========  ==========================================================  ===============================
web        ``bot.app.create_app`` (``billbot serve``, gunicorn)         the Bolt app's
sandbox    ``bot.sandbox.session.start_session`` (``billbot serve``)    the Bolt app's (the sandbox)
worker     ``billbot worker``, an embedded pool process                 from the settings
decider    ``billbot worker --queue decisions``                          from the settings
clock      ``billbot clock``                                            from the settings
cli        every other ``billbot`` command                              from the settings, only when
                                                                       ``SLACK_BOT_TOKEN`` is set
=========  ==========================================================  ===============================

A worker, decider or clock without ``SLACK_BOT_TOKEN`` posts only to a ``SLACK_API_URL`` other than Slack's
own (the sandbox, a local fake): to real Slack a made-up token can only be refused, after a round trip.
A CLI without Slack settings posts nothing; the sweep of the next ``billbot serve`` (or worker in
distributed mode) posts the missing messages. Invoice PDFs are rendered by the jobs facade after
the finalizing commit (``render_pdf``), except from a CLI in embedded mode, which has no workers
that outlive it: there the sweep queues them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from slack_sdk import WebClient

from bot import context, jobs
from bot.slack import accounting as slack_accounting
from bot.slack import change_sets as slack_change_sets
from bot.slack import dispatch as slack_dispatch
from bot.slack import disputes as slack_disputes
from bot.slack import exceptions as slack_exceptions
from bot.slack import held as slack_held
from bot.slack import invoice_pdfs
from bot.slack import payments as slack_payments
from bot.slack.client import get_client
from bot.slack.context import SlackContext
from bot.tasks import decide, disputes, documents, scheduled, slack_command
from bot.tasks import dispatch as mail_tasks
from bot.workflows import effects
from storage.settings import get_settings

log = logging.getLogger(__name__)

Role = Literal["web", "sandbox", "worker", "decider", "clock", "cli"]
Reaction = Callable[..., None]  # reaction(slack_context, **payload)

#: The task families every process knows (importing them registers them).
TASK_FAMILIES: Final = (decide, mail_tasks, documents, scheduled, slack_command, disputes)


def queue_render(_sc: SlackContext, *, invoice_id: int, **_: Any) -> None:
    """``invoice.finalized``: queue the invoice's PDF (``render_pdf``), unless this process is a CLI
    in embedded mode (no worker outlives it; the sweep queues it instead)."""
    w = _wiring
    if w is not None and w.role == "cli" and jobs.mode() != "distributed":
        return
    jobs.submit(documents.RENDER_PDF, invoice_id=invoice_id)


def queue_dispatch(_sc: SlackContext, *, invoice_id: int, **_: Any) -> None:
    """``invoice.rendered``: queue the invoice's mail (``dispatch``) when mail is configured
    (``SMTP_URL``), unless this process is a CLI in embedded mode (no worker outlives it; operators
    send from the CLI with ``billbot invoices send``). The task skips invoices already sent."""
    if not get_settings().smtp_url:
        return
    w = _wiring
    if w is not None and w.role == "cli" and jobs.mode() != "distributed":
        return
    jobs.submit(mail_tasks.DISPATCH, invoice_id=invoice_id)


def queue_dispute_evidence(_sc: SlackContext, *, dispute_id: int, **_: Any) -> None:
    """``dispute.opened``: build the invoice's evidence pack (``dispute_evidence``) and upload it into the
    dispute's thread, unless this process is a CLI in embedded mode (no worker outlives it: ``billbot
    disputes open`` builds the pack itself)."""
    w = _wiring
    if w is not None and w.role == "cli" and jobs.mode() != "distributed":
        return
    jobs.submit(disputes.DISPUTE_EVIDENCE, dispute_id=dispute_id)


#: event → reactions, in order. Event payloads are documented in :mod:`bot.workflows.effects`.
REACTIONS: Final[Mapping[str, tuple[Reaction, ...]]] = MappingProxyType({
    "exception.opened": (slack_exceptions.on_exception_changed,),
    "exception.updated": (slack_exceptions.on_exception_changed,),
    "exception.closed": (slack_exceptions.on_exception_changed,),
    "exception.decided": (slack_exceptions.on_exception_decided,),
    "exception.approvals_reset": (slack_exceptions.on_approvals_reset,),
    "exception.held": (slack_held.on_exception_held,),
    "exception.invoiced": (slack_exceptions.on_exception_changed, invoice_pdfs.on_exception_invoiced),
    "invoice.finalized": (queue_render,),
    "invoice.rendered": (invoice_pdfs.on_invoice_rendered, queue_dispatch),
    "invoice.dispatch_failed": (slack_dispatch.on_invoice_dispatch_failed,),
    "invoice.pdf_failed": (invoice_pdfs.on_invoice_pdf_failed,),
    "change_set.opened": (slack_change_sets.on_change_set_opened,),
    "change_set.decided": (slack_change_sets.on_change_set_decided,),
    "accounting.exported": (slack_accounting.on_accounting_exported,),
    "payment.exception": (slack_payments.on_payment_exception,),
    "dispute.opened": (slack_disputes.on_dispute_opened, queue_dispute_evidence),
    "dispute.updated": (slack_disputes.on_dispute_updated,),
})


@dataclass(frozen=True)
class Wiring:
    role: Role
    slack: SlackContext


_wiring: Wiring | None = None


def _no_client() -> WebClient | None:
    return None


def _real_slack(api_url: str) -> bool:
    """Whether ``SLACK_API_URL`` is Slack's own (not a sandbox or a local fake)."""
    from urllib.parse import urlsplit

    host = (urlsplit(api_url).hostname or "").lower()
    return host == "slack.com" or host.endswith(".slack.com")


def wire(role: Role, *, client: WebClient | None = None) -> Wiring:
    """Wire this process for ``role``: install :func:`dispatch` as the after-commit dispatcher and
    tell the jobs facade how its pool processes wire themselves. ``client`` is the Bolt app's own
    (web, sandbox); other roles take the one the settings describe. Calling it again rewires (tests,
    a sandbox session that replaces the app)."""
    global _wiring  # noqa: PLW0603 - one wiring per process, set by its entry point
    get: Callable[[], WebClient | None]
    if client is not None:
        get = lambda: client  # noqa: E731 - the app's client, for the app's whole life
    elif not get_settings().slack_bot_token and (role == "cli" or _real_slack(get_settings().slack_api_url)):
        get = _no_client  # nothing to post with: real Slack would refuse a made-up token
    else:
        get = get_client
    _wiring = Wiring(role, SlackContext(get, context.get_db, context.get_key))
    effects.install(dispatch)
    jobs.configure(process_init=wire_pool_process)
    return _wiring


def wire_pool_process() -> None:
    """An embedded pool process, before each task: wired as a worker once."""
    if _wiring is None:
        wire("worker")


def wiring() -> Wiring | None:
    return _wiring


def dispatch(name: str, payload: Mapping[str, Any]) -> None:
    """Run event ``name``'s reactions (after commit). A failing reaction is logged, not raised."""
    w = _wiring
    if w is None:
        return
    for reaction in REACTIONS.get(name, ()):
        try:
            reaction(w.slack, **payload)
        except Exception:  # a failed reaction must not undo a committed change; the sweep repairs it
            log.exception("reaction %s to %s failed", getattr(reaction, "__name__", reaction), name)


def reset() -> None:
    """Forget this process's wiring (tests)."""
    global _wiring  # noqa: PLW0603
    _wiring = None
    effects.install(None)
    jobs.configure(process_init=None)
