"""Rows → billing values: what workflows hand to the pure core, taken from ORM rows in one place.

Nothing here writes or queries beyond the relationships of the rows it is given (and, for a
document, the invoice it references); every function maps a row to a frozen ``billing`` value.

- :func:`campaign_spec`, :func:`line_draft` / :func:`line_drafts`, :func:`preinvoice_hash` and
  :func:`check_input`: campaigns and pre-invoices for ``billing.preinvoice`` and ``billing.checks``;
- :func:`document_for_invoice`: an ``Invoice`` row (lines, parties snapshot, approvals, locked FX)
  → :class:`billing.documents.InvoiceDocument`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.addresses import PostalAddress, address_lines, parse_address
from billing.checks import CheckInput
from billing.documents import Approval, DocumentLine, InvoiceDocument, Party, doc_locale
from billing.documents.model import document_quantity
from billing.errors import NotFound
from billing.fx import MAX_AGE_DAYS, LockedRate, Rate, agreed_rate, invoice_rate, locked_rate, rate_day
from billing.preinvoice import CampaignSpec, ItemSpec, LineDraft, content_hash
from billing.terms import invoice_date
from storage.models import Advertiser, Campaign, Invoice, InvoiceLine, LegalEntity, PreInvoice, PreInvoiceLine

# --------------------------------------------------------------------------- campaigns and pre-invoices


def campaign_spec(c: Campaign) -> CampaignSpec:
    le = c.advertiser.legal_entity
    return CampaignSpec(
        id=c.id, name=c.name, advertiser_id=c.advertiser_id, currency=c.advertiser.currency,
        payment_interval=c.payment_interval, start=c.start, end=c.end, start_of_week=le.start_of_week,
        items=tuple(ItemSpec(
            id=i.id, description=i.description, position=i.position, billing=i.billing, unit=i.unit,
            basis=i.period, amount=i.amount, rate_type=i.rate_type, rate=i.rate, booked_quantity=i.booked_quantity,
            start=i.start, end=i.end,
        ) for i in c.items),
    )


def line_draft(x: PreInvoiceLine) -> LineDraft:
    return LineDraft(description=x.description, quantity=x.quantity, unit=x.unit, unit_price=x.unit_price,
                     amount=x.amount, item_id=x.item_id, kind=x.kind, computation=dict(x.computation or {}),
                     edited=bool(x.edited), id=x.id)


def line_drafts(pi: PreInvoice) -> list[LineDraft]:
    return [line_draft(x) for x in sorted(pi.lines, key=lambda x: (x.position, x.id or 0))]


def preinvoice_hash(pi: PreInvoice) -> str:
    """The content hash an approval of ``pi`` binds to (campaign, period, currency, canonical lines)."""
    return content_hash(campaign_id=pi.campaign_id, period_start=pi.period_start, period_end=pi.period_end,
                        currency=pi.currency, lines=line_drafts(pi), overrides=pi.overrides)


def check_input(pi: PreInvoice, adv: Advertiser, le: LegalEntity, rates: Sequence[Rate], on: date) -> CheckInput:
    """What the checks see of ``pi`` if it were invoiced on the run day ``on`` (its issue date by the
    terms' rule, the exchange rate by the legal entity's FX rule or the campaign's agreed rate)."""
    issue = invoice_date(adv.invoice_date_rule or le.invoice_date_rule, run_day=on, service_end=pi.period_end)
    rule = le.fx_rule or "issue_date"
    fx = (fx_for(rates, pi.currency, le, [pi.campaign] if pi.campaign is not None else [], issue=issue,
                 service_end=pi.period_end) if pi.currency != le.currency else None)
    return CheckInput(currency=pi.currency, lines=line_drafts(pi), seller_country=le.country,
                      seller_currency=le.currency, seller_vat_id=le.vat_id, buyer_country=adv.country,
                      buyer_vat_id=adv.vat_id, fx=fx, fx_day=rate_day(rule, issue=issue, service_end=pi.period_end),
                      fx_rule=rule, fx_max_age_days=le.fx_max_age_days or MAX_AGE_DAYS,
                      seller_address=postal_address(le), buyer_address=postal_address(adv),
                      po_number=po_number_of(pi, adv), po_required=bool(adv.po_required))


def po_number_of(pi: PreInvoice, adv: Advertiser) -> str | None:
    """The purchase-order number a pre-invoice is billed under: its header override (``preinvoices
    override --po-number``), else its campaign's, else the advertiser's."""
    campaign = pi.campaign
    return (str((pi.overrides or {}).get("po_number") or "") or (campaign.po_number if campaign is not None else None)
            or adv.po_number or None)


def agreed_rate_of(campaign: Campaign | None, currency: str, le: LegalEntity, *, issue: date) -> LockedRate | None:
    """The campaign's fixed agreed rate (scenario ``fx_rate``: units of the entity's currency per 1
    ``currency``), dated ``fx_rate_date`` or else the issue date; None when it has none."""
    if campaign is None or campaign.fx_rate is None:
        return None
    return agreed_rate(currency, le.currency, campaign.fx_rate, day=campaign.fx_rate_date or issue,
                       campaign=campaign.name)


def fx_for(rates: Sequence[Rate], currency: str, le: LegalEntity, campaigns: Sequence[Campaign], *, issue: date,
           service_end: date | None) -> LockedRate | None:
    """The rate an invoice of ``campaigns`` in ``currency`` locks (:func:`billing.fx.invoice_rate`): their
    agreed rate when they have one (a run never mixes campaigns with different agreed rates), else the
    published rate by the legal entity's FX rule and maximum age."""
    agreed = agreed_rate_of(campaigns[0], currency, le, issue=issue) if campaigns else None
    return invoice_rate(rates, currency, le.currency, rule=le.fx_rule or "issue_date", issue=issue,
                        service_end=service_end, max_age_days=le.fx_max_age_days or MAX_AGE_DAYS, agreed=agreed)


def postal_address(row: LegalEntity | Advertiser) -> PostalAddress:
    """The row's structured address; rows stored before there was one (migration 0008 adds the columns
    empty) fall back to their one-line ``address``, parsed."""
    if row.street or row.postcode or row.city:
        return PostalAddress(row.street, row.postcode, row.city, row.country)
    return parse_address(row.address, row.country)


# --------------------------------------------------------------------------- invoice → document


def _opt(v: Any) -> str | None:
    return str(v).strip() or None if v not in (None, "") else None


def _party(snap: dict[str, Any], row: LegalEntity | Advertiser, *, currency: str | None = None,
           iban: str | None = None, email: str | None = None) -> Party:
    """A party from the invoice's snapshot, falling back to today's master data (``row``) for missing keys.

    Snapshots taken before structured addresses hold only the one-line ``address``; the document then
    parses it (:attr:`billing.documents.Party.postal`)."""
    addr = snap.get("address", row.address)
    lines = address_lines(addr)

    def get(key: str) -> str | None:
        return _opt(snap[key] if key in snap else getattr(row, key, None))

    directors = snap.get("managing_directors", getattr(row, "managing_directors", None))
    if isinstance(directors, str):
        directors = directors.splitlines()
    return Party(
        id=str(snap.get("id") or row.id),
        name=str(snap.get("name") or row.name),
        address=lines,
        country=str(snap.get("country") or row.country).upper(),
        vat_id=snap.get("vat_id", row.vat_id) or None,
        email=snap.get("email", email) or None,
        iban=snap.get("iban", iban) or None,
        currency=snap.get("currency", currency) or None,
        street=get("street"), postcode=get("postcode"), city=get("city"),
        customer_number=get("customer_number"),
        register_court=get("register_court"), register_number=get("register_number"),
        managing_directors=tuple(str(n).strip() for n in (directors or ()) if str(n).strip()),
        bank_name=get("bank_name"), bic=get("bic"),
    )


def _dt(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    if isinstance(v, str) and v:
        d = datetime.fromisoformat(v.replace("Z", "+00:00"))
        return d if d.tzinfo else d.replace(tzinfo=UTC)
    return None


def _day(v: Any) -> date | None:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, str) and v:
        return date.fromisoformat(v[:10])
    return None


def _dec(v: Any) -> Decimal | None:
    if v is None or v == "":
        return None
    try:
        return Decimal(str(v))
    except InvalidOperation:
        return None


def _fx(inv: Invoice) -> LockedRate | None:
    """The locked rate as stored on the invoice (:func:`billing.fx.locked_rate`, the one reader)."""
    return locked_rate(inv.fx)


def _line_figures(li: InvoiceLine, currency: str) -> dict[str, Any]:
    """Quantity, unit and price base as every document shows them (:func:`document_quantity`)."""
    quantity, unit, base = document_quantity(li.quantity, li.unit, li.unit_price, li.amount, currency,
                                             computation=li.computation)
    return {"quantity": quantity, "unit": unit, "price_base": base}


def preload_invoices(s: Session, invoice_ids: Sequence[int]) -> list[Invoice]:
    """Load the invoices ``invoice_ids`` with their lines, legal entities, advertisers and the invoices
    they correct into ``s`` in one query each (per 500 ids), so that :func:`document_for_invoice` on
    each of them issues no query of its own. Keep the returned list while using the session: its
    identity map holds the rows only as long as something refers to them."""
    ids = list(dict.fromkeys(invoice_ids))
    rows: list[Invoice] = []
    for i in range(0, len(ids), 500):
        rows += s.execute(select(Invoice).where(Invoice.id.in_(ids[i:i + 500])).options(
            selectinload(Invoice.lines), selectinload(Invoice.legal_entity),
            selectinload(Invoice.advertiser))).scalars().all()
    refs = {r.references_invoice_id for r in rows if r.references_invoice_id} - set(ids)
    if refs:
        rows += s.execute(select(Invoice).where(Invoice.id.in_(refs))).scalars().all()
    return rows


def document_for_invoice(s: Session, invoice_id: int) -> InvoiceDocument:
    """The printable document of invoice ``invoice_id`` as it was finalized (the parties snapshot,
    approvals and the locked FX rate stored on the row; today's master data only fills gaps)."""
    inv = s.get(Invoice, invoice_id)
    if inv is None:
        raise NotFound(f"invoice {invoice_id} not found")
    le: LegalEntity = inv.legal_entity
    adv: Advertiser = inv.advertiser
    parties = inv.parties or {}
    seller = _party(parties.get("seller") or {}, le, currency=le.currency, iban=le.iban)
    buyer_snap = parties.get("buyer") or {}
    buyer = _party(buyer_snap, adv, currency=adv.currency, email=adv.email)
    locale = doc_locale(str(buyer_snap.get("locale") or adv.locale or "en"))
    lines = tuple(
        DocumentLine(
            position=i,
            description=li.description,
            **_line_figures(li, inv.currency),
            unit_price=li.unit_price,
            amount=li.amount,
            campaign=li.campaign,
            item_id=li.item_id,
            period_start=li.period_start,
            period_end=li.period_end,
            vat_category=inv.vat_category,
            vat_rate=inv.vat_rate,
        )
        for i, li in enumerate(sorted(inv.lines, key=lambda x: (x.position, x.id)), start=1)
    )
    approvals = tuple(
        Approval(
            actor=str(a.get("actor") or ""),
            name=str(a.get("name") or a.get("actor") or ""),
            at=_dt(a.get("at")),
            decision=str(a.get("decision") or "approve"),
            signature_fingerprint=str(a.get("signature_fingerprint") or a.get("fingerprint") or ""),
        )
        for a in (inv.approvals or [])
        if isinstance(a, dict)
    )
    ref_number = ref_date = None
    if inv.references_invoice_id:
        ref = s.get(Invoice, inv.references_invoice_id)
        if ref is not None:
            ref_number, ref_date = ref.number, ref.issue_date
    return InvoiceDocument(
        number=inv.number, kind=inv.kind, issue_date=inv.issue_date, due_date=inv.due_date, currency=inv.currency,
        seller=seller, buyer=buyer, lines=lines, net=inv.net, vat=inv.vat, gross=inv.gross, vat_rate=inv.vat_rate,
        vat_category=inv.vat_category, vat_note=inv.vat_note, service_start=inv.service_start,
        service_end=inv.service_end, fx=_fx(inv), approvals=approvals, locale=locale,
        references_number=ref_number, references_issue_date=ref_date, reason=inv.reason, legal_entity_id=le.id,
        notes=tuple(str(n) for n in (parties.get("notes") or ())),
        recipient=str(buyer_snap["recipient"]) if buyer_snap.get("recipient") else None,
        po_number=_opt(buyer_snap.get("po_number")),
    )
