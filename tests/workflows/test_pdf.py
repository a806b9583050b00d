"""The PDF: PDF/A-3b declared in its XMP, factur-x.xml attached as the Alternative representation,
the totals printed equal to the database (read back with pypdf / pdfplumber), rendering recorded on
the invoice after commit, retried, and never touching the invoice's legal content or number."""

from __future__ import annotations

import hashlib
import io
import re
from decimal import Decimal
from pathlib import Path

import facturx
import pdfplumber
import pytest
from babel.numbers import format_decimal
from lxml import etree
from pypdf import PdfReader
from sqlalchemy import select

import billing.documents.view as docs
from billing.documents import doc_locale, sample_document
from bot.documents import pdf
from bot.workflows import documents as wf
from bot.workflows.effects import dispatch, recorded
from storage.mapping import document_for_invoice
from storage.models import AuditLog, Invoice

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PDFAID = "http://www.aiim.org/pdfa/ns/id/"
FX = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"


def _xmp(reader: PdfReader) -> etree._Element:
    meta = reader.trailer["/Root"]["/Metadata"].get_object().get_data()
    return etree.fromstring(meta[meta.index(b"<x:xmpmeta"):meta.rindex(b"</x:xmpmeta>") + len(b"</x:xmpmeta>")])


def _prop(root: etree._Element, ns: str, name: str) -> list[str]:
    """An XMP property written either as an attribute or as an element of rdf:Description."""
    values = [d.get(f"{{{ns}}}{name}") for d in root.iter(f"{{{RDF}}}Description") if d.get(f"{{{ns}}}{name}")]
    values += [e.text for e in root.iter(f"{{{ns}}}{name}")]
    return values


def _text(pdf: bytes) -> str:
    with pdfplumber.open(io.BytesIO(pdf)) as p:
        return "\n".join(page.extract_text() or "" for page in p.pages).replace("\xa0", " ")


def _amount(value: Decimal, locale: str) -> str:
    return str(format_decimal(value, format="#,##0.00", locale=locale))


def _render(db, out_dir: Path, invoice_id: int, key=None) -> tuple[bytes, Invoice]:  # type: ignore[no-untyped-def]
    path = wf.render_invoice_pdf(db, invoice_id, renderer=pdf, out_dir=out_dir, key=key)
    with db.read() as s:
        inv = s.get(Invoice, invoice_id)
    return path.read_bytes(), inv


@pytest.mark.parametrize("which", ["domestic", "foreign"])
def test_pdf_declares_pdfa3b_and_carries_the_xml_as_alternative(db, key, world, out_dir, which) -> None:
    pdf, inv = _render(db, out_dir, getattr(world, which), key)
    reader = PdfReader(io.BytesIO(pdf))
    xmp = _xmp(reader)
    assert _prop(xmp, PDFAID, "part") == ["3"]
    assert _prop(xmp, PDFAID, "conformance") == ["B"]
    assert _prop(xmp, FX, "ConformanceLevel") == ["EN 16931"]
    assert _prop(xmp, FX, "DocumentFileName") == ["factur-x.xml"]
    assert xmp.nsmap.get("fx") == FX or any(e.prefix == "fx" for e in xmp.iter(f"{{{FX}}}DocumentType"))
    root = reader.trailer["/Root"]
    af = [a.get_object() for a in root["/AF"]]
    assert len(af) == 1
    spec = af[0]
    assert spec["/F"] == "factur-x.xml" and spec["/UF"] == "factur-x.xml"
    assert spec["/AFRelationship"] == "/Alternative"
    assert spec["/EF"]["/F"].get_object()["/Subtype"] in ("/text#2fxml", "/text/xml")
    attached = {a.name: a.content for a in reader.attachment_list}
    assert set(attached) == {"factur-x.xml"}
    assert "/OutputIntents" in root
    # the attachment is the XML facturx reads back and validates
    name, xml = facturx.get_facturx_xml_from_pdf(pdf, check_xsd=True)
    assert name == "factur-x.xml" and xml == attached["factur-x.xml"]
    assert etree.fromstring(xml).xpath("//*[local-name()='GrandTotalAmount']")[0].text == f"{inv.gross:.2f}"


