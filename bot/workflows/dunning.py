"""Dunning: holds (disputes, payment promises) and the dunning run.

:func:`run_dunning` reads every open, overdue invoice once (open amounts from
:func:`bot.workflows.payments.open_invoices`), skips those with an open dispute or a payment promise
not yet past, and gives each the letter :func:`billing.dunning.next_level` names. Letters are rows
(one per invoice and level, by a unique key), audited with one ``record_many``; the caller renders
them (PDF, same renderer as invoices) and records where they went (:func:`letter_rendered`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from billing.dunning import interest, levels_from, next_level
from billing.errors import Invalid, NotAllowed
from billing.payments import creditor_reference
from bot.workflows import audit
from bot.workflows.payments import invoice_by_number, open_invoices
from storage.db import Database
from storage.models import (
    OPEN_DISPUTE_STATES,
    Advertiser,
    Dispute,
    DunningLetter,
    Invoice,
    InvoiceHold,
    LegalEntity,
    User,
)

HOLD_ROLES = frozenset({"cash_applier", "finance_manager", "approver"})


@dataclass(frozen=True)
class Letter:
    id: int | None  # None on a dry run
    invoice: str
    advertiser: str
    advertiser_id: str
    legal_entity: str
    level: int
    name: str
    letter_date: date
    issue_date: date
    due_date: date
    days_past_due: int
    open_amount: Decimal
    fee: Decimal
    interest: Decimal
    interest_rate: Decimal
    currency: str
    reference: str
    locale: str

    @property
    def total(self) -> Decimal:
        return self.open_amount + self.fee + self.interest


def hold_invoice(db: Database, *, number: str, kind: str, reason: str, actor: str, key: Ed25519PrivateKey | None,
                 until: date | None = None, now: datetime | None = None) -> int:
    """Stop dunning an invoice: an open ``dispute`` or a ``promise`` to pay by ``until``."""
    problems = []
    if kind not in ("dispute", "promise"):
        problems.append(f"kind: must be dispute or promise, not {kind!r}")
    if kind == "promise" and until is None:
        problems.append("until: a payment promise needs the promised date")
    if not reason.strip():
        problems.append("reason: say why")
    if problems:
        raise Invalid(problems)
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        user = s.get(User, actor)
        if user is None or not user.role_names & HOLD_ROLES:
            raise NotAllowed("Holding an invoice needs the cash_applier, finance_manager or approver role.",
                             code="role_required")
        inv = invoice_by_number(s, number)
        hold = InvoiceHold(invoice_id=inv.id, kind=kind, until=until, reason=reason.strip(), state="open",
                           actor=actor, created_at=now)
        s.add(hold)
        s.flush()
        audit.record(s, key=key, actor=actor, action=f"invoice.{kind}", subject_type="invoice", subject_id=inv.id,
                     payload={"invoice": inv.number, "until": until.isoformat() if until else None,
                              "reason": reason.strip()}, now=now)
        return hold.id


def held_invoices(db: Database, *, today: date) -> dict[int, str]:
    """invoice id → ``dispute`` / ``promise`` for invoices dunning must skip today. A dispute holds while
    its record is open (issue 20, :mod:`bot.workflows.disputes`) or an older ``dispute`` hold is."""
    with db.read() as s:
        out: dict[int, str] = {}
        for inv_id, kind, until in s.execute(select(InvoiceHold.invoice_id, InvoiceHold.kind, InvoiceHold.until)
                                             .where(InvoiceHold.state == "open")):
            if kind == "dispute" or (until is not None and today <= until):
                out[int(inv_id)] = str(kind)
        for inv_id in s.execute(select(Dispute.invoice_id).where(Dispute.state.in_(OPEN_DISPUTE_STATES))).scalars():
            out[int(inv_id)] = "dispute"
        return out


def run_dunning(db: Database, *, today: date, actor: str, key: Ed25519PrivateKey | None, dry_run: bool = False,
                now: datetime | None = None) -> list[Letter]:
    """The letters due today (see the module docstring); with ``dry_run`` nothing is written."""
    now = now or datetime.now(UTC)
    held = held_invoices(db, today=today)
    with db.transaction() as s:
        entities = {le.id: le for le in s.execute(select(LegalEntity)).scalars()}
        advertisers = {a.id: a for a in s.execute(select(Advertiser)).scalars()}
        meta = {int(i): str(le) for i, le in s.execute(select(Invoice.id, Invoice.legal_entity_id)
                                                       .where(Invoice.kind == "invoice"))}
        sent: dict[int, list[int]] = defaultdict(list)
        for inv_id, level in s.execute(select(DunningLetter.invoice_id, DunningLetter.level)):
            sent[int(inv_id)].append(int(level))
        letters: list[Letter] = []
        for inv in open_invoices(s):
            dpd = (today - inv.due_date).days
            if dpd <= 0 or inv.id in held:
                continue
            le = entities[meta[inv.id]]
            lv = next_level(dpd, levels_from(le.dunning), sent=sent.get(inv.id, ()))
            if lv is None:
                continue
            adv = advertisers[inv.advertiser_id]
            letters.append(Letter(None, inv.number, adv.name, adv.id, le.id, lv.level, lv.name, today,
                                  inv.issue_date, inv.due_date, dpd, inv.open_amount, lv.fee,
                                  interest(inv.open_amount, lv.interest_rate, dpd), lv.interest_rate, inv.currency,
                                  creditor_reference(inv.number), adv.locale or "en"))
        if dry_run or not letters:
            return letters
        ids = {x.number: x.id for x in open_invoices(s)}
        rows = [DunningLetter(invoice_id=ids[x.invoice], level=x.level, name=x.name, letter_date=today,
                              days_past_due=x.days_past_due, open_amount=x.open_amount, fee=x.fee,
                              interest=x.interest, currency=x.currency, state="sent", created_by=actor,
                              created_at=now) for x in letters]
        s.add_all(rows)
        s.flush()
        audit.record_many(s, key=key, now=now, entries=[
            audit.Entry(actor, "dunning.letter", "invoice", r.invoice_id,
                        {"invoice": x.invoice, "level": x.level, "name": x.name, "open": str(x.open_amount),
                         "fee": str(x.fee), "interest": str(x.interest)}) for r, x in zip(rows, letters, strict=True)])
        return [Letter(r.id, *(getattr(x, f) for f in Letter.__dataclass_fields__ if f != "id"))
                for r, x in zip(rows, letters, strict=True)]


def letter_rendered(db: Database, letter_id: int, path: str) -> None:
    """Record where a letter's PDF went (bookkeeping, like an invoice's ``pdf_path``)."""
    with db.transaction() as s:
        row = s.get(DunningLetter, letter_id)
        if row is not None:
            row.pdf_path = path[:500]


SENDERS = frozenset({"finance_manager"})


def _require_sender(db: Database, actor: str, what: str) -> None:
    with db.read() as s:
        user = s.get(User, actor)
        if user is None or not user.role_names & SENDERS:
            raise NotAllowed(f"{what} needs the finance_manager role.", code="finance_manager_required")


def send_dunning(db: Database, *, today: date, actor: str, key: Ed25519PrivateKey | None,
                 now: datetime | None = None) -> list[Letter]:
    """"Send all" on the daily proposal: a finance manager sends today's letters (:func:`run_dunning`)."""
    _require_sender(db, actor, "Sending dunning letters")
    return run_dunning(db, today=today, actor=actor, key=key, now=now)


