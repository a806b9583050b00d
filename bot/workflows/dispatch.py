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

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
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
from storage.mapping import preload_invoices
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
        return _claim_in(s, invoice_id, mail_from=mail_from, resend=resend, actor=actor, key=key, now=now)


def _claim_in(s: Session, invoice_id: int, *, mail_from: str, resend: bool, actor: str,
              key: Ed25519PrivateKey | None, now: datetime) -> Claimed | DispatchOutcome:
    """:func:`_claim` in the caller's transaction."""
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
        _finish_in(s, invoice_id, state=state, error=error, delivered=delivered, actor=actor, key=key, now=now)


def _finish_in(s: Session, invoice_id: int, *, state: str, error: str | None, delivered: list[str],
               actor: str, key: Ed25519PrivateKey | None, now: datetime) -> None:
    """:func:`_finish` in the caller's transaction."""
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


@dataclass
class _Delivery:
    """One invoice mail on its way: who still waits for it, who took it, who refused it for good."""

    invoice_id: int
    number: str
    msg: EmailMessage
    message_id: str
    to: list[str]
    cc: list[str]
    pending: list[str]
    delivered: list[str] = field(default_factory=list)
    gave_up: dict[str, str] = field(default_factory=dict)
    attempt: int = 0
    refused: dict[str, str] = field(default_factory=dict)

    def attempt_once(self, sender: MailSender, sender_addr: str) -> None:
        """One attempt with the recipients still pending: afterwards ``pending`` holds those refused
        for now (a 4xx, a lost connection), ``gave_up`` those refused for good (a 5xx)."""
        self.attempt += 1
        try:
            refused = sender.send(self.msg, sender=sender_addr, recipients=self.pending)
            temporary = {a for a, m in refused.items() if _temporary(m)}
        except SendFailed as e:  # nobody took it: per recipient, or the whole connection
            refused = e.refused or dict.fromkeys(self.pending, e.message)
            temporary = {a for a, m in refused.items() if _temporary(m)} if e.refused else (
                set(self.pending) if e.temporary else set())
        self.refused = refused
        self.delivered += [a for a in self.pending if a not in refused]
        self.gave_up.update({a: m for a, m in refused.items() if a not in temporary})
        self.pending = [a for a in self.pending if a in temporary]

    def give_up_pending(self) -> None:
        self.gave_up.update({a: self.refused[a] for a in self.pending})
        self.pending = []

    def retry_error(self) -> str:
        return "; ".join(f"{a}: {self.refused[a]}" for a in self.pending)

    def final(self) -> tuple[str, str | None]:
        """``(state, error)`` once nothing is pending: ``sent``, or ``failed`` with the servers' answers."""
        if not self.gave_up:
            return "sent", None
        answers = set(self.gave_up.values())
        error = (f"{answers.pop()} ({', '.join(self.gave_up)})" if len(answers) == 1  # one answer: say it first
                 else "; ".join(f"{a}: {m}" for a, m in self.gave_up.items()))
        return "failed", error

    def outcome(self) -> DispatchOutcome:
        state, error = self.final()
        return DispatchOutcome(self.number, state, message_id=self.message_id, to=tuple(self.to), cc=tuple(self.cc),
                               attempts=self.attempt, error=error)


def _deliver(db: Database, d: _Delivery, *, sender: MailSender, sender_addr: str, attempts: int,
             retry_delay: float, actor: str, key: Ed25519PrivateKey | None, clock: Callable[[], datetime],
             sleep: Callable[[float], None]) -> DispatchOutcome:
    """Attempt ``d`` until every recipient took it, one refused it for good, or ``attempts`` are spent
    (counting those made already), ``retry_delay × 2^(n-1)`` seconds apart; each attempt recorded."""
    tries = max(1, attempts)
    while True:
        if d.attempt == 0 or d.pending:
            if d.attempt:  # a temporary refusal before: wait, then try those recipients again
                sleep(retry_delay * 2 ** (d.attempt - 1))
            d.attempt_once(sender, sender_addr)
        if d.pending and d.attempt >= tries:
            d.give_up_pending()
        if not d.pending:
            break
        why = d.retry_error()
        log.warning("mailing %s: temporary refusal (attempt %d of %d): %s", d.number, d.attempt, tries, why)
        _finish(db, d.invoice_id, state="queued", error=why, delivered=d.delivered, actor=actor, key=key,
                now=clock())
    state, error = d.final()
    if state == "failed":
        log.warning("mailing %s failed for good: %s", d.number, error)
    _finish(db, d.invoice_id, state=state, error=error, delivered=d.delivered, actor=actor, key=key, now=clock())
    return d.outcome()


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
    d = _compose_claimed(db, invoice_id, claimed, renderer=renderer, out_dir=out_dir, mail_from=mail_from, key=key,
                         evidence_url=evidence_url, now=clock())
    return _deliver(db, d, sender=sender, sender_addr=parseaddr(mail_from)[1] or mail_from, attempts=attempts,
                    retry_delay=retry_delay, actor=actor, key=key, clock=clock, sleep=sleep)


def _compose_claimed(db: Database, invoice_id: int, claimed: Claimed, *, renderer: PdfRenderer, out_dir: Path,
                     mail_from: str, key: Ed25519PrivateKey | None, evidence_url: str | None,
                     now: datetime) -> _Delivery:
    """The mail of a claimed invoice, its PDF rendered first if it is missing."""
    pdf = ensure_invoice_pdf(db, invoice_id, renderer=renderer, out_dir=out_dir, key=key).read_bytes()
    with db.read() as s:
        inv = s.get(Invoice, invoice_id)
        assert inv is not None
        return _delivery(inv, claimed, pdf=pdf, mail_from=mail_from, evidence_url=evidence_url, now=now)


