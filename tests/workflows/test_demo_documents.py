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
from storage.models import Advertiser, Invoice

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
_QTY_UNIT = re.compile(r"^(?P<qty>-?\d[\d.,  ]*?) (?P<unit>[^\d]+)$")
COLUMN_GAP = 3.5  # pt: words further apart are in different columns (a space is 2.4 pt at 8.5 pt, cells pad 6 pt)


def _cells(words: list[dict[str, Any]]) -> list[str]:
    """The words of one printed line, joined into the table cells they belong to (by the gaps between them)."""
    cells: list[list[dict[str, Any]]] = []
    for w in sorted(words, key=lambda w: w["x0"]):
        if cells and w["x0"] - cells[-1][-1]["x1"] < COLUMN_GAP:
            cells[-1].append(w)
        else:
            cells.append([w])
    return [" ".join(w["text"] for w in cell) for cell in cells]


def pdf_lines(data: bytes, locale: str) -> list[tuple[Decimal, Decimal, Decimal, Decimal]]:
    """(quantity, unit price, price base, amount) of every invoice line printed in the PDF, read cell by
    cell (Polish groups thousands with a space, so "/ 1 000" and "14 452,39" only part by position) and
    parsed the way the recipient's locale writes numbers (Babel)."""
    from babel.numbers import parse_decimal

    def num(text: str) -> Decimal:
        return Decimal(parse_decimal(re.sub(r"\s", "", _CURRENCY_MARKS.sub("", text)), locale=locale, strict=False))

    out = []
    with pdfplumber.open(io.BytesIO(data)) as p:
        for page in p.pages:
            rows: dict[int, list[dict[str, Any]]] = {}
            for w in page.extract_words(x_tolerance=1.5):
                rows.setdefault(round(w["top"]), []).append(w)
            for top in sorted(rows):
                cells = _cells(rows[top])
                if len(cells) != 4 or not re.match(r"^\d+\. ", cells[0]):
                    continue
                m = _QTY_UNIT.match(cells[1])
                assert m, cells
                price, _, base = cells[2].partition(" / ")
                out.append((num(m["qty"]), num(price), num(base) if base else Decimal(1), num(cells[3])))
    return out


def test_every_line_of_every_demo_invoice_recomputes_in_the_xml_and_on_the_pdf(db, key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 15 done-when: BT-131 = BT-129 × BT-146 / BT-149 for every line of every invoice of the
    demo, in its Factur-X XML (which passes the XSD) and on its PDF, within 0.01."""
    billed = bill_demo(db, key, tmp_path)
    assert len(billed) >= 10
    cpm = 0
    for number, inv in billed.items():
        xml = xml_lines(inv.pdf)
        printed = pdf_lines(inv.pdf, inv.locale)
        assert len(xml) == inv.lines and len(printed) == inv.lines, (number, printed)
        for (qty, price, base, amount), (p_qty, p_price, p_base, p_amount) in zip(xml, printed, strict=True):
            assert abs(qty * price / base - amount) <= Decimal("0.01"), (number, qty, price, base, amount)
            assert abs(p_qty * p_price / p_base - p_amount) <= Decimal("0.01"), (number, p_qty, p_price, p_base)
            assert (p_qty, p_price, p_base, p_amount) == (qty, price, base, amount), number
            cpm += base == 1000
    assert cpm >= 3 and {inv.currency for inv in billed.values()} >= {"EUR", "PLN", "CHF"}


def test_demo_invoices_show_the_buyers_full_address_the_sellers_register_and_bic(db, key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 15 done-when: the demo's German, Austrian and Polish invoices show postcode, city and (cross
    border) country of the buyer, the seller's register details and BIC; the XML carries the address."""
    from storage.demo import POSTCODES

    billed = bill_demo(db, key, tmp_path)
    with db.read() as s:
        advertisers = {a.id: a for a in s.scalars(select(Advertiser))}
        by_number = {inv.number: advertisers[inv.advertiser_id] for inv in s.scalars(select(Invoice))}
    countries = {"DE": "Deutschland", "AT": "Österreich", "PL": "Polska", "CH": "Schweiz"}
    seen = set()
    for number, inv in billed.items():
        adv = by_number[number]
        text = pdf_text(inv.pdf)
        assert adv.postcode == POSTCODES[adv.city or ""]
        assert f"{adv.postcode} {adv.city}" in text, number
        assert adv.street and adv.street in text
        if adv.country == "DE":  # a domestic invoice names the country once, in the seller's line
            assert text.count("Deutschland") == 1
        else:
            assert countries[adv.country] in text, (number, adv.country)
        assert "Amtsgericht Hamburg, HRB 123456" in text and "Nora Nordmann, Jonas Weber" in text
        assert "BIC COBADEFFXXX" in text and "IBAN DE89370400440532013000" in text and "Commerzbank" in text
        assert adv.customer_number and adv.customer_number in text and adv.id not in text
        _name, xml = facturx.get_xml_from_pdf(inv.pdf, check_xsd=True)
        buyer = etree.fromstring(xml).find(".//ram:BuyerTradeParty/ram:PostalTradeAddress", NS)
        assert buyer is not None
        assert (buyer.findtext("ram:PostcodeCode", namespaces=NS), buyer.findtext("ram:LineOne", namespaces=NS),
                buyer.findtext("ram:CityName", namespaces=NS), buyer.findtext("ram:CountryID", namespaces=NS)) == (
                    adv.postcode, adv.street, adv.city, adv.country)
        seen.add(adv.country)
    assert seen >= {"DE", "AT", "PL"}


def test_demo_invoices_speak_the_advertisers_language_units_and_numbers_included(db, key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Issue 15 item 6: units and numbers through Babel in the advertiser's locale (German "Klicks",
    "Impressionen", "1.234,56 €"; Polish "kliknięcia", "14 452,39 zł"); the PDF's language is the locale."""
    from pypdf import PdfReader

    from billing.documents.view import unit_text

    assert unit_text("1,000 impressions", "de") == "1.000 Impressionen"
    assert unit_text("1,000 impressions", "en") == "1,000 impressions"
    assert unit_text("clicks", "pl") == "kliknięcia" and unit_text("clicks", "de") == "Klicks"
    billed = bill_demo(db, key, tmp_path)
    words = {"de": ("Klicks", "Leads", "Rechnung", "Nettobetrag"),
             "pl": ("kliknięcia", "leady", "Faktura", "Kwota netto")}
    english = ("clicks", "impressions", "Net amount", "Invoice ")
    seen = set()
    for number, inv in billed.items():
        text = pdf_text(inv.pdf)
        assert all(w in text for w in words[inv.locale]), (number, inv.locale)
        assert not any(w in text for w in english), number
        lang = PdfReader(io.BytesIO(inv.pdf)).trailer["/Root"].get("/Lang")
        assert lang == inv.locale, (number, lang)
        amounts = re.findall(r"(?<![\d.,])(\d[\d.,]*\d) (?:€|CHF)", text)
        if inv.locale == "de":
            assert amounts and all(re.fullmatch(r"\d{1,3}(?:\.\d{3})*,\d{2}", a) for a in amounts), amounts
        seen.add(inv.locale)
        if inv.locale == "pl":
            assert "wyświetlenia" in text and " zł / 1 000 " in text.replace("\xa0", " ")
    assert seen == {"de", "pl"}
