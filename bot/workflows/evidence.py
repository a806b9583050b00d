"""Evidence packs: everything behind one invoice in one zip an auditor can check on their own.

:func:`build_evidence_pack` writes a zip with the PDF, the XML, the source rows behind each line, a
manifest, the signed decisions and ``SHA256SUMS`` (signed with the deployment's key);
:func:`verify_evidence_pack` fails after any byte of it changed (the zip is written in a canonical
form and rebuilt on verification). Reads only; a missing PDF is rendered through
:func:`bot.workflows.documents.render_invoice_pdf`.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from sqlalchemy import ColumnElement, and_, or_, select

from billing.documents.facturx import FACTURX_FILENAME, xsd_problems
from billing.errors import Invalid, NotFound
from billing.fx import fx_json
from billing.money import fmt
from billing.signatures import canonical_json, chain_hash, key_id, sha256_hex, sign, verify
from bot.workflows.comments import comment_json, thread_comments
from bot.workflows.documents import PdfRenderer, file_sha256, render_invoice_pdf, safe_name, write_atomic
from storage.db import Database
from storage.models import (
    AuditLog,
    BillingException,
    CampaignItem,
    Conversion,
    Decision,
    DeliveryFact,
    Invoice,
    SyncRun,
)
from storage.queries import find_invoice

PACK_FORMAT = "billbot-evidence/1"
SUMS = "SHA256SUMS"
SUMS_SIG = "SHA256SUMS.sig"
MANIFEST = "manifest.json"
PUBLIC_KEY = "public_key.pem"


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v.isoformat() if isinstance(v, date | datetime) else str(v) for v in r])
    return buf.getvalue().encode()


DELIVERY_COLUMNS = ("id", "item_id", "day", "source", "party", "impressions", "clicks", "conversions", "revenue",
                    "currency", "sync_run_id", "updated_at")
CONVERSION_COLUMNS = ("id", "source", "external_id", "kind", "item_id", "affiliate_id", "day", "occurred_at",
                      "status", "payout", "revenue", "currency", "sync_run_id", "updated_at")


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k in sorted(value):
            _flatten(f"{prefix}.{k}" if prefix else str(k), value[k], out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(f"{prefix}[{i}]", v, out)
    else:
        out.append((prefix, value if isinstance(value, str) else canonical_json(value)))


def _plain(d: Decimal) -> str:
    """A decimal without trailing zeros or exponent (PostgreSQL NUMERIC(20,6) gives 485000.000000)."""
    text = format(d.normalize(), "f")
    return text


def _canonical_zip(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A zip in one canonical form: members stored (no compression, so no zlib version can change a
    byte), fixed timestamps and attributes, in the given order. Verification rebuilds it from the
    members and compares byte for byte, so a change anywhere in the file is detected."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def _sums(members: Sequence[tuple[str, bytes]]) -> bytes:
    return "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in members).encode()


@dataclass
class _Pack:
    members: list[tuple[str, bytes]] = field(default_factory=list)

    def add(self, name: str, data: bytes) -> None:
        self.members.append((name, data))


def _review_of(payload: str | None) -> dict[str, Any]:
    """The review controls a signed decision carries (issue 21): the checklist ticked, the routing
    rule and its group, the timeout outcome — copied from the signed record into decisions.json."""
    if not payload:
        return {}
    data = json.loads(payload)
    return {k: data[k] for k in ("checklist", "rule", "approver_group", "outcome") if k in data}


def _audit_row(a: AuditLog) -> dict[str, Any]:
    return {"id": a.id, "at": a.at.isoformat(), "actor": a.actor, "action": a.action,
            "subject_type": a.subject_type, "subject_id": a.subject_id, "payload": a.payload,
            "prev_hash": a.prev_hash, "record_hash": a.record_hash, "signature": a.signature, "key_id": a.key_id}


def build_evidence_pack(  # noqa: PLR0915 - the pack's members in the order an auditor reads them
    db: Database,
    number: str,
    out: Path,
    *,
    renderer: PdfRenderer,
    out_dir: Path,
    legal_entity: str | None = None,
    key: Ed25519PrivateKey | None = None,
) -> Path:
    """Write the evidence pack of invoice ``number`` to ``out`` (a zip) and return ``out``.

    Members: the PDF (the recorded file when its hash still matches, else rendered now), the embedded
    ``factur-x.xml``, per line the source rows behind it as CSV (delivery facts and conversions of the
    line's item and period; for linear items the distribution computation), ``decisions.json`` (the
    decisions on the invoice's pre-invoices and exceptions, with their signed audit records),
    ``audit.jsonl``, ``manifest.json`` (sync runs with their file hashes, the FX rate used, the
    computation per line, the hash of every member), the public key, ``SHA256SUMS`` and, with ``key``,
    ``SHA256SUMS.sig`` (Ed25519 over the sums file). A PDF missing from ``out_dir`` is rendered with
    ``renderer`` (and recorded) first."""
    from facturx import get_facturx_xml_from_pdf  # lazy: factur-x pulls in pypdf; only packs need it

    with db.read() as s:
        inv = find_invoice(s, number, legal_entity)
        invoice_id = inv.id
        pdf: bytes | None = None
        if inv.pdf_state == "done" and inv.pdf_path and inv.pdf_sha256:
            p = Path(inv.pdf_path)
            if file_sha256(p) == inv.pdf_sha256:
                pdf = p.read_bytes()
    if pdf is None:
        pdf = render_invoice_pdf(db, invoice_id, renderer=renderer, out_dir=out_dir, key=key, force=True).read_bytes()
    _name, xml = get_facturx_xml_from_pdf(pdf, check_xsd=False)
    if not xml:
        raise Invalid(f"the PDF of {number} carries no {FACTURX_FILENAME}")
    pack = _Pack()
    with db.read() as s:
        found = s.get(Invoice, invoice_id)
        if found is None:
            raise NotFound(f"invoice {invoice_id} not found")
        inv = found
        base = safe_name(inv.number)
        pack.add(f"{base}.pdf", pdf)
        pack.add(FACTURX_FILENAME, bytes(xml))
        line_entries: list[dict[str, Any]] = []
        sync_ids: set[int] = set()
        for pos, li in enumerate(sorted(inv.lines, key=lambda x: (x.position, x.id)), start=1):
            item = s.get(CampaignItem, li.item_id) if li.item_id else None
            entry: dict[str, Any] = {
                "position": pos, "line_id": li.id, "item_id": li.item_id, "description": li.description,
                "quantity": _plain(li.quantity), "unit": li.unit, "unit_price": _plain(li.unit_price),
                "amount": fmt(li.amount, inv.currency), "period_start": li.period_start, "period_end": li.period_end,
                "preinvoice_id": li.preinvoice_id, "billing": item.billing if item else "manual",
                "computation": li.computation or {}, "files": [],
            }
            if item is not None and item.billing == "delivery" and li.period_start and li.period_end:
                facts = list(s.execute(
                    select(DeliveryFact).where(DeliveryFact.item_id == item.id,
                                               DeliveryFact.day >= li.period_start, DeliveryFact.day <= li.period_end)
                    .order_by(DeliveryFact.day, DeliveryFact.source, DeliveryFact.party, DeliveryFact.id)).scalars())
                convs = list(s.execute(
                    select(Conversion).where(Conversion.item_id == item.id,
                                             Conversion.day >= li.period_start, Conversion.day <= li.period_end)
                    .order_by(Conversion.day, Conversion.source, Conversion.external_id)).scalars())
                name = f"lines/{pos:03d}-delivery.csv"
                pack.add(name, _csv(DELIVERY_COLUMNS, ([getattr(f, c) for c in DELIVERY_COLUMNS] for f in facts)))
                entry["files"].append(name)
                entry["delivery_rows"] = len(facts)
                if convs or (item.rate_type or "") in ("cpa", "cpl"):
                    name = f"lines/{pos:03d}-conversions.csv"
                    pack.add(name, _csv(CONVERSION_COLUMNS,
                                        ([getattr(c, k) for k in CONVERSION_COLUMNS] for c in convs)))
                    entry["files"].append(name)
                    entry["conversion_rows"] = len(convs)
                sync_ids.update(f.sync_run_id for f in facts if f.sync_run_id)
                sync_ids.update(c.sync_run_id for c in convs if c.sync_run_id)
            else:
                flat: list[tuple[str, str]] = []
                _flatten("", li.computation or {}, flat)
                name = f"lines/{pos:03d}-distribution.csv"
                pack.add(name, _csv(("key", "value"), flat))
                entry["files"].append(name)
            line_entries.append(entry)
        syncs = [
            {"id": r.id, "source": r.source, "mode": r.mode, "state": r.state, "started_at": r.started_at,
             "finished_at": r.finished_at, "file_name": r.file_name, "file_sha256": r.file_sha256,
             "data_until": r.data_until, "counts": r.counts}
            for r in s.execute(select(SyncRun).where(SyncRun.id.in_(sync_ids)).order_by(SyncRun.id)).scalars()
        ] if sync_ids else []
        # the decisions behind the invoice: its pre-invoices' exceptions, and threshold skips of the run
        pre_ids = sorted({li.preinvoice_id for li in inv.lines if li.preinvoice_id})
        conds: list[ColumnElement[bool]] = []
        if pre_ids:
            conds.append(BillingException.preinvoice_id.in_(pre_ids))
        if inv.billing_run_id:
            conds.append(and_(BillingException.kind == "below_threshold",
                              BillingException.advertiser_id == inv.advertiser_id,
                              BillingException.billing_run_id == inv.billing_run_id))
        excs = list(s.execute(select(BillingException).where(or_(*conds)).order_by(BillingException.id))
                    .scalars()) if conds else []
        exc_ids = [e.id for e in excs]
        decisions = list(s.execute(select(Decision).where(Decision.exception_id.in_(exc_ids))
                                   .order_by(Decision.id)).scalars()) if exc_ids else []
        subjects = [("invoice", str(inv.id)), ("invoice", inv.number)]
        subjects += [(t, str(p)) for p in pre_ids for t in ("preinvoice", "pre_invoice")]
        subjects += [("exception", str(e)) for e in exc_ids]
        subjects += [("decision", str(d.id)) for d in decisions]
        audit_ids = [d.audit_id for d in decisions if d.audit_id]
        audit_conds = [and_(AuditLog.subject_type == t, AuditLog.subject_id == i) for t, i in subjects]
        if audit_ids:
            audit_conds.append(AuditLog.id.in_(audit_ids))
        audit_rows = list(s.execute(select(AuditLog).where(or_(*audit_conds)).order_by(AuditLog.id)).scalars())
        signed = {a.id: a.payload for a in audit_rows}
        decisions_doc: dict[str, Any] = {
            "exceptions": [
                {"id": e.id, "kind": e.kind, "state": e.state, "preinvoice_id": e.preinvoice_id,
                 "cause": e.cause, "amount": fmt(e.amount, e.currency), "currency": e.currency,
                 "subject_hash": e.subject_hash,
                 "decision": e.decision, "decided_by": e.decided_by, "decided_at": e.decided_at, "reason": e.reason,
                 # the replies in the exception's Slack thread (issue 21; signed records in audit.jsonl)
                 "comments": [comment_json(c) for c in thread_comments(s, "exception", e.id)]}
                for e in excs
            ],
            "decisions": [
                {"id": d.id, "exception_id": d.exception_id, "decision": d.decision, "actor_id": d.actor_id,
                 "actor_name": d.actor_name, "actor_email": d.actor_email, "reason": d.reason,
                 "decided_at": d.decided_at, "subject_hash": d.subject_hash, "audit_id": d.audit_id,
                 **_review_of(signed.get(d.audit_id) if d.audit_id else None)}
                for d in decisions
            ],
            "approvals": inv.approvals or [],
        }
        pack.add("decisions.json", _json(decisions_doc))
        pack.add("audit.jsonl", "".join(canonical_json(_audit_row(a)) + "\n" for a in audit_rows).encode())
        fx = fx_json(inv.fx)
        summary = {
            "number": inv.number, "kind": inv.kind, "legal_entity": inv.legal_entity_id,
            "advertiser": inv.advertiser_id, "issue_date": inv.issue_date, "due_date": inv.due_date,
            "currency": inv.currency, "net": fmt(inv.net, inv.currency), "vat": fmt(inv.vat, inv.currency),
            "gross": fmt(inv.gross, inv.currency), "vat_rate": _plain(inv.vat_rate),
            "vat_category": inv.vat_category, "content_hash": inv.content_hash,
            "billing_run_id": inv.billing_run_id, "pdf_sha256": hashlib.sha256(pdf).hexdigest(),
            "references": s.get(Invoice, inv.references_invoice_id).number  # type: ignore[union-attr]
            if inv.references_invoice_id else None,
        }
    if key is not None:
        pack.add(PUBLIC_KEY, key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    manifest = {
        "format": PACK_FORMAT,
        "invoice": summary,
        "fx": fx,
        "lines": line_entries,
        "sync_runs": syncs,
        "decisions": len(decisions_doc["decisions"]),
        "audit_records": len(audit_rows),
        "key_id": key_id(key.public_key()) if key is not None else None,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in pack.members},
    }
    pack.add(MANIFEST, _json(manifest))
    sums = _sums(pack.members)
    pack.add(SUMS, sums)
    if key is not None:
        pack.add(SUMS_SIG, (sign(key, sha256_hex(sums)) + "\n").encode())
    write_atomic(out, _canonical_zip(pack.members))
    return out


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False,
                       default=lambda o: o.isoformat() if isinstance(o, date | datetime) else str(o)) + "\n").encode()


_SUM_LINE = re.compile(r"^([0-9a-f]{64})  ([^\n]+)$")


MAX_MEMBER_BYTES = 64 * 1024 * 1024  # an evidence member is a PDF, an XML or CSV rows: far below this
MAX_PACK_BYTES = 256 * 1024 * 1024


def _read_members(z: zipfile.ZipFile) -> list[tuple[str, bytes]]:
    """Every member, streamed in chunks with a size limit: a member declared or found larger than
    :data:`MAX_MEMBER_BYTES` (a zip bomb: 400 MB inside a small zip) is refused, never read whole."""
    members = []
    total = 0
    for info in z.infolist():
        if info.file_size > MAX_MEMBER_BYTES:
            raise ValueError(f"member {info.filename} is {info.file_size} bytes uncompressed "
                             f"(limit {MAX_MEMBER_BYTES}); refused")
        buf = bytearray()
        with z.open(info) as f:
            while chunk := f.read(1024 * 1024):
                buf += chunk
                if len(buf) > MAX_MEMBER_BYTES:
                    raise ValueError(f"member {info.filename} is larger than {MAX_MEMBER_BYTES} bytes; refused")
        total += len(buf)
        if total > MAX_PACK_BYTES:
            raise ValueError(f"the pack's members exceed {MAX_PACK_BYTES} bytes; refused")
        members.append((info.filename, bytes(buf)))
    return members


def verify_evidence_pack(  # noqa: C901, PLR0912, PLR0915 - one check per pack member, each reported; order matters
    path: Path, *, public_key: Ed25519PublicKey | None = None, trusted: Sequence[Ed25519PublicKey] | None = None,
) -> list[str]:
    """Problems with the evidence pack at ``path`` (empty = it verifies).

    Checks, in order: the zip is in its canonical form (any byte changed outside the members); every
    member is listed in ``SHA256SUMS`` with its hash and nothing is missing or extra; the manifest's
    hashes agree; the signature over the sums (with the pack's key, or ``public_key`` when given);
    each audit record's hash and signature; then, for an intact pack, that the XML inside the PDF is
    the XML member and is XSD-valid.

    ``trusted``: the keys an outsider trusts (the deployment's key registry, or a public key handed
    to the auditor). Given, the pack MUST carry a valid signature by one of them: an unsigned pack,
    or one signed by any other key (even consistently re-signed), fails and says why."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        return [f"cannot read {path}: {e}"]
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            members = _read_members(z)
    except ValueError as e:
        if "refused" in str(e):
            return [str(e)]
        return [f"not a readable zip: {type(e).__name__}: {e}"]
    except Exception as e:  # noqa: BLE001 - a corrupted archive can fail in many ways; each is a problem
        return [f"not a readable zip: {type(e).__name__}: {e}"]
    problems: list[str] = []
    if _canonical_zip(members) != raw:
        problems.append("the archive is not byte-identical to its canonical form (bytes changed outside members)")
    files = dict(members)
    if len(files) != len(members):
        problems.append("duplicate member names")
    sums = files.get(SUMS)
    if sums is None:
        return [*problems, f"{SUMS} is missing"]
    listed: dict[str, str] = {}
    try:
        text = sums.decode("utf-8")
    except UnicodeDecodeError:
        return [*problems, f"{SUMS} is not UTF-8"]
    if not text.endswith("\n"):
        problems.append(f"{SUMS} does not end with a newline")
    for n, line in enumerate(text.split("\n")[:-1], start=1):
        m = _SUM_LINE.match(line)
        if not m:
            problems.append(f"{SUMS} line {n} is malformed")
            continue
        listed[m.group(2)] = m.group(1)
    for name, digest in listed.items():
        if name not in files:
            problems.append(f"{name} is listed in {SUMS} but missing")
        elif hashlib.sha256(files[name]).hexdigest() != digest:
            problems.append(f"{name} does not match its SHA-256 in {SUMS}")
    for name in files:
        if name not in listed and name not in (SUMS, SUMS_SIG):
            problems.append(f"{name} is not listed in {SUMS}")
    try:
        manifest = json.loads(files.get(MANIFEST, b""))
    except (ValueError, UnicodeDecodeError):
        problems.append(f"{MANIFEST} is missing or not JSON")
        manifest = {}
    if manifest and manifest.get("format") != PACK_FORMAT:
        problems.append(f"{MANIFEST}: unknown format {manifest.get('format')!r}")
    for name, digest in (manifest.get("files") or {}).items():
        if name not in files:
            problems.append(f"{MANIFEST} lists {name}, which is missing")
        elif hashlib.sha256(files[name]).hexdigest() != digest:
            problems.append(f"{name} does not match its SHA-256 in {MANIFEST}")
    pack_key: Ed25519PublicKey | None = None
    if PUBLIC_KEY in files:
        try:
            loaded = load_pem_public_key(files[PUBLIC_KEY])
        except ValueError:
            problems.append(f"{PUBLIC_KEY} is not a PEM public key")
        else:
            if isinstance(loaded, Ed25519PublicKey):
                pack_key = loaded
            else:
                problems.append(f"{PUBLIC_KEY} is not an Ed25519 key")
    if trusted is not None:
        by_id = {key_id(k): k for k in trusted}
        if SUMS_SIG not in files:
            problems.append(f"the pack is not signed ({SUMS_SIG} is missing): it cannot be trusted")
        elif pack_key is None:
            problems.append(f"the pack carries no {PUBLIC_KEY}: its signer is unknown")
        elif key_id(pack_key) not in by_id:
            problems.append(f"the pack was signed by key {key_id(pack_key)}, which is not a trusted key "
                            f"(trusted: {', '.join(sorted(by_id)) or 'none'})")
        else:
            public_key = by_id[key_id(pack_key)]
    if public_key is not None and pack_key is not None and key_id(public_key) != key_id(pack_key):
        problems.append("the pack was signed with another key than the deployment's")
    check_key = public_key or pack_key
    if SUMS_SIG in files:
        if check_key is None:
            problems.append(f"{SUMS_SIG} present but no public key to check it")
        else:
            sig = files[SUMS_SIG].decode("utf-8", "replace").strip()
            # the exact bytes we write (base64 has spare bits: a changed one could decode the same)
            if files[SUMS_SIG] != (sig + "\n").encode() or not _canonical_b64(sig):
                problems.append(f"{SUMS_SIG} is not in its canonical form")
            elif not verify(check_key, sha256_hex(sums), sig):
                problems.append(f"{SUMS_SIG} does not verify")
    elif public_key is not None:
        problems.append(f"{SUMS_SIG} is missing")
    others = {key_id(k): k for k in trusted or ()}  # records older than a key rotation: signed by a retired key
    problems += _check_audit(files.get("audit.jsonl", b""), check_key, others)
    if not problems:  # the members are what was packed; now check they agree with each other
        problems += _check_documents(files, manifest)
    return problems


def _canonical_b64(text: str) -> bool:
    try:
        return base64.b64encode(base64.b64decode(text, validate=True)).decode() == text
    except ValueError:
        return False


def _check_documents(files: dict[str, bytes], manifest: dict[str, Any]) -> list[str]:
    from facturx import get_facturx_xml_from_pdf  # lazy: see build_evidence_pack

    problems: list[str] = []
    xml = files.get(FACTURX_FILENAME)
    pdfs = [n for n in files if n.endswith(".pdf")]
    if xml is None:
        return [f"{FACTURX_FILENAME} is missing"]
    if len(pdfs) != 1:
        return [*problems, f"expected one PDF, found {len(pdfs)}"]
    problems += [f"{FACTURX_FILENAME}: {p}" for p in xsd_problems(xml)]
    try:
        _n, embedded = get_facturx_xml_from_pdf(files[pdfs[0]], check_xsd=False)
    except Exception as e:  # noqa: BLE001 - pypdf raises many kinds of errors on a damaged PDF
        return [*problems, f"{pdfs[0]} cannot be read: {type(e).__name__}"]
    if embedded != xml:
        problems.append(f"the XML embedded in {pdfs[0]} differs from {FACTURX_FILENAME}")
    want = (manifest.get("invoice") or {}).get("pdf_sha256")
    if want and hashlib.sha256(files[pdfs[0]]).hexdigest() != want:
        problems.append(f"{pdfs[0]} is not the PDF the manifest names")
    return problems


def _check_audit(data: bytes, public: Ed25519PublicKey | None,
                 others: dict[str, Ed25519PublicKey] | None = None) -> list[str]:
    """Each audit record's hash and signature: by the pack's key, or — for records written before a key
    rotation — by the trusted (registry) key the record names."""
    problems: list[str] = []
    try:
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError):
        return ["audit.jsonl is not JSON lines"]
    for r in rows:
        try:
            h = chain_hash(seq=int(r["id"]), at=str(r["at"]), actor=str(r["actor"]), action=str(r["action"]),
                           subject=f"{r['subject_type']}:{r['subject_id']}", payload=str(r["payload"]),
                           prev_hash=str(r["prev_hash"]))
        except (KeyError, TypeError, ValueError):
            problems.append("audit.jsonl has a malformed record")
            continue
        if h != r.get("record_hash"):
            problems.append(f"audit record {r.get('id')} was changed (hash mismatch)")
        elif public is not None and r.get("signature"):
            signer = public if not r.get("key_id") or r["key_id"] == key_id(public) else (others or {}).get(r["key_id"])
            if signer is None:
                problems.append(f"audit record {r.get('id')} was signed by key {r['key_id']}, not the pack's key "
                                "nor a trusted one")
            elif not verify(signer, h, str(r["signature"])):
                problems.append(f"audit record {r.get('id')} has a bad signature")
    return problems

