"""Invoices leave billbot by e-mail (issue 19): one mail per invoice, to the advertiser's
``invoice_emails`` (else its ``email``) with ``invoice_cc`` copied, in the advertiser's locale, the
PDF/A-3 (with its Factur-X XML) attached.

How a dispatch travels: the rendered PDF (``invoice.rendered``) queues the ``dispatch`` task
(:mod:`bot.runtime`), which calls :func:`dispatch_invoice` with the mail adapter (:mod:`bot.mail`, a
parameter: workflows never open sockets).

- **Idempotent per invoice**: the ``invoice_dispatches`` row (beside the immutable invoice) holds the
  state ``queued`` → ``sent`` | ``failed`` and a ``Message-ID`` derived from the invoice number. An invoice
  already ``sent`` is never mailed again by a rerun, a re-render or a retried job; a resend is explicit
  (``billbot invoices send NUMBER --resend``) and carries its own Message-ID referencing the first.
- **Retried with backoff** on temporary SMTP answers (4xx, a dropped connection): ``attempts`` tries,
  ``retry_delay × 2^(n-1)`` seconds apart.
- **Permanent failures** (5xx, no address) leave ``failed`` and notify ``invoice.dispatch_failed`` —
  the Slack app tells the operators ("could not be delivered: 550 …", :mod:`bot.slack.dispatch`).
- Every attempt is an audit record (``invoice.dispatched`` / ``invoice.dispatch_failed``).
- ``dispatch: none`` advertisers (clients who download from a portal) are never mailed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any, Protocol

import jinja2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from billing.errors import BillingError, Invalid, NotAllowed, NotFound
from billing.money import fmt
from bot.workflows import audit
from bot.workflows.documents import PdfRenderer, ensure_invoice_pdf, safe_name
from bot.workflows.effects import notify
from storage.db import Database
from storage.models import Advertiser, Invoice, InvoiceDispatch, User

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates" / "mail"
DEFAULT_LOCALE = "en"

#: Who may send or resend an invoice by hand.
SEND_ROLES = frozenset({"operator", "admin"})
#: A claimed invoice is left to the process sending it for this long (its attempts and backoff included);
#: a claim older than that is taken to be from a process that died, and the mail is claimed again.
SENDING_LEASE = timedelta(minutes=15)


class SendFailed(BillingError):
    """The mail server did not take the mail. ``temporary``: worth another try (4xx, connection lost)."""

    code = "dispatch_failed"

    def __init__(self, message: str, *, temporary: bool, smtp_code: int | None = None,
                 refused: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.smtp_code = smtp_code
        self.refused = refused or {}  # every recipient refused: address → the server's answer


class MailSender(Protocol):
    """What dispatch needs from a mail adapter (:mod:`bot.mail`)."""

    def send(self, msg: EmailMessage, *, sender: str, recipients: list[str]) -> dict[str, str]:
        """Hand ``msg`` to the mail server; returns the recipients it refused (address → answer) when
        it took the mail for the others; raises :class:`SendFailed` when it took it for nobody."""
        ...


@dataclass(frozen=True)
class DispatchOutcome:
    number: str
    state: str  # sent | failed | skipped
    message_id: str | None = None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    attempts: int = 0
    error: str | None = None
    note: str | None = None


# --------------------------------------------------------------------------- the message


def _domain(mail_from: str) -> str:
    addr = parseaddr(mail_from)[1]
    return addr.rsplit("@", 1)[1] if "@" in addr else "billbot.invalid"


def message_id_for(inv: Invoice, mail_from: str, *, resend: int = 0) -> str:
    """``<INV-2026-000001.northwind@billing.example>``: derived from the number (unique per legal
    entity), so the same invoice always carries the same Message-ID; the n-th resend adds ``.rN``."""
    suffix = f".r{resend}" if resend else ""
    return f"<{safe_name(inv.number)}{suffix}.{safe_name(inv.legal_entity_id)}@{_domain(mail_from)}>"


def recipients_of(adv: Advertiser) -> tuple[list[str], list[str]]:
    """(to, cc): ``invoice_emails``, else the advertiser's ``email``; cc without anyone already in to."""
    to = [a for a in (adv.invoice_emails or []) if a] or ([adv.email] if adv.email else [])
    cc = [a for a in (adv.invoice_cc or []) if a and a not in to]
    return to, cc


_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=False,  # noqa: S701 - plain-text mail, never HTML
                          keep_trailing_newline=True, undefined=jinja2.StrictUndefined)