@pytest.mark.parametrize(("which", "locale", "symbol"), [("domestic", "de", "€"), ("reverse", "en", "€"),
                                                         ("foreign", "en", "$"), ("credit", "de", "€")])
def test_totals_in_the_pdf_text_equal_the_database(db, key, world, out_dir, which, locale, symbol) -> None:
    pdf, inv = _render(db, out_dir, getattr(world, which), key)
    text = _text(pdf)
    for value in (inv.net, inv.vat, inv.gross):
        assert _amount(value, locale) in text, (value, text)
    money_in_text = {Decimal(m.replace(",", "").replace(".", "", m.count(".") - 1) if locale == "en"
                             else m.replace(".", "").replace(",", "."))
                     for m in re.findall(r"-?[\d.,]+\d(?= ?[€$])|(?<=[€$])-?[\d.,]+\d", text)}
    assert inv.gross in money_in_text and inv.net in money_in_text
    assert inv.number in text
    assert symbol in text


def test_pdf_shows_parties_and_notes_but_not_the_internal_approvals(db, key, world, out_dir) -> None:
    """Issue 15: approval records are internal; they stay in the evidence pack (decisions.json), not on
    the customer's document."""
    text = _text(_render(db, out_dir, world.reverse, key)[0])
    assert "Garage du Rhône SARL" in text and "Northwind Media GmbH" in text
    assert "FR40303265045" in text and "DE811907980" in text
    assert "Reverse charge" in text
    assert "Arne Approver" not in text and "Released by" not in text
    with db.read() as s:
        fp = s.get(Invoice, world.reverse).approvals[0]["signature_fingerprint"]
    assert fp not in text
    assert "Feb 1, 2026 – Feb 28, 2026" in text  # service period, English dates
    assert "485,000" in text and "€4.20 / 1,000" in text  # quantity, unit price per mille

    foreign = _text(_render(db, out_dir, world.foreign, key)[0])
    assert "1 EUR = 1.0812 USD (ECB, Feb 27, 2026)" in foreign
    assert "Export of services" in foreign and "In EUR: net €5,000.00" in foreign

    german = _text(_render(db, out_dir, world.domestic, key)[0])
    assert "Rechnung INV-2026-000001" in german and "Zahlbar ohne Abzug bis 15.03.2026" in german
    assert "USt. 19 % auf 2.900,00 €" in german and "01.02.2026 – 28.02.2026" in german

    credit = _text(_render(db, out_dir, world.credit, key)[0])
    assert "Rechnungskorrektur CN-2026-000001" in credit
    assert "Korrektur zur Rechnung INV-2026-000001 vom 01.03.2026" in credit
    assert "Test drives double counted" in credit


def test_rendering_is_recorded_audited_and_announced(db, key, world, out_dir) -> None:
    with recorded() as events:
        path = wf.render_invoice_pdf(db, world.domestic, renderer=pdf, out_dir=out_dir, key=key)
    seen = [payload for name, payload in events if name == "invoice.rendered"]
    with db.read() as s:
        inv = s.get(Invoice, world.domestic)
        assert inv.pdf_state == "done" and inv.pdf_attempts == 1 and inv.pdf_error is None
        assert inv.pdf_path == str(path) and path == out_dir / "northwind" / "INV-2026-000001.pdf"
        assert inv.pdf_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        rec = s.execute(select(AuditLog).where(AuditLog.action == "invoice.pdf_rendered")).scalar_one()
        assert rec.subject_id == str(inv.id) and inv.pdf_sha256 in rec.payload and rec.signature
    assert seen == [{"invoice_id": world.domestic, "pdf_path": str(path)}]
    # idempotent: a recorded, intact PDF is not rendered again
    assert wf.render_invoice_pdf(db, world.domestic, renderer=pdf, out_dir=out_dir, key=key) == path
    with db.read() as s:
        assert s.get(Invoice, world.domestic).pdf_attempts == 1
    # the same content renders to the same bytes (dates come from the invoice, not the clock)
    again = wf.render_invoice_pdf(db, world.domestic, renderer=pdf, out_dir=out_dir, key=key, force=True)
    with db.read() as s:
        assert s.get(Invoice, world.domestic).pdf_sha256 == hashlib.sha256(again.read_bytes()).hexdigest()
        assert s.get(Invoice, world.domestic).pdf_attempts == 2


