"""The demo, billed and rendered: every line of every invoice recomputes as an EN 16931 receiver
recomputes it (BT-131 = BT-129 × BT-146 / BT-149), in the Factur-X XML and on the PDF."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import facturx
import pdfplumber
from lxml import etree
from sqlalchemy import select

from bot.documents import pdf
from bot.workflows.billing_run import run_billing
from bot.workflows.documents import render_invoice_pdf
from bot.workflows.preinvoices import create_preinvoices
from storage.db import Database
from storage.demo import build_demo
from storage.loader import load_scenario
from storage.models import Invoice

RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
NS = {"ram": RAM}
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
TODAY = date(2026, 11, 2)
#: 16 branches, seed 5: German, Austrian, Swiss and Polish invoices, CPM display on five branches
SIZE, SEED = 16, 5


@dataclass(frozen=True)
class Billed:
    """One rendered invoice of the demo."""

    number: str
    currency: str
    locale: str
    buyer_country: str
    lines: int
    pdf: bytes


def bill_demo(db: Database, key: Any, out_dir: Path) -> dict[str, Billed]:
    """Load the demo (delivery inline), bill October and render every invoice: number → :class:`Billed`."""
    load_scenario(db, build_demo(size=SIZE, seed=SEED))
    create_preinvoices(db, period="2026-10", actor="t", key=key, now=NOW)
    run_billing(db, period="2026-10", actor="cli:op", key=key, today=TODAY)
    with db.read() as s:
        ids = list(s.scalars(select(Invoice.id).order_by(Invoice.id)))
    out = {}
    for invoice_id in ids:
        path = render_invoice_pdf(db, invoice_id, renderer=pdf, out_dir=out_dir, key=key)
        with db.read() as s:
            inv = s.get(Invoice, invoice_id)
            assert inv is not None
            buyer = inv.parties["buyer"]
            out[inv.number] = Billed(inv.number, inv.currency, str(buyer["locale"]), str(buyer["country"]),
                                     len(inv.lines), path.read_bytes())
    return out


def pdf_text(data: bytes) -> str:
    with pdfplumber.open(io.BytesIO(data)) as p:
        return "\n".join(page.extract_text() or "" for page in p.pages)


def xml_lines(data: bytes) -> list[tuple[Decimal, Decimal, Decimal, Decimal]]:
    """(BT-129 quantity, BT-146 net price, BT-149 price base, BT-131 amount) of every XML line."""
    _name, xml = facturx.get_xml_from_pdf(data, check_xsd=True)
    out = []
    for li in etree.fromstring(xml).iterfind(".//ram:IncludedSupplyChainTradeLineItem", NS):
        price = li.find(".//ram:NetPriceProductTradePrice", NS)
        assert price is not None
        out.append((Decimal(li.findtext(".//ram:BilledQuantity", namespaces=NS) or ""),
                    Decimal(price.findtext("ram:ChargeAmount", namespaces=NS) or ""),
                    Decimal(price.findtext("ram:BasisQuantity", namespaces=NS) or "1"),
                    Decimal(li.findtext(".//ram:LineTotalAmount", namespaces=NS) or "")))
    return out


_CURRENCY_MARKS = re.compile(r"(?:€|\$|CHF|PLN|EUR|zł)")
_THOUSANDS_SPACE = re.compile(r"(?<=\d)[\xa0\u202f](?=\d{3})")  # pl groups with a no-break space
_NUM = r"-?\d[\d.,]*"
_PDF_LINE = re.compile(rf"^(?P<pos>\d+)\. .* (?P<qty>{_NUM}) (?P<unit>[^\d/]+?) (?P<price>{_NUM})"
                       rf"(?: / (?P<base>{_NUM}))? (?P<amount>{_NUM})$")


def pdf_lines(text: str, locale: str) -> list[tuple[Decimal, Decimal, Decimal, Decimal]]:
    """(quantity, unit price, price base, amount) of every invoice line printed in the PDF text, read
    the way the recipient's locale writes numbers (Babel parses them back)."""
    from babel.numbers import parse_decimal

    def num(s: str) -> Decimal:
        return Decimal(parse_decimal(s, locale=locale, strict=False))

    out = []
    for raw in text.splitlines():
        line = re.sub(r"\s+", " ", _CURRENCY_MARKS.sub("", _THOUSANDS_SPACE.sub("", raw))).strip()
        m = _PDF_LINE.match(line)
        if m:
            out.append((num(m["qty"]), num(m["price"]), num(m["base"]) if m["base"] else Decimal(1),
                        num(m["amount"])))
    return out


def test_every_line_of_every_demo_invoice_recomputes_in_the_xml_and_on_the_pdf(db, key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 15 done-when: BT-131 = BT-129 × BT-146 / BT-149 for every line of every invoice of the
    demo, in its Factur-X XML (which passes the XSD) and on its PDF, within 0.01."""
    billed = bill_demo(db, key, tmp_path)
    assert len(billed) >= 10
    cpm = 0
    for number, inv in billed.items():
        xml = xml_lines(inv.pdf)
        printed = pdf_lines(pdf_text(inv.pdf), inv.locale)
        assert len(xml) == inv.lines and len(printed) == inv.lines, (number, printed)
        for (qty, price, base, amount), (p_qty, p_price, p_base, p_amount) in zip(xml, printed, strict=True):
            assert abs(qty * price / base - amount) <= Decimal("0.01"), (number, qty, price, base, amount)
            assert abs(p_qty * p_price / p_base - p_amount) <= Decimal("0.01"), (number, p_qty, p_price, p_base)
            assert (p_qty, p_price, p_base, p_amount) == (qty, price, base, amount), number
            cpm += base == 1000
    assert cpm >= 3 and {inv.currency for inv in billed.values()} >= {"EUR", "PLN", "CHF"}
