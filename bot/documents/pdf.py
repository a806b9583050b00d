"""The WeasyPrint renderer: an :class:`~billing.documents.InvoiceDocument` → a PDF/A-3b with its
Factur-X (EN 16931) XML embedded. An adapter outside the pure core: it imports ``billing`` and
WeasyPrint, nothing of the workflows (they take this module as their ``renderer``).

- :class:`Renderer` turns the HTML of :func:`billing.documents.view.render_html` into a PDF/A-3b and
  embeds ``factur-x.xml`` (``/AFRelationship /Alternative``, Factur-X XMP extension schema) in the
  same pass. It holds the pre-parsed stylesheets and one shared ``FontConfiguration``;
  :func:`get_renderer` keeps one per process, so batch rendering pays for CSS parsing and font
  loading once.
- :func:`render_pdf` (one document, ``(pdf, xml)``), :func:`render_to_file` (what a worker process
  runs) and :func:`new_pool` / :func:`start_render_pool` (worker processes whose renderer is built
  and warmed up once) are what ``bot.workflows.documents`` calls through its ``renderer`` parameter.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import types
import zlib
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from datetime import time as clock_time
from functools import lru_cache
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement, fromstring, register_namespace, tostring

from billing.documents.facturx import FACTURX_FILENAME, facturx_xml
from billing.documents.model import InvoiceDocument, sample_document
from billing.documents.view import TEMPLATES_DIR, render_html, stylesheet_text
from bot.documents.pdf_styles import StyleTable, install
from storage.files import write_private

# A user-agent stylesheet that covers only the elements our templates use. WeasyPrint's default one
# (the whole HTML 5 rendering section) costs a third of a one-page render in selector matching.
UA_CSS = """
head, style, title, meta, script, link { display: none }
html, body, div, p, h1, h2, h3, section, header, footer { display: block }
table { display: table; border-collapse: collapse; box-sizing: border-box; text-indent: 0 }
colgroup { display: table-column-group } col { display: table-column }
thead { display: table-header-group; vertical-align: middle }
tbody { display: table-row-group; vertical-align: middle }
tr { display: table-row } td, th { display: table-cell; vertical-align: inherit }
span, b, small { display: inline } small { font-size: smaller }
"""

_BETWEEN_TAGS = re.compile(r">\s+<")
_FX_NS = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_PDFA_EXT = "http://www.aiim.org/pdfa/ns/extension/"
_PDFA_SCHEMA = "http://www.aiim.org/pdfa/ns/schema#"
_PDFA_PROP = "http://www.aiim.org/pdfa/ns/property#"
# XMP prefixes as the Factur-X specification writes them (PDF/A validators compare the declared prefix)
for _prefix, _uri in (("fx", _FX_NS), ("pdfaExtension", _PDFA_EXT), ("pdfaSchema", _PDFA_SCHEMA),
                      ("pdfaProperty", _PDFA_PROP)):
    register_namespace(_prefix, _uri)


def _facturx_xmp_descriptions() -> list[Element]:
    """The Factur-X XMP: the ``fx:`` properties and the PDF/A extension schema that declares them."""
    fx = Element(f"{{{_RDF}}}Description", {f"{{{_RDF}}}about": ""})
    for name, value in (("DocumentType", "INVOICE"), ("DocumentFileName", FACTURX_FILENAME),
                        ("Version", "1.0"), ("ConformanceLevel", "EN 16931")):
        SubElement(fx, f"{{{_FX_NS}}}{name}").text = value
    ext = Element(f"{{{_RDF}}}Description", {f"{{{_RDF}}}about": ""})
    bag = SubElement(SubElement(ext, f"{{{_PDFA_EXT}}}schemas"), f"{{{_RDF}}}Bag")
    li = SubElement(bag, f"{{{_RDF}}}li", {f"{{{_RDF}}}parseType": "Resource"})
    SubElement(li, f"{{{_PDFA_SCHEMA}}}schema").text = "Factur-X PDFA Extension Schema"
    SubElement(li, f"{{{_PDFA_SCHEMA}}}namespaceURI").text = _FX_NS
    SubElement(li, f"{{{_PDFA_SCHEMA}}}prefix").text = "fx"
    seq = SubElement(SubElement(li, f"{{{_PDFA_SCHEMA}}}property"), f"{{{_RDF}}}Seq")
    for name, desc in (
        ("DocumentFileName", "The name of the embedded XML document"),
        ("DocumentType", "The type of the hybrid document in capital letters, e.g. INVOICE or ORDER"),
        ("Version", "The actual version of the standard applying to the embedded XML document"),
        ("ConformanceLevel", "The conformance level of the embedded XML document"),
    ):
        prop = SubElement(seq, f"{{{_RDF}}}li", {f"{{{_RDF}}}parseType": "Resource"})
        SubElement(prop, f"{{{_PDFA_PROP}}}name").text = name
        SubElement(prop, f"{{{_PDFA_PROP}}}valueType").text = "Text"
        SubElement(prop, f"{{{_PDFA_PROP}}}category").text = "external"
        SubElement(prop, f"{{{_PDFA_PROP}}}description").text = desc
    return [fx, ext]


def _rdf_with_facturx(original: Any) -> Any:
    """Wrap WeasyPrint's ``generate_rdf_metadata`` so the Factur-X descriptions join its one
    ``rdf:RDF`` element (an XMP packet holds a single RDF tree)."""

    def generate(self: Any, variant: str, version: int, conformance: str) -> bytes:
        rdf = fromstring(original(variant, version, conformance))  # noqa: S314 - WeasyPrint's own XMP
        rdf.extend(_facturx_xmp_descriptions())
        return bytes(tostring(rdf, encoding="utf-8"))

    return generate


def _dedupe_af(_document: Any, pdf: Any) -> None:
    """WeasyPrint lists an attachment's file specification twice in the catalog's ``/AF`` (once from
    the EmbeddedFiles name tree, once from the object scan); PDF/A-3 wants each associated file once."""
    af = pdf.catalog.get("AF")
    if af is not None:
        seen: list[Any] = []
        for ref in af:
            if ref not in seen:
                seen.append(ref)
        af[:] = seen


class Renderer:
    """WeasyPrint with everything reusable prepared once: the parsed user-agent and invoice
    stylesheets, the shared ``FontConfiguration`` (fonts are looked up once per process), the
    compiled templates, and the computed styles of the template's elements, shared from one document
    to the next (:mod:`bot.documents.pdf_styles`). Not thread-safe; use one per process (see
    :func:`get_renderer`)."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, *, share_styles: bool = True) -> None:
        import pydyf  # lazy: WeasyPrint (Pango, fonts) loads only in a process that renders
        from weasyprint import CSS, HTML
        from weasyprint.text.fonts import FontConfiguration

        pydyf.zlib = _Zlib6()

        self.templates_dir = templates_dir
        self.font_config = FontConfiguration()
        self.ua = CSS(string=UA_CSS, font_config=self.font_config)
        self.css = CSS(string=stylesheet_text(str(templates_dir)), font_config=self.font_config,
                       base_url=str(templates_dir) + "/")
        from weasyprint.urls import URLFetcher

        install()
        styles = self.styles = StyleTable((self.ua, self.css)) if share_styles else None
        ua = self.ua
        base_url = str(templates_dir) + "/"
        fetcher = self.fetcher = URLFetcher()  # builds a urllib opener: once, not per document

        class _HTML(HTML):  # type: ignore[misc]
            """An HTML document from our own templates. They are well-formed XHTML, so expat (C)
            parses them in a fraction of the time of the HTML 5 parser; anything else falls back
            to the HTML 5 parser."""

            def __init__(self, text: str) -> None:
                import cssselect2  # lazy: comes with WeasyPrint

                text = _BETWEEN_TAGS.sub("><", text)
                self.billbot_styles = styles
                try:
                    root = fromstring(text)  # noqa: S314 - our template; data is escaped by Jinja
                except ParseError:
                    super().__init__(string=text, base_url=base_url, url_fetcher=fetcher)
                    return
                self.base_url = base_url
                self.url_fetcher = fetcher
                self.media_type = "print"
                self.wrapper_element = cssselect2.ElementWrapper.from_html_root(root, content_language=None)
                self.etree_element = self.wrapper_element.etree_element

            def _ua_stylesheets(self, forms: bool = False) -> list[Any]:
                return [ua]

        self._html_cls = _HTML

    def warm_up(self) -> None:
        """Render once so Pango loads the fonts and harfbuzz builds its caches before real work."""
        self.pdf(sample_document(), facturx_xml(sample_document()))

    def pdf(self, doc: InvoiceDocument, xml: bytes) -> bytes:
        """The PDF/A-3b of ``doc`` with ``xml`` embedded as ``factur-x.xml`` (relationship Alternative)."""
        from weasyprint import Attachment  # lazy: see __init__

        html = self._html_cls(render_html(doc, templates_dir=self.templates_dir))
        document = html.render(font_config=self.font_config, stylesheets=[self.css], pdf_variant="pdf/a-3b")
        meta = document.metadata
        meta.generate_rdf_metadata = types.MethodType(_rdf_with_facturx(meta.generate_rdf_metadata), meta)
        issued = datetime.combine(doc.issue_date, clock_time(0, 0))
        attachment = Attachment(string=xml, name=FACTURX_FILENAME, relationship="Alternative", url_fetcher=self.fetcher,
                                description=f"Factur-X EN 16931 invoice {doc.number}",
                                created=issued, modified=issued)
        return bytes(document.write_pdf(pdf_variant="pdf/a-3b", attachments=[attachment],
                                        pdf_identifier=doc.number.encode(), finisher=_dedupe_af))


