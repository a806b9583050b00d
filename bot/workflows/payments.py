"""Money in: import bank statements, apply cash to invoices, allocate / write off / refund by hand.

:func:`import_statement` is one transaction: parse (``storage.bank``), quarantine bad entries, insert
the entries not seen before (the bank's entry reference + account + booking date + amount), apply the
new credits to open invoices with :func:`billing.payments.apply_cash` — open invoices, known payer
IBANs and advertiser names are read once, allocations written with one bulk INSERT and audited with
one ``record_many`` — and ``notify`` ``payment.exception`` for what a person must settle. A file
imported twice changes nothing.

Manual decisions (:func:`allocate`, :func:`write_off`, :func:`refund`) check the actor's role in
:func:`access_payment_action` (one condition per line): ``cash_applier`` or ``finance_manager``
allocate; write-offs and refunds need ``finance_manager``; nobody writes off the difference left by
an allocation they made themselves.
"""

from __future__ import annotations

import gc
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, func, insert, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from billing.errors import Conflict, Invalid, NotAllowed, NotFound
from billing.money import quantum
from billing.payments import (
    ZERO,
    Application,
    IncomingPayment,
    OpenInvoice,
    apply_cash,
    bucket,
    candidates,
    creditor_reference,
    dso,
    payment_state,
)
from bot.workflows import audit, run_reports
from bot.workflows.effects import notify
from storage.bank import BankEntry, read_statement
from storage.db import Database
from storage.ingest import IngestContext, quarantine
from storage.models import (
    OPEN_DISPUTE_STATES,
    Advertiser,
    Dispute,
    Invoice,
    InvoiceHold,
    PayerAccount,
    Payment,
    PaymentAllocation,
    User,
)
from storage.settings import get_settings
from storage.types import Money

SOURCE = "bank"
ALLOCATORS = frozenset({"cash_applier", "finance_manager"})
DEFAULT_TOLERANCE = Decimal("1.00")
_PAYMENTS = cast(Table, Payment.__table__)
_ALLOCS = cast(Table, PaymentAllocation.__table__)
_SQLITE = sqlite.dialect()


@dataclass
class ImportResult:
    file: str
    format: str
    entries: int = 0
    inserted: int = 0
    unchanged: int = 0
    quarantined: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    exceptions: list[int] = field(default_factory=list)  # payment ids a person must settle


_MILLS = Decimal("0.001")


def _key(account: str, ref: str, booking: date, amount: Decimal) -> tuple[str, str, date, Decimal]:
    return (account, ref, booking, amount.quantize(_MILLS))  # 3 places: KWD, BHD have three