_WORDS = {
    "en": {"invoice": ("Invoice", "invoice"), "credit_note": ("Credit note", "credit note")},
    "de": {"invoice": ("Rechnung", "Rechnung"), "credit_note": ("Gutschrift", "Gutschrift")},
}


def mail_locale(locale: str | None) -> str:
    """The template locale for an advertiser's ``locale`` (``de_AT`` → ``de``; unknown → ``en``)."""
    base = (locale or DEFAULT_LOCALE).replace("-", "_").split("_")[0].lower()
    return base if (TEMPLATES_DIR / f"invoice.{base}.txt").exists() else DEFAULT_LOCALE


def _date(d: Any, locale: str) -> str:
    if d is None:
        return ""
    return str(d.strftime("%d.%m.%Y") if locale == "de" else d.isoformat())


def compose(inv: Invoice, adv: Advertiser, *, pdf: bytes, mail_from: str, to: list[str], cc: list[str],
            message_id: str, references: str | None = None, evidence_url: str | None = None,
            now: datetime | None = None) -> EmailMessage:
    """The invoice mail: subject and text from ``templates/mail/invoice.<locale>.txt`` (its first line
    is ``Subject: …``), the PDF attached as ``<number>.pdf``."""
    locale = mail_locale(adv.locale)
    title, word = _WORDS.get(locale, _WORDS["en"]).get(inv.kind, _WORDS["en"]["invoice"])
    period = (f"{_date(inv.service_start, locale)} – {_date(inv.service_end, locale)}"
              if inv.service_start and inv.service_end else _date(inv.issue_date, locale))
    seller = str((inv.parties or {}).get("seller", {}).get("name") or inv.legal_entity_id)
    buyer = str((inv.parties or {}).get("buyer", {}).get("name") or adv.name)
    text = _env.get_template(f"invoice.{locale}.txt").render(
        kind=inv.kind, kind_title=title, kind_word=word, number=inv.number, seller=seller, buyer=buyer,
        issue_date=_date(inv.issue_date, locale), due_date=_date(inv.due_date, locale), service_period=period,
        gross=fmt(inv.gross, inv.currency), currency=inv.currency,
        po_number=(inv.parties or {}).get("buyer", {}).get("po_number"), evidence_url=evidence_url)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise Invalid(f"mail template invoice.{locale}.txt must start with a 'Subject: ' line")
    msg = EmailMessage()
    msg["Subject"] = first.removeprefix("Subject: ").strip()
    msg["From"] = mail_from
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Message-ID"] = message_id
    if references:
        msg["References"] = references
        msg["In-Reply-To"] = references
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg.set_content(body.lstrip("\n"))
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"{safe_name(inv.number)}.pdf")
    msg["Content-Language"] = locale  # after the content: setting content clears Content-* headers
    return msg


# --------------------------------------------------------------------------- the state


def access_send(s: Session, user_id: str) -> None:
    """Sending or resending an invoice by hand is an operator's act."""
    user = s.get(User, user_id)
    roles = user.role_names if user is not None else set()
    if not roles & SEND_ROLES:
        raise NotAllowed("Only operators may send invoices.", code="operator_required")


def _record(s: Session, row: InvoiceDispatch, inv: Invoice, *, key: Ed25519PrivateKey | None, actor: str,
            action: str, payload: dict[str, Any], now: datetime) -> None:
    row.updated_at = now
    audit.record(s, key=key, actor=actor, action=action, subject_type="invoice", subject_id=inv.id,
                 payload={"number": inv.number, "message_id": row.message_id, **payload}, now=now)


Claimed = tuple[str, str | None, list[str], list[str]]  # message_id, references, to, cc