class _Zlib6:
    """pydyf compresses every PDF stream with zlib level 9; level 6 gives the same size within 0.1 %
    for fonts and content streams at half the time. Installed into pydyf's namespace by the renderer."""

    def __getattr__(self, name: str) -> Any:
        return getattr(zlib, name)

    @staticmethod
    def compressobj(level: int = -1, *args: Any, **kwargs: Any) -> Any:
        return zlib.compressobj(6, *args, **kwargs)


@lru_cache(maxsize=1)
def get_renderer() -> Renderer:
    """The process's renderer (stylesheets parsed, fonts configured on first use)."""
    return Renderer()


def render_pdf(doc: InvoiceDocument, *, check_xsd: bool = True) -> tuple[bytes, bytes]:
    """``(pdf, xml)`` for ``doc``: the XML is built and XSD-checked, then embedded in the PDF/A-3b."""
    xml = facturx_xml(doc, check_xsd=check_xsd)
    return get_renderer().pdf(doc, xml), xml


# --------------------------------------------------------------------------- worker processes

#: modules a fork server imports once, so each worker it starts has them loaded already
PRELOAD = ["billing.documents", "bot.documents.pdf"]


def init_worker() -> None:
    """Pool initializer: parse the stylesheets, configure fonts and warm harfbuzz once per process,
    then move everything made so far out of the garbage collector's way (``gc.freeze``: later
    collections only walk what rendering allocates, and forked pages stay shared)."""
    import gc

    get_renderer().warm_up()
    gc.collect()
    gc.freeze()