def import_statement(db: Database, path: Path, *, actor: str, key: Ed25519PrivateKey | None,
                     now: datetime | None = None, tolerance: Decimal = DEFAULT_TOLERANCE) -> ImportResult:
    """Import one camt.053 / camt.054 / MT940 file and apply its credits; see the module docstring.

    Cash is applied *before* the entries are written (payments are numbered by their place in the
    file meanwhile), so each entry is inserted once with its final state, unapplied amount and SLA
    timers — one bulk INSERT of entries, one of allocations, no UPDATE."""
    with _no_cyclic_gc():
        return _import_statement(db, path, actor=actor, key=key, now=now or datetime.now(UTC), tolerance=tolerance)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector off while a statement is imported: the import makes a few objects
    per entry and invoice and frees them together at the end, so the collector's passes over hundreds
    of thousands of young objects found nothing and cost a fifth of the time (reference counting still
    frees memory). Restored afterwards; nested or concurrent imports leave it as they found it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _import_statement(db: Database, path: Path, *, actor: str, key: Ed25519PrivateKey | None, now: datetime,
                      tolerance: Decimal) -> ImportResult:
    stmt = read_statement(path)
    res = ImportResult(file=path.name, format=stmt.format, entries=len(stmt.entries) + len(stmt.bad))
    with db.transaction() as s:
        if stmt.bad:  # (an IngestContext's first time zone costs a noticeable moment in a fresh process)
            res.quarantined = quarantine(s, stmt.bad, IngestContext(source=SOURCE, now=now))
        new = _new_entries(s, stmt.entries)
        res.unchanged = len(stmt.entries) - len(new)
        if not new:
            return res
        credits = [IncomingPayment(n, e.amount, e.currency, e.payer_iban, e.payer_name, e.remittance)
                   for n, e in enumerate(new) if e.kind == "credit"]
        app = _match(s, credits)
        remind_at, due_at = payment_sla(now)
        person: list[int] = []  # places in ``new`` of the payments a person must settle
        places = {c: quantum(c) for c in {e.currency for e in new}}
        # the rows as columns of values (one list per column): no dictionary per row
        amounts, states, unapplied, sla = [], [], [], []
        outcomes = app.outcomes
        for n, e in enumerate(new):
            q = places[e.currency]
            amounts.append(e.amount.quantize(q))
            outcome = outcomes.get(n) if e.kind == "credit" else None
            if outcome is None:
                states.append("not_a_payment")
                unapplied.append(ZERO)
                sla.append(False)
                continue
            states.append(outcome)
            unapplied.append(app.unapplied[n].quantize(q))
            needs = _needs_person(outcome, app.unapplied[n], app.still_open.get(n, ZERO), tolerance)
            sla.append(needs)
            if needs:
                person.append(n)
        count = len(new)
        columns: dict[str, list[Any]] = {
            "account": [e.account for e in new], "entry_ref": [e.entry_ref[:100] for e in new],
            "booking_date": [e.booking_date for e in new], "value_date": [e.value_date for e in new],
            "amount": amounts, "currency": [e.currency for e in new], "kind": [e.kind for e in new],
            "payer_name": [(e.payer_name or "")[:200] or None for e in new],
            "payer_iban": [e.payer_iban for e in new], "payer_bic": [e.payer_bic for e in new],
            "remittance": [e.remittance for e in new], "end_to_end_id": [e.end_to_end_id or None for e in new],
            "state": states, "unapplied": unapplied, "source_file": [path.name[:500]] * count,
            "location": [e.location[:500] for e in new], "created_at": [now] * count,
            "sla_state": ["open" if x else None for x in sla], "remind_at": [remind_at if x else None for x in sla],
            "due_at": [due_at if x else None for x in sla]}
        ids = _insert_payments(s, columns, count)
        res.inserted = len(ids)
        file_id = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
        audit.record(s, key=key, actor=actor, action="payments.imported", subject_type="bank_file",
                     subject_id=file_id,
                     payload={"file": path.name, "format": stmt.format, "inserted": len(ids),
                              "unchanged": res.unchanged, "quarantined": res.quarantined}, now=now)
        _record_application(s, app, ids, actor="system", key=key, now=now, file_id=file_id)
        for o in app.outcomes.values():
            res.outcomes[o] = res.outcomes.get(o, 0) + 1
        for n in person:
            res.exceptions.append(ids[n])
            notify(s, "payment.exception", payment_id=ids[n])
    return res


def payment_sla(now: datetime) -> tuple[datetime, datetime]:
    """A cash-application exception's reminder and due time: half the SLA and the SLA (``SLA_HOURS``),
    as for every other exception."""
    hours = get_settings().sla_hours
    return now + timedelta(hours=hours / 2), now + timedelta(hours=hours)


def _bulk_insert(s: Session, table: Table, columns: dict[str, list[Any]]) -> None:
    """One executemany of the rows given as ``columns`` (column name → its values, all as long).
    SQLite: straight through the driver, the column types' bind processors converting the values
    column by column as SQLAlchemy would, without SQLAlchemy's per-row parameter dictionaries (a
    third of the import's time at 100,000 rows); PostgreSQL: through SQLAlchemy."""
    if not columns or not next(iter(columns.values())):
        return
    conn = s.connection()
    dialect = conn.dialect
    if dialect.name != "sqlite":  # psycopg's executemany pipelines well enough
        conn.execute(insert(table), _rows(columns))
        return
    cols = list(columns)
    converted = [_money_text(columns[c]) if isinstance(table.c[c].type, Money)
                 else _converted(columns[c], table.c[c].type.dialect_impl(dialect).bind_processor(dialect))
                 for c in cols]
    q = dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {q(table.name)} ({', '.join(q(c) for c in cols)}) "
           f"VALUES ({', '.join('?' for _ in cols)})")
    conn.exec_driver_sql(sql, list(zip(*converted, strict=True)))


