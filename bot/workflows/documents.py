"""Invoice documents after finalization: rendering PDFs (one or many) and recording the outcomes.

The PDF renderer is a parameter (``renderer``: :mod:`bot.documents.pdf`, passed by the entry point):
workflows never import the rendering engine. The invoice row → document mapping is
:func:`storage.mapping.document_for_invoice`.

- :func:`render_invoice_pdf` renders AFTER the finalizing transaction committed (the invoice and its
  number exist whatever happens here), retries, and records only the rendering bookkeeping columns
  (``pdf_state``/``pdf_path``/``pdf_sha256``/``pdf_attempts``/``pdf_error``, the only mutable ones, see
  ``storage.guards``). A render that keeps failing leaves ``pdf_state='failed'``; numbering never waits.
  Each outcome is an audit record (the PDF's SHA-256 lands in the signed chain) and, on success,
  the event ``invoice.rendered`` (invoice_id, pdf_path) for whoever delivers it (the Slack app).
- :func:`render_many` renders many invoices in parallel across the renderer's worker processes; each
  worker parses the stylesheets and loads the fonts once, the parent records the bookkeeping.

Evidence packs are :mod:`bot.workflows.evidence`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.documents import InvoiceDocument, check_document
from billing.errors import BillingError, NotAllowed, NotFound
from bot.workflows import audit
from bot.workflows.effects import notify
from storage.db import Database
from storage.files import write_private
from storage.mapping import document_for_invoice, preload_invoices
from storage.models import Invoice, User

log = logging.getLogger(__name__)

class RenderFailed(BillingError):
    code = "render_failed"


class PdfRenderer(Protocol):
    """What the rendering workflows need from a PDF renderer. :mod:`bot.documents.pdf` is one: the
    entry point passes the module itself (its functions are looked up at call time)."""

    def render_pdf(self, doc: InvoiceDocument, *, check_xsd: bool = True) -> tuple[bytes, bytes]:
        """``(pdf, xml)`` of ``doc``."""
        ...

    def render_to_file(self, doc: InvoiceDocument, path: str) -> tuple[str, str, float]:
        """Render ``doc`` to ``path`` in a worker process: ``(path, sha256, CPU ms)``."""
        ...

    def new_pool(self, processes: int, *, start_method: str | None = None) -> tuple[ProcessPoolExecutor, str]:
        """Worker processes with a warmed-up renderer each, and the start method used."""
        ...


# --------------------------------------------------------------------------- rendering


def safe_name(name: str) -> str:
    """``name`` as a file name (anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "_"


def pdf_path_for(out_dir: Path, legal_entity_id: str, number: str) -> Path:
    return out_dir / safe_name(legal_entity_id) / f"{safe_name(number)}.pdf"


def write_atomic(path: Path, data: bytes) -> None:
    write_private(path, data)


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of the file at ``path``; None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass(frozen=True)
class RenderOutcome:
    """One render attempt: ``path``/``sha256`` on success, ``error`` on failure (``final`` = no retry left)."""

    invoice_id: int
    path: Path | None = None
    sha256: str | None = None
    error: str | None = None
    final: bool = True


def record_renders(db: Database, outcomes: Sequence[RenderOutcome], *, key: Ed25519PrivateKey | None,
                   actor: str = "system", now: datetime | None = None) -> None:
    """Record render attempts on the invoices' bookkeeping columns, one audit record each, in one
    transaction (the invoices read with one query, the audit records written with one INSERT).
    Success: ``pdf_state='done'`` and the event ``invoice.rendered`` (after commit). Failure:
    ``pdf_error``, and ``pdf_state='failed'`` once no attempt is left (``'pending'`` before)."""
    if not outcomes:
        return
    with db.transaction() as s:
        ids = sorted({o.invoice_id for o in outcomes})
        invoices = {i.id: i for i in s.scalars(select(Invoice).where(Invoice.id.in_(ids)))}
        entries: list[audit.Entry] = []
        for o in outcomes:
            inv = invoices.get(o.invoice_id)
            if inv is None:
                raise NotFound(f"invoice {o.invoice_id} not found")
            inv.pdf_attempts = (inv.pdf_attempts or 0) + 1
            if o.error is None and o.path is not None:
                inv.pdf_state, inv.pdf_path, inv.pdf_sha256, inv.pdf_error = "done", str(o.path), o.sha256, None
                action = "invoice.pdf_rendered"
                payload: dict[str, Any] = {"number": inv.number, "pdf_sha256": o.sha256, "attempt": inv.pdf_attempts}
            else:
                inv.pdf_state = "failed" if o.final else "pending"
                inv.pdf_error = (o.error or "unknown error")[:2000]
                action = "invoice.pdf_failed"
                payload = {"number": inv.number, "error": inv.pdf_error, "attempt": inv.pdf_attempts,
                           "final": o.final}
            entries.append(audit.Entry(actor=actor, action=action, subject_type="invoice", subject_id=inv.id,
                                       payload=payload))
        audit.record_many(s, key=key, entries=entries, now=now)
        for o in outcomes:
            if o.error is None and o.path is not None:
                notify(s, "invoice.rendered", invoice_id=o.invoice_id, pdf_path=str(o.path))
            elif o.final:
                inv = invoices[o.invoice_id]
                notify(s, "invoice.pdf_failed", invoice_id=o.invoice_id, number=inv.number,
                       error=inv.pdf_error or "unknown error")


def render_invoice_pdf(
    db: Database,
    invoice_id: int,
    *,
    renderer: PdfRenderer,
    out_dir: Path,
    attempts: int = 3,
    key: Ed25519PrivateKey | None = None,
    force: bool = False,
    retry_delay: float = 0.2,
) -> Path:
    """Render invoice ``invoice_id`` with ``renderer`` to ``out_dir/<legal entity>/<number>.pdf`` and record it.

    Call it after the finalizing transaction committed (an ``invoice.finalized`` subscriber or the
    ``render_pdf`` job). Idempotent: an invoice already rendered, whose file still has the recorded
    hash, is not rendered again unless ``force``. Each failed attempt is recorded; after ``attempts``
    failures it raises :class:`RenderFailed` (the invoice itself stays valid and numbered)."""
    with db.read() as s:
        inv = s.get(Invoice, invoice_id)
        if inv is None:
            raise NotFound(f"invoice {invoice_id} not found")
        if not force and inv.pdf_state == "done" and inv.pdf_path and inv.pdf_sha256:
            existing = Path(inv.pdf_path)
            if file_sha256(existing) == inv.pdf_sha256:
                return existing
        doc = document_for_invoice(s, invoice_id)
        target = pdf_path_for(out_dir, inv.legal_entity_id, inv.number)
    problems = check_document(doc)
    if problems:  # the stored content itself is wrong: retrying cannot help
        error = "; ".join(problems)
        record_renders(db, [RenderOutcome(invoice_id, error=error, final=True)], key=key)
        raise RenderFailed(f"invoice {doc.number}: {error}")
    last = ""
    for attempt in range(1, max(1, attempts) + 1):
        try:
            pdf, _xml = renderer.render_pdf(doc)
            write_atomic(target, pdf)
        except Exception as e:  # noqa: BLE001 - recorded on the invoice and re-raised after the last attempt
            last = f"{type(e).__name__}: {e}"
            log.warning("rendering %s failed (attempt %d of %d): %s", doc.number, attempt, attempts, last)
            record_renders(db, [RenderOutcome(invoice_id, error=last, final=attempt >= attempts)], key=key)
            if attempt < attempts:
                time.sleep(retry_delay * attempt)
            continue
        record_renders(db, [RenderOutcome(invoice_id, path=target, sha256=hashlib.sha256(pdf).hexdigest())],
                       key=key)
        return target
    raise RenderFailed(f"invoice {doc.number}: PDF not rendered after {attempts} attempts ({last})")


def ensure_invoice_pdf(db: Database, invoice_id: int, *, renderer: PdfRenderer, out_dir: Path,
                       key: Ed25519PrivateKey | None = None) -> Path:
    """The invoice's PDF file, rendered now if it is missing (what a delivery, e.g. the Slack upload
    into the exception's or run's thread, calls)."""
    return render_invoice_pdf(db, invoice_id, renderer=renderer, out_dir=out_dir, key=key)


# --------------------------------------------------------------------------- retrying failed PDFs

#: Who may retry a failed PDF from Slack (the CLI acts as the machine's operator).
PDF_RETRY_ROLES = frozenset({"operator", "admin"})


def access_pdf_retry(s: Session, user_id: str) -> None:
    """A Slack user may retry a PDF only with an operator role."""
    user = s.get(User, user_id)
    roles = user.role_names if user is not None else set()
    if not roles & PDF_RETRY_ROLES:
        raise NotAllowed("Only operators may retry a PDF.", code="operator_required")


def retry_failed_pdfs(db: Database, *, actor: str, key: Ed25519PrivateKey | None, now: datetime,
                      invoice_id: int | None = None, slack_user: str | None = None) -> list[int]:
    """Put failed PDFs back to ``pending`` (one invoice, or every failed one) with one audit record
    each, and return their ids for the caller to render (the CLI now, Slack through ``render_pdf``).

    A conditional UPDATE (``WHERE pdf_state = 'failed'``): a second click or a concurrent CLI call
    finds nothing left to retry and returns ``[]``. ``slack_user`` is checked for an operator role."""
    with db.transaction() as s:
        if slack_user is not None:
            access_pdf_retry(s, slack_user)
        q = select(Invoice.id, Invoice.number).where(Invoice.pdf_state == "failed")
        if invoice_id is not None:
            if s.get(Invoice, invoice_id) is None:
                raise NotFound(f"invoice {invoice_id} not found")
            q = q.where(Invoice.id == invoice_id)
        rows = s.execute(q.order_by(Invoice.id)).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        done = s.execute(update(Invoice).where(Invoice.id.in_(ids), Invoice.pdf_state == "failed")
                         .values(pdf_state="pending", pdf_attempts=0).returning(Invoice.id)).scalars().all()
        numbers = {r.id: r.number for r in rows}
        audit.record_many(s, key=key, now=now, entries=[
            audit.Entry(actor=actor, action="invoice.pdf_retry", subject_type="invoice", subject_id=i,
                        payload={"number": numbers[i]}) for i in sorted(done)])
        return sorted(done)


# --------------------------------------------------------------------------- parallel rendering


RECORD_BATCH = 50  # render outcomes recorded per transaction by render_many
RECORD_EVERY_S = 1.0  # … or at least this often


def render_many(  # noqa: PLR0915 - render_many: submit, collect, batch-record in one loop; splitting hides the batching
    db: Database,
    invoice_ids: Sequence[int],
    *,
    renderer: PdfRenderer,
    processes: int,
    out_dir: Path,
    attempts: int = 3,
    key: Ed25519PrivateKey | None = None,
    record: bool = True,
    start_method: str | None = None,
    pool: ProcessPoolExecutor | None = None,
) -> dict[str, Any]:
    """Render many invoices in parallel across ``processes`` worker processes of ``renderer`` (or over
    ``pool``, a long-lived pool from ``bot.documents.pdf.start_render_pool``, e.g. a service's).

    Workers only render: the pool initializer parses the stylesheets and loads the fonts once per
    worker. The parent reads each document and hands it over at once (workers start rendering while
    the parent still reads), then records the outcomes as they arrive, each batch in one transaction,
    so the database sees a single writer. Failed renders are retried up to ``attempts`` times.
    How workers start is the renderer's choice (``new_pool``: forked when this process runs a single
    thread, so they inherit the imported, warmed-up renderer, else from a fork server).

    Returns ``{"rendered": {id: path}, "failed": {id: error}, "seconds": …, "processes": …,
    "per_pdf_ms": …, "per_core_ms": …, "worker_cpu_ms": …}`` (``per_core_ms`` = wall time × processes /
    PDFs; ``worker_cpu_ms`` = CPU time of the workers per PDF)."""
    own: ProcessPoolExecutor | None
    if pool is None:
        own, start_method = renderer.new_pool(processes, start_method=start_method)
    else:
        own, start_method = None, "given pool"
    docs: dict[int, tuple[InvoiceDocument, Path]] = {}
    rendered: dict[int, str] = {}
    failed: dict[int, str] = {}
    tries: dict[int, int] = {}
    started = time.perf_counter()
    workers = own or pool
    assert workers is not None
    try:
        pending: dict[Future[tuple[str, str, float]], int] = {}
        worker_cpu_ms = 0.0

        def submit(iid: int) -> None:
            tries[iid] = tries.get(iid, 0) + 1
            doc, path = docs[iid]
            pending[workers.submit(renderer.render_to_file, doc, str(path))] = iid

        with db.read() as s:
            # the invoices with their lines, parties and references in four queries, not four per invoice
            loaded = preload_invoices(s, invoice_ids)
            for iid in invoice_ids:
                inv = s.get(Invoice, iid)
                if inv is None:
                    raise NotFound(f"invoice {iid} not found")
                docs[iid] = (document_for_invoice(s, iid), pdf_path_for(out_dir, inv.legal_entity_id, inv.number))
                submit(iid)
            del loaded  # held in the identity map until every document was read
        outcomes: list[RenderOutcome] = []
        flushed = time.monotonic()
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            retry: list[int] = []
            for fut in done:
                iid = pending.pop(fut)
                exc = fut.exception()
                if exc is None:
                    path, sha, cpu_ms = fut.result()
                    worker_cpu_ms += cpu_ms
                    rendered[iid] = path
                    outcomes.append(RenderOutcome(iid, path=Path(path), sha256=sha))
                    continue
                error = f"{type(exc).__name__}: {exc}"
                final = tries[iid] >= attempts
                outcomes.append(RenderOutcome(iid, error=error, final=final))
                if final:
                    failed[iid] = error
                else:
                    retry.append(iid)
            for iid in retry:
                submit(iid)
            # recorded in batches (a PDF on disk but not yet recorded is rendered again by a rerun)
            if record and outcomes and (not pending or len(outcomes) >= RECORD_BATCH
                                        or time.monotonic() - flushed >= RECORD_EVERY_S):
                record_renders(db, outcomes, key=key)
                outcomes, flushed = [], time.monotonic()
    finally:
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)
    seconds = time.perf_counter() - started
    n = max(1, len(rendered))
    return {
        "rendered": rendered,
        "failed": failed,
        "seconds": seconds,
        "processes": processes,
        "start_method": start_method,
        "per_pdf_ms": seconds * 1000 / n,
        "per_core_ms": seconds * 1000 * max(1, processes) / n,
        "worker_cpu_ms": worker_cpu_ms / n,  # CPU time a worker spent per PDF (steady on a busy machine)
    }