def _ready(hold: float) -> int:
    time.sleep(hold)
    return os.getpid()


def new_pool(processes: int, *, start_method: str | None = None) -> tuple[ProcessPoolExecutor, str]:
    """A pool of ``processes`` rendering processes (each builds and warms its renderer on start) and
    the start method used. Workers are forked when this process runs a single thread (they inherit
    the imported renderer), else started from a fork server (forking a threaded process can deadlock)."""
    if start_method is None:
        single = threading.active_count() == 1
        start_method = "fork" if single and "fork" in get_all_start_methods() else "forkserver"
    ctx = get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    return ProcessPoolExecutor(max_workers=max(1, processes), mp_context=ctx, initializer=init_worker), start_method


def start_render_pool(processes: int, *, start_method: str = "forkserver") -> ProcessPoolExecutor:
    """A long-lived pool of ``processes`` rendering processes for ``render_many``, each started,
    its renderer built and warmed up before this returns (what a service keeps between runs)."""
    pool, _method = new_pool(processes, start_method=start_method)
    # one task each while none is idle: the executor starts a process per task, up to ``processes``
    started = [pool.submit(_ready, 0.2) for _ in range(max(1, processes))]
    for f in started:
        f.result()
    return pool


def _write_atomic(path: Path, data: bytes) -> None:
    write_private(path, data)


def render_to_file(doc: InvoiceDocument, path: str) -> tuple[str, str, float]:
    """Render ``doc`` to ``path`` (written atomically); ``(path, sha256, CPU ms)``. Runs in a worker."""
    cpu = time.process_time()
    pdf, _xml = render_pdf(doc)
    _write_atomic(Path(path), pdf)
    return path, hashlib.sha256(pdf).hexdigest(), (time.process_time() - cpu) * 1000
