"""An exception's evidence for people: the rows behind its findings (top rows for the Details modal)
and the full pack as one zip (the "Download evidence" button). Reads only."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

from sqlalchemy import select

from billing.errors import NotFound
from storage.db import Database
from storage.models import BillingException, Conversion, DeliveryFact

ROW_COLUMNS = ("id", "item_id", "day", "source", "party", "impressions", "clicks", "conversions", "revenue",
               "currency")
CONVERSION_COLUMNS = ("id", "source", "external_id", "kind", "item_id", "day", "status", "payout", "revenue",
                      "currency")
FINDING_COLUMNS = ("rule", "item_id", "item", "cause", "tolerance", "tolerance_source", "days", "amount_at_stake",
                   "summary")


def _ids(ev: dict[str, Any], key: str) -> list[int]:
    """The row ids of every finding (the primary's are at the top level too)."""
    out: dict[int, None] = {}
    for f in [ev, *[x for x in ev.get("findings") or [] if isinstance(x, dict)]]:
        for i in f.get(key) or []:
            if isinstance(i, int) or str(i).isdigit():
                out[int(i)] = None
    return list(out)


def _row(obj: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    return {c: getattr(obj, c, None) for c in columns}


def top_rows(db: Database, exception_id: int, *, limit: int = 10) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` delivery rows behind the exception's findings (by day, party) and how many
    there are in all."""
    with db.read() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None:
            raise NotFound(f"exception {exception_id} does not exist")
        ids = _ids(exc.evidence or {}, "row_ids")
        if not ids:
            return [], 0
        total = len(ids)
        rows = s.execute(select(DeliveryFact).where(DeliveryFact.id.in_(ids[:5000]))
                         .order_by(DeliveryFact.day, DeliveryFact.party, DeliveryFact.id).limit(limit)).scalars()
        return [_row(r, ROW_COLUMNS) for r in rows], total


def _csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else str(r.get(c)) for c in columns])
    return buf.getvalue().encode()


def evidence_pack(db: Database, exception_id: int) -> tuple[str, bytes]:
    """``(file name, zip bytes)``: ``evidence.json`` (the exception and its full evidence),
    ``findings.csv`` (one row per finding, its figures flattened), ``delivery_rows.csv`` and
    ``conversions.csv`` (every source row the findings name)."""
    with db.read() as s:
        exc = s.get(BillingException, exception_id)
        if exc is None:
            raise NotFound(f"exception {exception_id} does not exist")
        ev = dict(exc.evidence or {})
        head = {"id": exc.id, "kind": exc.kind, "state": exc.state, "advertiser": exc.advertiser_id,
                "preinvoice": exc.preinvoice_id, "period_start": exc.period_start, "period_end": exc.period_end,
                "amount": exc.amount, "currency": exc.currency, "cause": exc.cause, "summary": exc.summary}
        row_ids, conv_ids = _ids(ev, "row_ids"), _ids(ev, "conversion_ids")
        facts = [_row(r, ROW_COLUMNS) for r in s.execute(
            select(DeliveryFact).where(DeliveryFact.id.in_(row_ids)).order_by(DeliveryFact.day, DeliveryFact.id)
        ).scalars()] if row_ids else []
        convs = [_row(r, CONVERSION_COLUMNS) for r in s.execute(
            select(Conversion).where(Conversion.id.in_(conv_ids)).order_by(Conversion.day, Conversion.id)
        ).scalars()] if conv_ids else []
    findings = [f for f in ev.get("findings") or [] if isinstance(f, dict)] or ([ev] if ev.get("rule") else [])
    fig_keys = list(dict.fromkeys(k for f in findings for k in (f.get("figures") or {})))
    finding_rows = [{**{c: (",".join(f.get(c) or []) if c == "days" else f.get(c)) for c in FINDING_COLUMNS},
                     **{k: (f.get("figures") or {}).get(k) for k in fig_keys}} for f in findings]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("evidence.json", json.dumps({"exception": head, "evidence": ev}, indent=2, default=str,
                                               ensure_ascii=False))
        z.writestr("findings.csv", _csv((*FINDING_COLUMNS, *fig_keys), finding_rows))
        z.writestr("delivery_rows.csv", _csv(ROW_COLUMNS, facts))
        z.writestr("conversions.csv", _csv(CONVERSION_COLUMNS, convs))
    return f"exception-{exception_id}-evidence.zip", buf.getvalue()

