"""Invoice documents: the model (:mod:`.model`), its formatting for the recipient (:mod:`.view`) and
its Factur-X EN 16931 XML (:mod:`.facturx`). Pure: data in, text or bytes out. The PDF/A-3 renderer
is an adapter outside the core (:mod:`bot.documents.pdf`).

The model's public names are re-exported here for convenience.
"""

from billing.documents.model import (
    Approval,
    DocumentLine,
    FxLock,
    InvoiceDocument,
    Party,
    VatGroup,
    check_document,
    doc_locale,
    sample_document,
    to_accounting,
    vat_breakdown,
)

__all__ = [
    "Approval",
    "DocumentLine",
    "FxLock",
    "InvoiceDocument",
    "Party",
    "VatGroup",
    "check_document",
    "doc_locale",
    "sample_document",
    "to_accounting",
    "vat_breakdown",
]