def _rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Columns of values → one dictionary per row (what SQLAlchemy's ``execute`` takes)."""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _converted(values: list[Any], proc: Any) -> list[Any]:
    """``values`` through a bind processor; a run of the same object (``now`` in every row) is
    converted once."""
    if proc is None:
        return values
    out: list[Any] = []
    last: Any = object()
    done: Any = None
    for v in values:
        if v is not last:
            last, done = v, (None if v is None else proc(v))
        out.append(done)
    return out


def _money_text(values: list[Any]) -> list[Any]:
    """A money column's values as :class:`storage.types.Money` binds them on SQLite — the exact decimal
    string, ``str(Decimal)`` — without a call of its processor per value (two columns of 100,000);
    anything but a Decimal or None still goes through the processor (which refuses floats)."""
    proc = Money().process_bind_param
    return [v if v is None else str(v) if type(v) is Decimal else proc(v, _SQLITE) for v in values]


def _insert_payments(s: Session, columns: dict[str, list[Any]], count: int) -> list[int]:
    """Insert the ``count`` new entries (``columns``: see :func:`_bulk_insert`); their ids in order.
    SQLite: the write transaction is ``BEGIN IMMEDIATE``, so the ids after the current maximum are ours
    and one executemany does (RETURNING in parameter order would be one statement per row there);
    PostgreSQL: ``INSERT … RETURNING`` in batches."""
    if s.get_bind().dialect.name == "sqlite":
        start = int(s.execute(select(func.coalesce(func.max(Payment.id), 0))).scalar_one()) + 1
        ids = list(range(start, start + count))
        _bulk_insert(s, _PAYMENTS, {"id": ids, **columns})
        return ids
    return list(s.execute(insert(_PAYMENTS).returning(_PAYMENTS.c.id, sort_by_parameter_order=True),
                          _rows(columns)).scalars())


def _new_entries(s: Session, entries: list[BankEntry]) -> list[BankEntry]:
    """Entries whose key is neither stored nor repeated earlier in the file (one query per account)."""
    if not entries:
        return []
    known: set[tuple[str, str, date, Decimal]] = set()
    lo, hi = min(e.booking_date for e in entries), max(e.booking_date for e in entries)
    for account in {e.account for e in entries}:
        q = select(Payment.account, Payment.entry_ref, Payment.booking_date, Payment.amount).where(
            Payment.account == account, Payment.booking_date.between(lo, hi))
        known.update(_key(*r) for r in s.execute(q).all())
    out: list[BankEntry] = []
    for e in entries:
        k = (e.account, e.entry_ref[:100], e.booking_date, e.amount.quantize(_MILLS))  # _key, inline
        if k not in known:
            known.add(k)
            out.append(e)
    return out


def open_invoices(s: Session, *, advertiser_id: str | None = None) -> list[OpenInvoice]:
    """Every invoice with an open amount: gross − its credit notes − allocations (two queries: the
    invoices with their credit notes, and the allocations)."""
    rows = _invoice_rows(s, advertiser_id)
    balances = _balances(s, advertiser_id=advertiser_id, rows=rows)
    return [OpenInvoice(i, n, a, c, balances[i][0], iss, due)
            for i, n, a, c, iss, due, _g in rows if balances[i][0] > 0]


def _invoice_rows(s: Session, advertiser_id: str | None) -> list[Any]:
    q = select(Invoice.id, Invoice.number, Invoice.advertiser_id, Invoice.currency, Invoice.issue_date,
               Invoice.due_date, Invoice.gross).where(Invoice.kind == "invoice")
    if advertiser_id:
        q = q.where(Invoice.advertiser_id == advertiser_id)
    # through the connection (Core): the ORM's result machinery cost a third more for 100,000 rows of
    # plain columns; flushed first, as the session's autoflush would have
    s.flush()
    return list(s.connection().execute(q).all())


def _balances(s: Session, *, advertiser_id: str | None = None, invoice_ids: Iterable[int] | None = None,
              rows: list[Any] | None = None) -> dict[int, tuple[Decimal, Decimal, Decimal, Decimal]]:
    """invoice id → (open, credited, paid, written off), from aggregates over the whole table
    (``rows``: the :func:`_invoice_rows` already read, whose gross is used).

    Money columns are strings on SQLite, so sums are taken here in Decimal, not in SQL."""
    if rows is not None:
        gross = {int(r[0]): Decimal(r[-1]) for r in rows}
    else:
        q = select(Invoice.id, Invoice.gross).where(Invoice.kind == "invoice")
        if advertiser_id:
            q = q.where(Invoice.advertiser_id == advertiser_id)
        if invoice_ids is not None:
            q = q.where(Invoice.id.in_(list(invoice_ids)))
        gross = {int(i): Decimal(g) for i, g in s.execute(q).all()}
    credited: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for ref, g in s.execute(select(Invoice.references_invoice_id, Invoice.gross)
                            .where(Invoice.kind == "credit_note", Invoice.references_invoice_id.is_not(None))):
        credited[int(cast(int, ref))] += -Decimal(g)  # credit notes carry negative amounts
    paid: dict[int, Decimal] = defaultdict(lambda: ZERO)
    written: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for inv, kind, amount in s.execute(select(PaymentAllocation.invoice_id, PaymentAllocation.kind,
                                              PaymentAllocation.amount)):
        (written if kind == "write_off" else paid)[int(inv)] += Decimal(amount)
    out: dict[int, tuple[Decimal, Decimal, Decimal, Decimal]] = {}
    for i, g in gross.items():  # .get: most invoices have no credit note and no allocation
        c, p, w = credited.get(i, ZERO), paid.get(i, ZERO), written.get(i, ZERO)
        out[i] = (g - c - p - w, c, p, w)
    return out


def open_amounts(s: Session, invoice_ids: Iterable[int]) -> dict[int, Decimal]:
    """invoice id → what is open on it now (gross − credit notes − allocations)."""
    return {i: b[0] for i, b in _balances(s, invoice_ids=list(invoice_ids)).items()}


def _match(s: Session, credits: list[IncomingPayment]) -> Application:
    """Apply ``credits`` to the open invoices: open invoices, known payer IBANs and advertiser names are
    read once, the rules run in memory (:func:`billing.payments.apply_cash`)."""
    if not credits:
        return Application()
    invoices = open_invoices(s)
    ibans = {str(i): str(a) for i, a in s.execute(select(PayerAccount.iban, PayerAccount.advertiser_id))}
    names = {str(i): str(n) for i, n in s.execute(select(Advertiser.id, Advertiser.name))}
    return apply_cash(credits, invoices, ibans, names)


def _record_application(s: Session, app: Application, ids: list[int], *, actor: str,
                        key: Ed25519PrivateKey | None, now: datetime, file_id: str) -> None:
    """Write what :func:`_match` decided (payments numbered by place; ``ids`` their stored ids)."""
    if app.allocations:
        allocs = app.allocations
        _bulk_insert(s, _ALLOCS, {"payment_id": [ids[a.payment_id] for a in allocs],
                                  "invoice_id": [a.invoice_id for a in allocs], "kind": ["payment"] * len(allocs),
                                  "amount": [a.amount for a in allocs], "method": [a.method for a in allocs],
                                  "actor": [actor] * len(allocs), "created_at": [now] * len(allocs)})
        # one signed record lists every allocation the matching made ([payment, invoice, amount, method]):
        # a statement of 100,000 entries is one record, not 100,000 (manual allocations get one each)
        audit.record(s, key=key, actor=actor, action="payments.applied", subject_type="bank_file",
                     subject_id=file_id, now=now,
                     payload={"allocations": [[ids[a.payment_id], a.invoice_id, str(a.amount), a.method]
                                              for a in app.allocations]})
    if app.learned_ibans:
        s.execute(insert(PayerAccount), [{"iban": i, "advertiser_id": a} for i, a in app.learned_ibans.items()])


def _needs_person(outcome: str, unapplied: Decimal, still_open: Decimal, tolerance: Decimal) -> bool:
    if outcome == "unmatched":
        return True
    if outcome == "overpaid":
        return unapplied > tolerance
    if outcome == "partial":
        return still_open > tolerance
    return False


# --------------------------------------------------------------------------- the watched folder

#: names a transfer client writes while a file is still arriving
PARTIAL_SUFFIXES = (".part", ".tmp", ".filepart", ".partial")


@dataclass
class InboxResult:
    imported: list[ImportResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # file → reason


def import_inbox(db: Database, inbox: Path, *, actor: str, key: Ed25519PrivateKey | None,
                 tolerance: Decimal = DEFAULT_TOLERANCE, now: datetime | None = None) -> InboxResult:
    """Import every bank file in ``inbox/bank/`` (oldest first), one import per file, then move it to
    ``processed/`` — or to ``failed/`` with a ``.reason.txt`` when it cannot be read. A crash between
    the import's commit and the move is harmless: the next pass imports the file again, which changes
    nothing, and moves it."""
    bank = inbox / "bank"
    res = InboxResult()
    if not bank.is_dir():
        return res
    files = [p for p in bank.iterdir() if p.is_file() and not p.name.startswith(".")
             and not p.name.lower().endswith(PARTIAL_SUFFIXES)]
    for path in sorted(files, key=lambda p: (p.stat().st_mtime, p.name)):
        try:
            res.imported.append(import_statement(db, path, actor=actor, key=key, tolerance=tolerance, now=now))
        except Invalid as e:
            res.failed[path.name] = e.message
            _move(path, bank / "failed").with_suffix(path.suffix + ".reason.txt").write_text(e.message + "\n")
            continue
        _move(path, bank / "processed")
    return res


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():  # the bank sent a file of the same name again
        target = folder / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{path.name}"
    return path.replace(target)


# --------------------------------------------------------------------------- manual decisions


def access_payment_action(s: Session, user: User | None, payment: Payment | None, action: str) -> Payment:
    """The payment ``user`` may act on, or why not (one condition per line, like
    ``access_exception_for_decision``)."""
    if user is None:
        raise NotAllowed("You are not a billbot user.", code="unknown_user")
    roles = user.role_names
    if payment is None:
        raise NotFound("payment not found")
    if payment.kind != "credit":
        raise NotAllowed(f"payment {payment.id} is a {payment.kind}, not a payment to apply", code="not_a_payment")
    if action == "allocate" and not roles & ALLOCATORS:
        raise NotAllowed("Allocating a payment needs the cash_applier or finance_manager role.",
                         code="cash_applier_required")
    if action in ("write_off", "refund") and "finance_manager" not in roles:
        raise NotAllowed(f"{action.replace('_', ' ').capitalize()} needs the finance_manager role.",
                         code="finance_manager_required")
    if action in ("allocate", "refund") and payment.unapplied <= 0:
        raise Conflict(f"payment {payment.id} has nothing left to apply", code="nothing_left")
    return payment


OPEN_SLA_STATES = ("open", "escalated")  # as bot.workflows.sla.OPEN_PAYMENT_SLA_STATES


def _settle_if_done(s: Session, p: Payment) -> None:
    """Stop a cash-application exception's SLA timers once nothing is left for a person (the rule of
    :func:`payment_case`): something applied, at most the tolerance unapplied and open on the last
    invoice it went to (a refund leaves only that invoice to look at)."""
    if p.sla_state not in OPEN_SLA_STATES:
        return
    tolerance = get_settings().payment_tolerance
    last = s.execute(select(PaymentAllocation.invoice_id).where(
        PaymentAllocation.payment_id == p.id, PaymentAllocation.kind == "payment")
        .order_by(PaymentAllocation.id.desc()).limit(1)).scalar_one_or_none()
    open_last = ZERO if last is None else _balances(s, invoice_ids=[last])[last][0]
    if p.state == "refunded":
        done = open_last <= tolerance
    else:
        done = p.state != "unmatched" and p.unapplied <= tolerance and open_last <= tolerance
    if done:
        p.sla_state = "settled"


def payment_posted(db: Database, payment_id: int, *, channel: str, ts: str) -> None:
    """Where a cash-application exception's Slack message is (the SLA reminder replies in its thread)."""
    with db.transaction() as s:
        p = s.get(Payment, payment_id)
        if p is not None:
            p.channel, p.message_ts = channel, ts


def _user(s: Session, slack_id: str) -> User | None:
    return s.get(User, slack_id)


def invoice_by_number(s: Session, number: str) -> Invoice:
    q = select(Invoice).where(Invoice.number == number.strip(), Invoice.kind == "invoice")
    inv = s.execute(q).scalars().first()
    if inv is None:
        raise NotFound(f"invoice {number} not found")
    return inv


def allocate(db: Database, *, payment_id: int, invoice_number: str, actor: str, key: Ed25519PrivateKey | None,
             amount: Decimal | None = None, now: datetime | None = None) -> Decimal:
    """Apply (part of) a payment's unapplied money to an invoice; returns the amount allocated.

    Lock: ``SELECT … FOR UPDATE`` on the payment row, so two clicks never apply the same money twice."""
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        payment = s.execute(select(Payment).where(Payment.id == payment_id).with_for_update()).scalar_one_or_none()
        p = access_payment_action(s, _user(s, actor), payment, "allocate")
        inv = invoice_by_number(s, invoice_number)
        if inv.currency != p.currency:
            raise Invalid(f"invoice {inv.number} is in {inv.currency}, the payment in {p.currency}")
        open_ = _balances(s, invoice_ids=[inv.id])[inv.id][0]
        if open_ <= 0:
            raise Conflict(f"invoice {inv.number} has nothing open", code="nothing_open")
        take = min(p.unapplied, open_) if amount is None else amount
        if take <= 0 or take > p.unapplied or take > open_:
            raise Invalid(f"amount: must be more than 0 and at most {min(p.unapplied, open_)} "
                          f"(payment {p.id} has {p.unapplied} unapplied, {inv.number} has {open_} open)")
        s.add(PaymentAllocation(payment_id=p.id, invoice_id=inv.id, kind="payment", amount=take, method="manual",
                                actor=actor, created_at=now))
        p.unapplied -= take
        rest_open = open_ - take
        p.state = "overpaid" if p.unapplied > 0 else "partial" if rest_open > 0 else "matched"
        if p.payer_iban and s.get(PayerAccount, p.payer_iban) is None:
            s.add(PayerAccount(iban=p.payer_iban, advertiser_id=inv.advertiser_id, learned_from_payment_id=p.id))
        audit.record(s, key=key, actor=actor, action="payment.allocated", subject_type="payment", subject_id=p.id,
                     payload={"invoice": inv.number, "amount": str(take), "method": "manual"}, now=now)
        s.flush()
        _settle_if_done(s, p)
        notify(s, "payment.decided", payment_id=p.id)
        return take


def write_off(db: Database, *, invoice_number: str, actor: str, key: Ed25519PrivateKey | None, reason: str,
              payment_id: int | None = None, now: datetime | None = None) -> Decimal:
    """Write off what is open on an invoice (an under-payment's difference); finance managers only,
    and never the author of a manual allocation on that invoice (separation of duties)."""
    if not reason or not reason.strip():
        raise Invalid("reason: a write-off needs a reason")
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        user = _user(s, actor)
        inv = invoice_by_number(s, invoice_number)
        if user is None or "finance_manager" not in user.role_names:
            raise NotAllowed("Write off difference needs the finance_manager role.", code="finance_manager_required")
        authors = set(s.execute(select(PaymentAllocation.actor).where(
            PaymentAllocation.invoice_id == inv.id, PaymentAllocation.method == "manual")).scalars())
        if actor in authors:
            raise NotAllowed("You allocated a payment to this invoice, so someone else must write off the difference.",
                             code="own_work")
        open_ = _balances(s, invoice_ids=[inv.id])[inv.id][0]
        if open_ <= 0:
            raise Conflict(f"invoice {inv.number} has nothing open", code="nothing_open")
        s.add(PaymentAllocation(payment_id=payment_id, invoice_id=inv.id, kind="write_off", amount=open_,
                                method="manual", actor=actor, created_at=now))
        audit.record(s, key=key, actor=actor, action="invoice.written_off", subject_type="invoice", subject_id=inv.id,
                     payload={"invoice": inv.number, "amount": str(open_), "reason": reason.strip()}, now=now)
        s.flush()
        # the payments whose exception this write-off may settle: the one named, and those applied to the invoice
        touched = set(s.execute(select(PaymentAllocation.payment_id).where(
            PaymentAllocation.invoice_id == inv.id, PaymentAllocation.payment_id.is_not(None))).scalars())
        for pay in s.execute(select(Payment).where(
                Payment.id.in_(touched | ({payment_id} if payment_id else set())),
                Payment.sla_state.in_(OPEN_SLA_STATES))).scalars():
            _settle_if_done(s, pay)
        return open_


def refund(db: Database, *, payment_id: int, actor: str, key: Ed25519PrivateKey | None, reason: str,
           now: datetime | None = None) -> Decimal:
    """Mark an over-payment's unapplied money as to be refunded (finance managers only)."""
    if not reason or not reason.strip():
        raise Invalid("reason: a refund needs a reason")
    now = now or datetime.now(UTC)
    with db.transaction() as s:
        payment = s.execute(select(Payment).where(Payment.id == payment_id).with_for_update()).scalar_one_or_none()
        p = access_payment_action(s, _user(s, actor), payment, "refund")
        amount = p.unapplied
        p.unapplied = ZERO
        p.state = "refunded"
        audit.record(s, key=key, actor=actor, action="payment.refunded", subject_type="payment", subject_id=p.id,
                     payload={"amount": str(amount), "reason": reason.strip()}, now=now)
        _settle_if_done(s, p)
        notify(s, "payment.decided", payment_id=p.id)
        return amount


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class PaymentView:
    id: int
    booking_date: date
    value_date: date | None
    amount: Decimal
    currency: str
    kind: str
    payer_name: str | None
    payer_iban: str | None
    remittance: str | None
    state: str
    unapplied: Decimal
    allocations: list[tuple[str, Decimal, str]]  # (invoice number, amount, method)


def list_payments(db: Database, *, state: str | None = None) -> list[PaymentView]:
    with db.read() as s:
        q = select(Payment).order_by(Payment.booking_date, Payment.id)
        if state:
            q = q.where(Payment.state == state)
        rows = list(s.execute(q).scalars())
        allocs: dict[int, list[tuple[str, Decimal, str]]] = defaultdict(list)
        for pid, number, amount, method in s.execute(
                select(PaymentAllocation.payment_id, Invoice.number, PaymentAllocation.amount, PaymentAllocation.method)
                .join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
                .where(PaymentAllocation.payment_id.is_not(None)).order_by(PaymentAllocation.id)):
            allocs[int(cast(int, pid))].append((str(number), Decimal(amount), str(method)))
        return [PaymentView(p.id, p.booking_date, p.value_date, p.amount, p.currency, p.kind, p.payer_name,
                            p.payer_iban, p.remittance, p.state, p.unapplied, allocs.get(p.id, [])) for p in rows]


@dataclass(frozen=True)
class InvoicePayment:
    paid: Decimal
    open_amount: Decimal
    payment_state: str
    reference: str


def invoice_payments(db: Database, *, today: date) -> dict[int, InvoicePayment]:
    """Payment figures of every invoice (credit notes get their own reference and no state)."""
    with db.read() as s:
        bal = _balances(s)
        disputed = set(s.execute(select(InvoiceHold.invoice_id).where(InvoiceHold.kind == "dispute",
                                                                      InvoiceHold.state == "open")).scalars())
        disputed |= set(s.execute(select(Dispute.invoice_id).where(Dispute.state.in_(OPEN_DISPUTE_STATES))).scalars())
        out: dict[int, InvoicePayment] = {}
        for i, number, due, cur in s.execute(select(Invoice.id, Invoice.number, Invoice.due_date, Invoice.currency)
                                             .where(Invoice.kind == "invoice")):
            open_, credited, paid, written = bal[int(i)]
            gross = open_ + credited + paid + written
            state, o = payment_state(gross=gross, credited=credited, paid=paid, written_off=written, due_date=due,
                                     today=today, disputed=int(i) in disputed)
            q = quantum(str(cur))  # PostgreSQL returns the column's six places; figures are in the currency's
            out[int(i)] = InvoicePayment(paid.quantize(q), o.quantize(q), state, creditor_reference(str(number)))
        return out


def payment_candidates(db: Database, payment_id: int, limit: int = 3) -> list[OpenInvoice]:
    """The best open invoices for a payment a person must settle (Slack's "Allocate to…")."""
    with db.read() as s:
        p = s.get(Payment, payment_id)
        if p is None:
            raise NotFound(f"payment {payment_id} not found")
        names = {str(i): str(n) for i, n in s.execute(select(Advertiser.id, Advertiser.name))}
        return candidates(p.unapplied or p.amount, p.currency, p.payer_name, open_invoices(s), names, limit=limit)


# --------------------------------------------------------------------------- aging and DSO


@dataclass(frozen=True)
class AgingRow:
    advertiser_id: str
    advertiser: str
    currency: str
    buckets: dict[str, Decimal]
    total: Decimal
    # the same buckets in the reporting currency (None: no rate for this currency, see ReportingAging)
    reporting: dict[str, Decimal] | None = None


@dataclass(frozen=True)
class ReportingAging:
    """Aging totals over every advertiser in one reporting currency.

    Each invoice's open amount is converted at the rate **locked on the invoice** when it locked one
    between its currency and the reporting currency (either direction); otherwise at the **latest
    stored rate** (ECB, at most 7 days old) on or before the as-of day. Half-up to the cent per invoice,
    then summed. Currencies with neither are listed in ``unconverted`` and left out of the totals."""

    currency: str
    buckets: dict[str, Decimal]
    total: Decimal
    unconverted: list[str]


def aging(db: Database, *, as_of: date, reporting_currency: str | None = None) -> list[AgingRow]:
    """Open amounts per advertiser and currency in buckets by days past due on ``as_of``, with the
    same in the reporting currency (:class:`ReportingAging` says how)."""
    return aging_report(db, as_of=as_of, reporting_currency=reporting_currency)[0]


def aging_report(db: Database, *, as_of: date,
                 reporting_currency: str | None = None) -> tuple[list[AgingRow], ReportingAging]:
    """:func:`aging` and the totals over all advertisers in the reporting currency."""
    with db.read() as s:
        return aging_in(s, as_of=as_of, reporting_currency=reporting_currency)


def aging_in(s: Session, *, as_of: date,
             reporting_currency: str | None = None) -> tuple[list[AgingRow], ReportingAging]:
    from billing.payments import BUCKETS

    names = {str(i): str(n) for i, n in s.execute(select(Advertiser.id, Advertiser.name))}
    to = reporting_currency or default_reporting_currency(s)
    invoices = open_as_of(s, as_of)
    converted, unconverted = _in_reporting_currency(s, invoices, to, as_of)
    acc: dict[tuple[str, str], dict[str, Decimal]] = {}
    rep: dict[tuple[str, str], dict[str, Decimal]] = {}
    totals = dict.fromkeys(BUCKETS, ZERO)
    for inv in invoices:
        k = bucket((as_of - inv.due_date).days)
        acc.setdefault((inv.advertiser_id, inv.currency), dict.fromkeys(BUCKETS, ZERO))[k] += inv.open_amount
        if inv.id in converted:
            rep.setdefault((inv.advertiser_id, inv.currency), dict.fromkeys(BUCKETS, ZERO))[k] += converted[inv.id]
            totals[k] += converted[inv.id]
    rows = [AgingRow(a, names.get(a, a), c, b, sum(b.values(), ZERO), rep.get((a, c)))
            for (a, c), b in sorted(acc.items(), key=lambda kv: (names.get(kv[0][0], ""), kv[0][1]))]
    return rows, ReportingAging(to, totals, sum(totals.values(), ZERO), sorted(unconverted))


def default_reporting_currency(s: Session) -> str:
    """``REPORTING_CURRENCY``, else the main legal entity's currency (one rule for every total:
    :func:`bot.workflows.run_reports.reporting_currency`)."""
    return run_reports.reporting_currency(s)


def _in_reporting_currency(s: Session, invoices: list[OpenInvoice], to: str,
                           as_of: date) -> tuple[dict[int, Decimal], set[str]]:
    """invoice id → open amount in ``to`` (:class:`bot.workflows.fx.Converter`: the invoice's locked rate,
    else the latest stored one), and the currencies without a rate."""
    from bot.workflows.fx import Converter

    out = {i.id: i.open_amount for i in invoices if i.currency == to}
    foreign = [i for i in invoices if i.currency != to]
    if not foreign:
        return out, set()
    fx: dict[int, dict[str, Any] | None] = {  # no IN list: there may be more invoices than SQLite's variables
        int(i): f for i, f in s.execute(select(Invoice.id, Invoice.fx).where(Invoice.kind == "invoice",
                                                                             Invoice.currency != to))}
    conv = Converter(s, to, as_of)
    missing: set[str] = set()
    for inv in foreign:
        got = conv.amount(inv.open_amount, inv.currency, fx.get(inv.id))
        if got is None:
            missing.add(inv.currency)
        else:
            out[inv.id] = got
    return out, missing


def open_as_of(s: Session, as_of: date) -> list[OpenInvoice]:
    """Open invoices issued on or before ``as_of``, counting allocations made up to that day only."""
    all_rows = _invoice_rows(s, None)
    rows = [r for r in all_rows if r.issue_date <= as_of]
    bal = _balances(s, rows=all_rows)
    late: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for inv, amount, at in s.execute(select(PaymentAllocation.invoice_id, PaymentAllocation.amount,
                                            PaymentAllocation.created_at)):
        if at.date() > as_of:
            late[int(inv)] += Decimal(amount)
    out = []
    for i, n, a, c, iss, due, _g in rows:
        open_ = bal[int(i)][0] + late[int(i)]
        if open_ > 0:
            out.append(OpenInvoice(i, n, a, c, open_, iss, due))
    return out


def days_sales_outstanding(db: Database, *, as_of: date, days: int = 90) -> dict[str, Decimal | None]:
    """DSO per currency: open receivables on ``as_of`` ÷ gross invoiced in the ``days`` before × ``days``."""
    with db.read() as s:
        return dso_by_currency(s, as_of=as_of, days=days)


def dso_by_currency(s: Session, *, as_of: date, days: int = 90) -> dict[str, Decimal | None]:
    from datetime import timedelta

    start = as_of - timedelta(days=days - 1)
    sales: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for cur, g in s.execute(select(Invoice.currency, Invoice.gross).where(Invoice.issue_date.between(start, as_of))):
        sales[str(cur)] += Decimal(g)  # credit notes (negative) reduce the period's sales
    open_: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for inv in open_as_of(s, as_of):
        open_[inv.currency] += inv.open_amount
    return {c: dso(open_[c], sales[c], days) for c in sorted(set(sales) | set(open_))}


__all__ = ["ImportResult", "aging", "allocate", "days_sales_outstanding", "import_statement", "invoice_payments",
           "list_payments", "refund", "write_off"]


# --------------------------------------------------------------------------- cash-application exceptions


@dataclass(frozen=True)
class PaymentCase:
    """What a person sees of a payment matching could not settle (the Slack message's read model)."""

    payment: PaymentView
    invoice: str | None  # the invoice the payment was applied to last (partial / overpaid)
    invoice_open: Decimal  # what stays open on it
    candidates: list[tuple[str, str, Decimal, str]]  # (number, advertiser name, open amount, currency)
    settled: bool  # nothing left for a person to do


def payment_case(db: Database, payment_id: int, *, tolerance: Decimal = DEFAULT_TOLERANCE) -> PaymentCase:
    views = {v.id: v for v in list_payments(db)}
    v = views.get(payment_id)
    if v is None:
        raise NotFound(f"payment {payment_id} not found")
    last = v.allocations[-1][0] if v.allocations else None
    with db.read() as s:
        names = {str(i): str(n) for i, n in s.execute(select(Advertiser.id, Advertiser.name))}
        open_last = ZERO
        if last is not None:
            inv = invoice_by_number(s, last)
            open_last = _balances(s, invoice_ids=[inv.id])[inv.id][0]
        cands = candidates(v.unapplied or v.amount, v.currency, v.payer_name, open_invoices(s), names, limit=3)
    settled = v.unapplied <= tolerance and open_last <= tolerance if v.state != "unmatched" else False
    if v.state == "refunded":
        settled = open_last <= tolerance
    return PaymentCase(v, last, open_last, [(c.number, names.get(c.advertiser_id, c.advertiser_id), c.open_amount,
                                             c.currency) for c in cands], settled)
