"""One-off and adjusted invoices (issue 19, item 7), under the maker-checker rules of manual changes.

- :func:`create_one_off`: a draft pre-invoice without a campaign for an advertiser, from lines
  ``text;quantity;unit price;VAT %`` (``billbot invoices create --advertiser A --line …``). It is
  checked like every pre-invoice and waits (``pending``) on a ``manual_change`` exception that only
  someone other than its maker may approve; approved, the next billing run that reaches its service
  date invoices it on its own (never merged with campaign items).
- :func:`set_overrides`: per-invoice header overrides on a pre-invoice not yet invoiced — payment terms,
  a recipient (addressee line), notes. The overrides are part of the content an approval binds to; any
  approval is voided and a ``manual_change`` exception waits for a second person; the pre-invoice
  becomes an invoice of its own.
- :func:`cancel_preinvoice`: asks, with a reason, to cancel a whole pre-invoice that is not invoiced;
  the pre-invoice waits (``pending``) until someone other than the asker approves (``cancelled``) or
  rejects (back to draft, checked again) the ``manual_change`` exception. A finalized invoice is never
  cancelled: it is corrected with a credit note.

Every step is audited (``preinvoice.one_off_created``, ``preinvoice.header_overridden``,
``preinvoice.cancel_requested``, ``preinvoice.cancelled``, ``preinvoice.cancel_rejected``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from billing.errors import Conflict, Invalid, NotAllowed, NotFound
from billing.money import ZERO, is_currency, quantum
from billing.tax import VatProblem, vat_treatment
from billing.variance import DEFAULT_TOLERANCE
from bot.workflows import preinvoices
from bot.workflows.exceptions import close_exception, open_exception, open_exceptions_for
from bot.workflows.users import access_user_with_role
from storage.db import Database
from storage.models import Advertiser, BillingException, Invoice, PreInvoice, PreInvoiceLine

#: Who may make these changes (the checker is an approver or finance manager other than the maker).
MAKER_ROLES = frozenset({"operator", "finance_manager", "admin"})
HEADER_FIELDS = ("payment_terms_days", "recipient", "notes")
RECIPIENT_MAX = 200
NOTES_MAX = 1000
PO_NUMBER_MAX = 64  # as the scenario format's po_number


@dataclass(frozen=True)
class OneOffLine:
    description: str
    quantity: Decimal
    unit_price: Decimal
    vat_rate: Decimal  # percent


def _number(text: str, what: str, spec: str) -> Decimal:
    try:
        value = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        raise Invalid(f"--line {spec!r}: {what} {text.strip()!r} is not a number") from None
    if not value.is_finite():
        raise Invalid(f"--line {spec!r}: {what} {text.strip()!r} is not a number")
    return value


def parse_line(spec: str) -> OneOffLine:
    """``text;quantity;unit price;VAT %`` (the text may itself hold ``;``: the last three fields count).

    >>> x = parse_line("Sponsored post; June;2;450.00;19")
    >>> x.description, x.quantity, x.unit_price, x.vat_rate
    ('Sponsored post; June', Decimal('2'), Decimal('450.00'), Decimal('19'))
    """
    parts = spec.rsplit(";", 3)
    if len(parts) != 4 or not parts[0].strip():
        raise Invalid(f"--line {spec!r}: expected text;quantity;unit price;VAT %, e.g. \"Sponsored post;1;450.00;19\"")
    text, qty, price, vat = parts
    quantity = _number(qty, "quantity", spec)
    if quantity <= 0:
        raise Invalid(f"--line {spec!r}: quantity must be more than 0")
    vat_rate = _number(vat.strip().removesuffix("%"), "VAT %", spec)
    if not 0 <= vat_rate <= 100:
        raise Invalid(f"--line {spec!r}: VAT % must be 0–100")
    return OneOffLine(text.strip()[:500], quantity, _number(price, "unit price", spec), vat_rate)


def _maker(s: Session, actor: str, what: str) -> None:
    access_user_with_role(s, actor, MAKER_ROLES, what)


def _open_check(s: Session, pi: PreInvoice, *, key_name: str, actor: str, key: Ed25519PrivateKey | None,
                now: datetime, summary: str, evidence: dict[str, Any]) -> BillingException:
    """The ``manual_change`` exception a second person decides (never the maker: decisions refuse the
    exception's starter and the pre-invoice's creator and editors)."""
    return open_exception(
        s, kind="manual_change", key=key_name, legal_entity_id=pi.legal_entity_id, advertiser_id=pi.advertiser_id,
        preinvoice_id=pi.id, billing_run_id=None, period_start=pi.period_start, period_end=pi.period_end,
        amount=pi.net, currency=pi.currency, cause="manual_change", summary=summary, evidence=evidence,
        subject_hash=pi.content_hash, started_by=actor, now=now, signing_key=key)


# --------------------------------------------------------------------------- one-off invoices


def create_one_off(
    db: Database, *, advertiser_id: str, lines: list[str], actor: str, key: Ed25519PrivateKey | None,
    now: datetime, service_start: date | None = None, service_end: date | None = None,
    default_tolerance: Decimal = DEFAULT_TOLERANCE,
) -> int:
    """Create a one-off pre-invoice (see the module docstring); returns its id. Every bad line is named."""
    if not lines:
        raise Invalid("give at least one --line \"text;quantity;unit price;VAT %\"")
    problems: list[str] = []
    parsed: list[OneOffLine] = []
    for spec in lines:
        try:
            parsed.append(parse_line(spec))
        except Invalid as e:
            problems.extend(e.problems)
    start = service_start or service_end or now.date()
    end = service_end or start
    if end < start:
        problems.append(f"service period: the end {end.isoformat()} is before the start {start.isoformat()}")
    if problems:
        raise Invalid(problems)
    with db.transaction() as s:
        _maker(s, actor, "creating a one-off invoice")
        adv = s.execute(select(Advertiser).options(joinedload(Advertiser.legal_entity))
                        .where(Advertiser.id == advertiser_id)).unique().scalar_one_or_none()
        if adv is None:
            raise NotFound(f"advertiser {advertiser_id} not found")
        le = adv.legal_entity
        t = vat_treatment(seller_country=le.country, buyer_country=adv.country, buyer_vat_id=adv.vat_id)
        if isinstance(t, VatProblem):
            raise Invalid(f"{adv.name}: {t.message}")
        q = quantum(adv.currency) if is_currency(adv.currency) else Decimal("0.01")
        for i, x in enumerate(parsed, start=1):
            if x.vat_rate != t.rate:
                problems.append(f"line {i} ({x.description}): VAT {x.vat_rate.normalize():f} % is not the "
                                f"{t.rate.normalize():f} % of invoices from {le.country} to {adv.name} ({t.kind}); "
                                "an invoice carries one VAT rate")
        if problems:
            raise Invalid(problems)
        pi = PreInvoice(campaign_id=None, advertiser_id=adv.id, legal_entity_id=le.id, period_start=start,
                        period_end=end, state="draft", currency=adv.currency, net=ZERO, content_hash="",
                        created_by=actor, problems=[], version=1, created_at=now, updated_at=now)
        pi.lines = [PreInvoiceLine(position=i, kind="manual", description=x.description, quantity=x.quantity,
                                   unit="unit", unit_price=x.unit_price,
                                   amount=(x.quantity * x.unit_price).quantize(q, rounding=ROUND_HALF_UP),
                                   computation={"one_off": True, "vat_rate": str(x.vat_rate)}, edited=False)
                    for i, x in enumerate(parsed)]
        s.add(pi)
        s.flush()
        preinvoices._recompute(pi)
        shown = [{"description": x.description, "quantity": str(x.quantity), "unit_price": str(x.unit_price),
                  "amount": str(r.amount), "vat_rate": str(x.vat_rate)} for x, r in zip(parsed, pi.lines, strict=True)]
        preinvoices.record_change(s, key, actor, "preinvoice.one_off_created", pi,
                                  {"advertiser": adv.id, "period": [start.isoformat(), end.isoformat()],
                                   "lines": shown, "net": str(pi.net), "content_hash": pi.content_hash}, now)
        _open_check(s, pi, key_name=preinvoices.manual_change_key(pi.id), actor=actor, key=key, now=now,
                    summary=f"One-off pre-invoice #{pi.id} for {adv.name} by {actor}: net {pi.net.quantize(q)} "
                            f"{pi.currency}",
                    evidence={"change": "one-off invoice", "editor": actor, "state_before": "new",
                              "net_before": "0", "net_after": str(pi.net.quantize(q)), "diff": {"lines": shown}})
        preinvoices.evaluate(s, [pi], actor=actor, key=key, now=now, default_tolerance=default_tolerance)
        return int(pi.id)


# --------------------------------------------------------------------------- header overrides


def _clean_overrides(payment_terms_days: int | None, recipient: str | None, notes: str | None,
                     po_number: str | None = None) -> dict[str, Any]:
    given: dict[str, Any] = {}
    problems = []
    if payment_terms_days is not None:
        if not 0 <= payment_terms_days <= 365:
            problems.append(f"payment terms: {payment_terms_days} days is not 0–365")
        given["payment_terms_days"] = int(payment_terms_days)
    for name, value, limit in (("recipient", recipient, RECIPIENT_MAX), ("notes", notes, NOTES_MAX),
                               ("po_number", po_number, PO_NUMBER_MAX)):
        if value is None:
            continue
        v = " ".join(value.split()) if name in ("recipient", "po_number") else value.strip()
        if not v:
            problems.append(f"{name}: must not be empty (use --clear to remove the overrides)")
        elif len(v) > limit:
            problems.append(f"{name}: at most {limit} characters, got {len(v)}")
        given[name] = v
    if problems:
        raise Invalid(problems)
    return given


def set_overrides(
    db: Database, preinvoice_id: int, *, actor: str, key: Ed25519PrivateKey | None, now: datetime,
    payment_terms_days: int | None = None, recipient: str | None = None, notes: str | None = None,
    po_number: str | None = None, clear: bool = False, default_tolerance: Decimal = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Set (or ``clear``) header overrides of a pre-invoice not yet invoiced; returns them. ``po_number``:
    the buyer's order number this invoice is billed under (BT-13), instead of the campaign's or the
    advertiser's."""
    given = _clean_overrides(payment_terms_days, recipient, notes, po_number)
    if not given and not clear:
        raise Invalid("give --payment-terms, --recipient, --notes or --po-number (or --clear)")
    with db.transaction() as s:
        _maker(s, actor, "overriding an invoice's header")
        pi = preinvoices._editable(s, preinvoice_id)
        before = dict(pi.overrides or {})
        after = given if clear else {**before, **given}
        if after == before:
            raise Invalid(f"pre-invoice {preinvoice_id} already has these overrides: nothing changes")
        pi.overrides = after or None
        preinvoices._after_edit(s, pi, actor=actor, key=key, now=now, default_tolerance=default_tolerance,
                                action="preinvoice.header_overridden", payload={"before": before, "after": after},
                                always_check=True)
        return after