def test_a_failing_render_is_retried_recorded_and_never_touches_the_invoice(db, key, world, out_dir,
                                                                            monkeypatch) -> None:
    calls = {"n": 0}

    def broken(doc, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        raise RuntimeError("fontconfig exploded")

    monkeypatch.setattr(pdf, "render_pdf", broken)
    with db.read() as s:
        before = s.get(Invoice, world.foreign)
        number, gross = before.number, before.gross
    with pytest.raises(wf.RenderFailed, match="after 3 attempts"):
        wf.render_invoice_pdf(db, world.foreign, renderer=pdf, out_dir=out_dir, key=key, retry_delay=0)
    assert calls["n"] == 3
    with db.read() as s:
        inv = s.get(Invoice, world.foreign)
        assert (inv.number, inv.gross) == (number, gross)
        assert inv.pdf_state == "failed" and inv.pdf_attempts == 3 and "fontconfig exploded" in inv.pdf_error
        fails = s.execute(select(AuditLog).where(AuditLog.action == "invoice.pdf_failed")).scalars().all()
        assert len(fails) == 3
    # once the cause is gone the next attempt succeeds
    monkeypatch.undo()
    wf.render_invoice_pdf(db, world.foreign, renderer=pdf, out_dir=out_dir, key=key)
    with db.read() as s:
        inv = s.get(Invoice, world.foreign)
        assert inv.pdf_state == "done" and inv.pdf_attempts == 4 and inv.pdf_error is None


def test_finalized_invoices_are_rendered_after_commit_by_the_runtime_reaction(db, key, world, out_dir,
                                                                              monkeypatch) -> None:
    from bot import jobs, runtime
    from storage.settings import get_settings

    monkeypatch.setenv("BILLBOT_JOBS", "inline")
    try:
        runtime.wire("worker")  # the render_pdf task runs here (inline)
        dispatch("invoice.finalized", invoice_id=world.reverse, billing_run_id=1)
        queued: list[tuple] = []
        monkeypatch.setattr(jobs, "submit", lambda name, **kw: queued.append((name, kw)))
        dispatch("invoice.finalized", invoice_id=world.foreign, billing_run_id=1)
        runtime.wire("cli")  # a CLI in embedded mode has no worker that outlives it: the sweep queues its PDFs
        dispatch("invoice.finalized", invoice_id=world.credit, billing_run_id=1)
    finally:
        runtime.reset()
    assert (get_settings().var_dir / "documents" / "northwind" / "INV-2026-000002.pdf").is_file()
    assert queued == [("render_pdf", {"invoice_id": world.foreign})]


def test_render_many_renders_in_parallel_processes_and_records_each(db, key, world, out_dir) -> None:
    ids = [world.domestic, world.reverse, world.foreign, world.credit]
    result = wf.render_many(db, ids, renderer=pdf, processes=2, out_dir=out_dir, key=key)
    assert result["failed"] == {}
    assert set(result["rendered"]) == set(ids)
    assert result["per_core_ms"] > 0
    with db.read() as s:
        for iid in ids:
            inv = s.get(Invoice, iid)
            assert inv.pdf_state == "done"
            assert hashlib.sha256(Path(inv.pdf_path).read_bytes()).hexdigest() == inv.pdf_sha256
    # the worker produced the same bytes as this process would
    with db.read() as s:
        doc = document_for_invoice(s, world.reverse)
        inv = s.get(Invoice, world.reverse)
    assert pdf.render_pdf(doc)[0] == Path(inv.pdf_path).read_bytes()


def test_render_many_over_a_long_lived_pool_records_every_round(db, key, world, out_dir) -> None:
    """A service keeps its rendering processes (started and warmed once) between runs."""
    ids = [world.domestic, world.reverse, world.foreign, world.credit]
    pool = pdf.start_render_pool(2)
    try:
        first = wf.render_many(db, ids, renderer=pdf, processes=2, out_dir=out_dir / "a", key=key, pool=pool)
        again = wf.render_many(db, ids, renderer=pdf, processes=2, out_dir=out_dir / "b", key=key, pool=pool)
    finally:
        pool.shutdown()
    assert first["failed"] == again["failed"] == {} and first["start_method"] == "given pool"
    assert {Path(p).read_bytes() for p in first["rendered"].values()} == \
        {Path(p).read_bytes() for p in again["rendered"].values()}
    with db.read() as s:
        assert [s.get(Invoice, i).pdf_attempts for i in ids] == [2, 2, 2, 2]
        assert all(s.get(Invoice, i).pdf_path.startswith(str(out_dir / "b")) for i in ids)
    with db.read() as s:
        rendered = s.scalars(select(AuditLog).where(AuditLog.action == "invoice.pdf_rendered")).all()
    assert len(rendered) == 8


def test_view_formats_money_and_dates_per_locale() -> None:
    de = docs.view(sample_document("de"))
    en = docs.view(sample_document("en"))
    assert de["gross"].replace("\xa0", " ") == "1.190,00 €" and en["gross"] == "€1,190.00"
    assert de["meta"][1] == ("Rechnungsdatum", "01.03.2026") and en["meta"][1] == ("Issue date", "Mar 1, 2026")
    assert docs.fmt_price(Decimal("0.0042"), "EUR", "en") == "€0.0042"
    assert docs.fmt_qty(Decimal("7800000"), "de") == "7.800.000"
    assert doc_locale("de_AT") == "de" and doc_locale("fr") == "en"


def test_an_inconsistent_invoice_fails_once_without_retrying(db, key, world, out_dir, monkeypatch) -> None:
    # what check_document would say about a row no finalization writes (lines not adding up to the net)
    monkeypatch.setattr(wf, "check_document", lambda doc: ["lines add up to 2037.00, the net is 1.00"])
    with pytest.raises(wf.RenderFailed, match="lines add up to 2037.00"):
        wf.render_invoice_pdf(db, world.reverse, renderer=pdf, out_dir=out_dir, key=key)
    with db.read() as s:
        inv = s.get(Invoice, world.reverse)
        assert inv.pdf_state == "failed" and inv.pdf_attempts == 1 and "the net is 1.00" in inv.pdf_error


def test_the_girocode_is_printed_as_a_sharp_bitmap_of_exactly_the_epc_payload(db, key, world, out_dir) -> None:
    """One pixel per QR module, scaled without interpolation: the printed modules are the payload's."""
    import segno

    from billing.payments import creditor_reference, epc_qr_payload

    pdf, inv = _render(db, out_dir, world.domestic, key)
    images = [img for page in PdfReader(io.BytesIO(pdf)).pages for img in page.images]
    assert len(images) == 1
    obj = images[0].indirect_reference.get_object()
    assert obj["/Interpolate"].value is False  # present and false: viewers and printers keep the modules square
    with db.read() as s:
        doc = document_for_invoice(s, inv.id)
    code = segno.make(epc_qr_payload(name=doc.seller.name, iban=doc.seller.iban or "", amount=doc.gross,
                                     reference=creditor_reference(doc.number)), error="m", micro=False)
    matrix = [[bool(v) for v in row] for row in code.matrix_iter(scale=1, border=2)]
    picture = images[0].image.convert("L")
    assert picture.size == (len(matrix), len(matrix))
    assert [[picture.getpixel((x, y)) < 128 for x in range(picture.width)] for y in range(picture.height)] == matrix