def _claim(db: Database, invoice_id: int, *, mail_from: str, resend: bool, actor: str,
           key: Ed25519PrivateKey | None, now: datetime) -> Claimed | DispatchOutcome:
    """Make or read the dispatch row in one transaction: ``(message_id, references, to, cc)`` to send,
    or an outcome saying why nothing is sent."""
    with db.transaction() as s:
        inv = s.get(Invoice, invoice_id)
        if inv is None:
            raise NotFound(f"invoice {invoice_id} not found")
        adv = s.get(Advertiser, inv.advertiser_id)
        assert adv is not None
        if actor != "system":
            access_send(s, actor)
        if adv.dispatch == "none" and not resend:
            return DispatchOutcome(inv.number, "skipped", note=f"{adv.name} receives no invoice mails (dispatch: none)")
        row = s.get(InvoiceDispatch, invoice_id, with_for_update=True)  # PostgreSQL: claims queue up here
        if row is not None and row.state == "sent" and not resend:
            return DispatchOutcome(inv.number, "skipped", message_id=row.message_id, note="already sent")
        if row is not None and row.state == "queued" and not resend and row.updated_at is not None \
                and now - row.updated_at < SENDING_LEASE:  # another process claimed it and is sending it now
            return DispatchOutcome(inv.number, "skipped", message_id=row.message_id,
                                   note=f"being sent since {row.updated_at:%H:%M:%S} UTC by another process")
        if row is not None and row.state == "failed" and actor == "system":  # waits for a person's resend
            return DispatchOutcome(inv.number, "skipped", message_id=row.message_id, note="failed before")
        to, cc = recipients_of(adv)
        if row is None:
            row = InvoiceDispatch(invoice_id=inv.id, state="queued", message_id=message_id_for(inv, mail_from),
                                  recipients={}, attempts=0, sends=0, queued_at=now, updated_at=now)
            s.add(row)
        references = None
        if resend and row.sends:
            references = message_id_for(inv, mail_from)
            row.message_id = message_id_for(inv, mail_from, resend=row.sends)
        row.state, row.recipients, row.attempts, row.last_error = "queued", {"to": to, "cc": cc}, 0, None
        row.updated_at = now
        s.flush()
        if not to:
            error = f"{adv.name} has no invoice e-mail address (set invoice_emails or email)"
            row.state, row.last_error = "failed", error
            _record(s, row, inv, key=key, actor=actor, action="invoice.dispatch_failed",
                    payload={"error": error, "final": True}, now=now)
            notify(s, "invoice.dispatch_failed", invoice_id=inv.id, number=inv.number, error=error)
            return DispatchOutcome(inv.number, "failed", message_id=row.message_id, error=error)
        _record(s, row, inv, key=key, actor=actor, action="invoice.dispatch_queued",
                payload={"to": to, "cc": cc, "resend": resend}, now=now)
        return row.message_id, references, to, cc


def _finish(db: Database, invoice_id: int, *, state: str, error: str | None, delivered: list[str],
            actor: str, key: Ed25519PrivateKey | None, now: datetime) -> None:
    """Record one attempt: ``sent`` (every recipient took it), ``queued`` (a temporary refusal, another
    attempt follows) or ``failed`` (final; notified for the operators)."""
    with db.transaction() as s:
        row = s.get(InvoiceDispatch, invoice_id)
        inv = s.get(Invoice, invoice_id)
        assert row is not None and inv is not None
        row.attempts = (row.attempts or 0) + 1
        row.state, row.updated_at = state, now
        if state != "queued" and delivered:  # the mail reached someone: one more send of this invoice
            row.sent_at, row.sends = now, (row.sends or 0) + 1
        if state == "sent":
            row.last_error = None
            _record(s, row, inv, key=key, actor=actor, action="invoice.dispatched",
                    payload={**row.recipients, "attempt": row.attempts, "delivered": delivered}, now=now)
            notify(s, "invoice.dispatched", invoice_id=inv.id, number=inv.number, message_id=row.message_id)
            return
        row.last_error = (error or "unknown error")[:2000]
        _record(s, row, inv, key=key, actor=actor, action="invoice.dispatch_failed",
                payload={"error": row.last_error, "attempt": row.attempts, "final": state == "failed",
                         "delivered": delivered}, now=now)
        if state == "failed":
            notify(s, "invoice.dispatch_failed", invoice_id=inv.id, number=inv.number, error=row.last_error)


def _temporary(answer: str) -> bool:
    return answer[:1] == "4"


