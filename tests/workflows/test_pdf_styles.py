"""Styles shared from one document to the next (bot.documents.pdf_styles) change nothing in the PDFs."""

from __future__ import annotations

import dataclasses
import hashlib

from billing.documents import sample_document
from billing.documents.facturx import facturx_xml
from bot.documents.pdf import Renderer
from storage.mapping import document_for_invoice


def _documents(db, world):  # type: ignore[no-untyped-def]
    with db.read() as s:
        stored = [document_for_invoice(s, i) for i in (world.domestic, world.reverse, world.foreign, world.credit)]
    en = sample_document("en")
    long = dataclasses.replace(en, number="SAMPLE-2", lines=en.lines * 9)  # more lines: a second chunk row
    return [sample_document("de"), *stored, en, long]


def _digests(renderer: Renderer, docs) -> list[str]:  # type: ignore[no-untyped-def]
    return [hashlib.sha256(renderer.pdf(d, facturx_xml(d, check_xsd=False))).hexdigest() for d in docs]


def test_shared_styles_render_byte_identical_pdfs_in_any_order(db, key, world) -> None:
    docs = _documents(db, world)
    alone = [_digests(Renderer(share_styles=False), [d])[0] for d in docs]  # each in a fresh renderer
    shared = Renderer()
    assert _digests(shared, docs) == alone
    assert shared.styles is not None and shared.styles.hits > shared.styles.misses  # mostly reused
    backwards = Renderer()
    assert _digests(backwards, docs[::-1]) == alone[::-1]
    assert _digests(Renderer(share_styles=False), docs) == alone  # WeasyPrint's own per-document sharing


def test_documents_with_their_own_stylesheet_are_styled_alone(db, key, world) -> None:
    """An element matched by a rule that is not one of the renderer's stylesheets (an inline
    ``<style>``) and its descendants are computed for that document only."""
    from billing.documents.view import render_html

    r = Renderer()
    doc = sample_document("de")
    html = render_html(doc).replace("</head>", "<style>h1 { color: red }</style></head>", 1)
    before = len(r.styles.styles) if r.styles else 0
    r._html_cls(html).render(font_config=r.font_config, stylesheets=[r.css]).write_pdf()
    r._html_cls(html).render(font_config=r.font_config, stylesheets=[r.css]).write_pdf()
    plain = Renderer(share_styles=False)
    a = r._html_cls(html).render(font_config=r.font_config, stylesheets=[r.css]).write_pdf()
    b = plain._html_cls(html).render(font_config=plain.font_config, stylesheets=[plain.css]).write_pdf()
    assert a == b
    assert r.styles is not None and len(r.styles.styles) > before