# --------------------------------------------------------------------------- cancelling a whole draft


def cancel_key_prefix(preinvoice_id: int) -> str:
    """Each cancel request is an exception of its own (``cancel:<id>:<n>``): a rejected request stays
    decided, and the next one is started — and may not be decided — by whoever asks then."""
    return f"cancel:{preinvoice_id}:"


def _next_cancel_key(s: Session, preinvoice_id: int) -> str:
    prefix = cancel_key_prefix(preinvoice_id)
    n = len(s.execute(select(BillingException.id).where(BillingException.key.startswith(prefix))).all())
    return f"{prefix}{n + 1}"


def cancel_preinvoice(db: Database, preinvoice_id: int, *, reason: str | None, actor: str,
                      key: Ed25519PrivateKey | None, now: datetime) -> int:
    """Ask to cancel a whole pre-invoice; returns the exception a second person decides."""
    why = (reason or "").strip()
    if not why:
        raise Invalid("reason: cancelling a pre-invoice needs a reason (--reason)")
    with db.transaction() as s:
        _maker(s, actor, "cancelling a pre-invoice")
        pi = s.execute(select(PreInvoice).options(selectinload(PreInvoice.lines), joinedload(PreInvoice.campaign),
                                                  joinedload(PreInvoice.advertiser))
                       .where(PreInvoice.id == preinvoice_id).with_for_update(of=PreInvoice)
                       ).unique().scalar_one_or_none()
        if pi is None:
            raise NotFound(f"pre-invoice {preinvoice_id} not found")
        if pi.state == "invoiced" or pi.invoice_id is not None:
            number = s.execute(select(Invoice.number).where(Invoice.id == pi.invoice_id)).scalar() if pi.invoice_id \
                else None
            raise NotAllowed(f"pre-invoice {preinvoice_id} is already invoiced{f' ({number})' if number else ''}: "
                             "a finalized invoice is not cancelled but corrected with a credit note", code="state")
        if pi.state == "cancelled":
            raise Conflict(f"pre-invoice {preinvoice_id} is already cancelled", code="state")
        if any(e.key.startswith(cancel_key_prefix(pi.id)) for e in open_exceptions_for(s, pi.id)):
            raise Conflict(f"pre-invoice {preinvoice_id} already waits for a decision on its cancellation",
                           code="already_requested")
        state_before = pi.state
        if pi.state == "approved":
            preinvoices._void_approval(s, pi, actor=actor, key=key, now=now, why="preinvoice.cancel_requested")
        pi.state = "pending"
        pi.updated_at = now
        preinvoices.record_change(s, key, actor, "preinvoice.cancel_requested", pi,
                                  {"reason": why, "state_before": state_before, "content_hash": pi.content_hash}, now)
        q = quantum(pi.currency) if is_currency(pi.currency) else Decimal("0.01")
        what = pi.campaign.name if pi.campaign is not None else "one-off"
        exc = _open_check(s, pi, key_name=_next_cancel_key(s, pi.id), actor=actor, key=key, now=now,
                          summary=f"Cancel pre-invoice #{pi.id} ({pi.advertiser.name}, {what}, "
                                  f"{pi.period_start}..{pi.period_end}, net {pi.net.quantize(q)} {pi.currency}): "
                                  f"{why}",
                          evidence={"change": "cancel", "editor": actor, "reason": why, "state_before": state_before,
                                    "net_before": str(pi.net.quantize(q)), "net_after": "0"})
        return int(exc.id)