def dispatch_invoice(
    db: Database,
    invoice_id: int,
    *,
    sender: MailSender,
    renderer: PdfRenderer,
    out_dir: Path,
    mail_from: str,
    key: Ed25519PrivateKey | None = None,
    actor: str = "system",
    resend: bool = False,
    attempts: int = 4,
    retry_delay: float = 30.0,
    evidence_url: str | None = None,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DispatchOutcome:
    """Mail invoice ``invoice_id`` once (see the module docstring for the rules).

    ``actor`` is ``system`` for the job after rendering, or the operator sending by hand (checked for
    an operator role). A recipient refused with a 4xx is tried again (that recipient only, the same
    Message-ID) up to ``attempts`` times, ``retry_delay × 2^(n-1)`` seconds apart; a 5xx is final.
    Returns what happened; a permanent failure is recorded and notified, not raised."""
    clock = now or (lambda: datetime.now(UTC))
    if not mail_from:
        raise Invalid("MAIL_FROM is not set: say which address invoices are sent from")
    claimed = _claim(db, invoice_id, mail_from=mail_from, resend=resend, actor=actor, key=key, now=clock())
    if isinstance(claimed, DispatchOutcome):
        return claimed
    message_id, references, to, cc = claimed
    pdf = ensure_invoice_pdf(db, invoice_id, renderer=renderer, out_dir=out_dir, key=key).read_bytes()
    with db.read() as s:
        inv = s.get(Invoice, invoice_id)
        adv = s.get(Advertiser, inv.advertiser_id) if inv is not None else None
        assert inv is not None and adv is not None
        number = inv.number
        url = evidence_url.format(number=inv.number) if evidence_url else None
        msg = compose(inv, adv, pdf=pdf, mail_from=mail_from, to=to, cc=cc, message_id=message_id,
                      references=references, evidence_url=url, now=clock())
    sender_addr = parseaddr(mail_from)[1] or mail_from
    tries = max(1, attempts)
    pending: list[str] = [*to, *cc]
    delivered: list[str] = []
    gave_up: dict[str, str] = {}
    attempt = 0
    for attempt in range(1, tries + 1):  # noqa: B007 - the last attempt's number is reported
        try:
            refused = sender.send(msg, sender=sender_addr, recipients=pending)
            temporary = {a for a, m in refused.items() if _temporary(m)}
        except SendFailed as e:  # nobody took it: per recipient, or the whole connection
            refused = e.refused or dict.fromkeys(pending, e.message)
            temporary = {a for a, m in refused.items() if _temporary(m)} if e.refused else (
                set(pending) if e.temporary else set())
        delivered += [a for a in pending if a not in refused]
        gave_up.update({a: m for a, m in refused.items() if a not in temporary})
        pending = [a for a in pending if a in temporary]
        if not pending or attempt >= tries:
            gave_up.update({a: refused[a] for a in pending})
            break
        error = "; ".join(f"{a}: {refused[a]}" for a in pending)
        log.warning("mailing %s: temporary refusal (attempt %d of %d): %s", number, attempt, tries, error)
        _finish(db, invoice_id, state="queued", error=error, delivered=delivered, actor=actor, key=key, now=clock())
        sleep(retry_delay * 2 ** (attempt - 1))
    if gave_up:
        answers = set(gave_up.values())
        error = (f"{answers.pop()} ({', '.join(gave_up)})" if len(answers) == 1  # one answer: say it first
                 else "; ".join(f"{a}: {m}" for a, m in gave_up.items()))
        log.warning("mailing %s failed for good: %s", number, error)
        _finish(db, invoice_id, state="failed", error=error, delivered=delivered, actor=actor, key=key, now=clock())
        return DispatchOutcome(number, "failed", message_id=message_id, to=tuple(to), cc=tuple(cc),
                               attempts=attempt, error=error)
    _finish(db, invoice_id, state="sent", error=None, delivered=delivered, actor=actor, key=key, now=clock())
    return DispatchOutcome(number, "sent", message_id=message_id, to=tuple(to), cc=tuple(cc), attempts=attempt)


def dispatch_states(s: Session, invoice_ids: list[int]) -> dict[int, str]:
    """invoice id → its dispatch state (invoices never queued for mail are absent)."""
    from sqlalchemy import select

    if not invoice_ids:
        return {}
    rows = s.execute(select(InvoiceDispatch.invoice_id, InvoiceDispatch.state)
                     .where(InvoiceDispatch.invoice_id.in_(invoice_ids)))
    return {int(i): str(st) for i, st in rows}


def stalled_dispatches(db: Database, *, now: datetime, limit: int = 500) -> list[int]:
    """Invoices whose mail was claimed but not finished within :data:`SENDING_LEASE` (the sending process
    died): the SLA sweep queues them again, and the next claim takes them over."""
    from sqlalchemy import select

    with db.read() as s:
        return [int(i) for i in s.execute(
            select(InvoiceDispatch.invoice_id).where(InvoiceDispatch.state == "queued",
                                                     InvoiceDispatch.updated_at < now - SENDING_LEASE)
            .order_by(InvoiceDispatch.invoice_id).limit(limit)).scalars()]