def _delivery(inv: Invoice, claimed: Claimed, *, pdf: bytes, mail_from: str, evidence_url: str | None,
              now: datetime) -> _Delivery:
    message_id, references, to, cc = claimed
    url = evidence_url.format(number=inv.number) if evidence_url else None
    msg = compose(inv, inv.advertiser, pdf=pdf, mail_from=mail_from, to=to, cc=cc, message_id=message_id,
                  references=references, evidence_url=url, now=now)
    return _Delivery(inv.id, inv.number, msg, message_id, to, cc, pending=[*to, *cc])


def _compose_many(db: Database, claims: dict[int, Claimed], *, renderer: PdfRenderer, out_dir: Path,
                  mail_from: str, key: Ed25519PrivateKey | None, evidence_url: str | None,
                  now: datetime) -> list[_Delivery]:
    """The mails of many claimed invoices, read in one session; a PDF that is missing or differs from
    its recorded hash is rendered first (as :func:`ensure_invoice_pdf` does for one)."""
    out: list[_Delivery] = []
    missing: list[int] = []
    with db.read() as s:
        loaded = {inv.id: inv for inv in preload_invoices(s, list(claims))}
        for iid, claimed in claims.items():
            inv = loaded[iid]
            try:
                pdf = Path(inv.pdf_path).read_bytes() if inv.pdf_state == "done" and inv.pdf_path else None
            except OSError:  # gone from disk: rendered again below
                pdf = None
            if pdf is None or hashlib.sha256(pdf).hexdigest() != inv.pdf_sha256:
                missing.append(iid)
                continue
            out.append(_delivery(inv, claimed, pdf=pdf, mail_from=mail_from, evidence_url=evidence_url, now=now))
    out += [_compose_claimed(db, iid, claims[iid], renderer=renderer, out_dir=out_dir, mail_from=mail_from, key=key,
                             evidence_url=evidence_url, now=now) for iid in missing]
    order = {iid: n for n, iid in enumerate(claims)}
    return sorted(out, key=lambda d: order[d.invoice_id])


def dispatch_many(
    db: Database,
    invoice_ids: Sequence[int],
    *,
    sender: MailSender,
    renderer: PdfRenderer,
    out_dir: Path,
    mail_from: str,
    key: Ed25519PrivateKey | None = None,
    actor: str = "system",
    attempts: int = 4,
    retry_delay: float = 30.0,
    evidence_url: str | None = None,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[DispatchOutcome]:
    """Mail many invoices (a month's close) under exactly :func:`dispatch_invoice`'s rules, in order, for
    the cost of a few: every claim in one transaction, the mails over one SMTP connection
    (``sender.connection()`` when the adapter has one), every first attempt recorded in one transaction.
    An invoice refused for now (4xx) then continues alone with its retries and backoff, after the others.
    No resends: those are a person's act, one invoice at a time."""
    clock = now or (lambda: datetime.now(UTC))
    if not mail_from:
        raise Invalid("MAIL_FROM is not set: say which address invoices are sent from")
    outcomes: dict[int, DispatchOutcome] = {}
    claims: dict[int, Claimed] = {}
    with db.transaction() as s:
        loaded = preload_invoices(s, invoice_ids)  # the claims below read from the session, not row by row
        for iid in invoice_ids:
            c = _claim_in(s, iid, mail_from=mail_from, resend=False, actor=actor, key=key, now=clock())
            if isinstance(c, DispatchOutcome):
                outcomes[iid] = c
            else:
                claims[iid] = c
        del loaded
    deliveries = _compose_many(db, claims, renderer=renderer, out_dir=out_dir, mail_from=mail_from, key=key,
                               evidence_url=evidence_url, now=clock())
    sender_addr = parseaddr(mail_from)[1] or mail_from
    opened = getattr(sender, "connection", None)
    with (opened() if callable(opened) else nullcontext(sender)) as conn:
        for d in deliveries:
            d.attempt_once(conn, sender_addr)
    tries = max(1, attempts)
    later: list[_Delivery] = []
    with db.transaction() as s:
        loaded = preload_invoices(s, [d.invoice_id for d in deliveries])  # the records below read from the session
        for d in deliveries:
            if d.pending and d.attempt >= tries:
                d.give_up_pending()
            if d.pending:
                _finish_in(s, d.invoice_id, state="queued", error=d.retry_error(), delivered=d.delivered,
                           actor=actor, key=key, now=clock())
                later.append(d)
                continue
            state, error = d.final()
            if state == "failed":
                log.warning("mailing %s failed for good: %s", d.number, error)
            _finish_in(s, d.invoice_id, state=state, error=error, delivered=d.delivered, actor=actor, key=key,
                       now=clock())
            outcomes[d.invoice_id] = d.outcome()
        del loaded
    for d in later:
        log.warning("mailing %s: temporary refusal (attempt 1 of %d): %s", d.number, tries, d.retry_error())
        outcomes[d.invoice_id] = _deliver(db, d, sender=sender, sender_addr=sender_addr, attempts=attempts,
                                          retry_delay=retry_delay, actor=actor, key=key, clock=clock, sleep=sleep)
    return [outcomes[iid] for iid in invoice_ids if iid in outcomes]


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


def unsent_invoices(db: Database) -> list[int]:
    """Invoices and credit notes never claimed for mail, oldest first (``invoices send --unsent``); those of
    ``dispatch: none`` advertisers are among them and skipped by the claim, with the reason."""
    from sqlalchemy import select

    with db.read() as s:
        return [int(i) for i in s.execute(
            select(Invoice.id).outerjoin(InvoiceDispatch, InvoiceDispatch.invoice_id == Invoice.id)
            .where(InvoiceDispatch.invoice_id.is_(None)).order_by(Invoice.id)).scalars()]