def is_cancel_request(exc: BillingException) -> bool:
    return exc.kind == "manual_change" and (exc.evidence or {}).get("change") == "cancel"


def decide_cancel(s: Session, exc: BillingException, decision: str, *, actor: str, reason: str | None,
                  key: Ed25519PrivateKey | None, now: datetime) -> None:
    """The checker's decision on a cancel request (called by :func:`bot.workflows.decisions.decide`):
    approve cancels the pre-invoice (its other open exceptions are closed), reject puts it back to draft
    and checks it again."""
    if exc.preinvoice_id is None:
        raise Invalid(f"exception {exc.id}: a cancel request without a pre-invoice cannot be decided")
    pi = preinvoices._editable(s, exc.preinvoice_id)
    evidence = exc.evidence or {}
    if decision == "approve":
        pi.state = "cancelled"
        pi.hold_reason = f"cancelled: {evidence.get('reason') or ''}".strip()
        pi.updated_at = now
        preinvoices.record_change(s, key, actor, "preinvoice.cancelled", pi,
                                  {"reason": evidence.get("reason"), "requested_by": exc.started_by,
                                   "exception": exc.id}, now)
        for other in open_exceptions_for(s, pi.id):
            close_exception(s, other.id, reason=f"pre-invoice #{pi.id} cancelled", actor=actor, signing_key=key,
                            now=now)
        return
    if decision == "reject":
        pi.state = "draft"
        pi.updated_at = now
        preinvoices.record_change(s, key, actor, "preinvoice.cancel_rejected", pi,
                                  {"reason": reason, "requested_by": exc.started_by, "exception": exc.id}, now)
        preinvoices.evaluate(s, [pi], actor=actor, key=key, now=now)
        return
    raise Invalid("force: a cancellation is approved or rejected by a second person, never forced")