def skip_letter(db: Database, *, invoice_number: str, today: date, actor: str, key: Ed25519PrivateKey | None,
                now: datetime | None = None) -> Letter:
    """"Skip one": the letter an invoice would get today is recorded as skipped, so that level is never
    sent for it (the next level still comes when its day is reached)."""
    _require_sender(db, actor, "Skipping a dunning letter")
    due = {x.invoice: x for x in run_dunning(db, today=today, actor=actor, key=key, dry_run=True)}
    letter = due.get(invoice_number)
    if letter is None:
        raise Invalid(f"invoice {invoice_number} has no dunning letter due today")
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        inv = invoice_by_number(s, invoice_number)
        row = DunningLetter(invoice_id=inv.id, level=letter.level, name=letter.name, letter_date=today,
                            days_past_due=letter.days_past_due, open_amount=letter.open_amount, fee=ZERO_FEE,
                            interest=ZERO_FEE, currency=letter.currency, state="skipped", created_by=actor,
                            created_at=now)
        s.add(row)
        s.flush()
        audit.record(s, key=key, actor=actor, action="dunning.skipped", subject_type="invoice", subject_id=inv.id,
                     payload={"invoice": inv.number, "level": letter.level}, now=now)
    return letter


ZERO_FEE = Decimal("0.00")
