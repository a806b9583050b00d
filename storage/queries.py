"""Read queries several workflows share (no writes, no state changes)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import String, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from billing.errors import Invalid, NotFound
from storage.models import OPEN_EXCEPTION_STATES, Advertiser, BillingException, Invoice

BIG_IN = 5000  # above this many ids, filter in Python instead of a huge IN list
IN_LIST_MAX = 500  # text ids: an IN list up to this many


def among(s: Session, col: Any, ids: Collection[str], *, name: str = "ids") -> ColumnElement[bool] | None:
    """A filter ``col`` ∈ ``ids`` (text ids) that stays cheap for any number of them: an IN list up to
    :data:`IN_LIST_MAX` ids, beyond that ``= ANY(:ids)`` with one array parameter on PostgreSQL — a chunk of a
    scaled-out run reads its own rows, not the whole month's of every advertiser. Beyond on SQLite, None: the
    caller reads its date window and keeps the ids it wants (an embedded run asks for every advertiser at once,
    and rendering thousands of parameters costs more than the window)."""
    if len(ids) <= IN_LIST_MAX:
        return col.in_(list(ids))  # type: ignore[no-any-return]
    if s.get_bind().dialect.name == "postgresql":
        return col == any_(bindparam(name, list(ids), type_=ARRAY(String)))  # type: ignore[no-any-return]
    return None


def resolve_advertisers(s: Session, refs: Iterable[str] | None) -> list[str] | None:
    """Advertiser ids for ids or names given by an operator (case-insensitive names); None = all."""
    wanted = [r.strip() for r in (refs or ()) if r and r.strip()]
    if not wanted:
        return None
    rows = s.execute(select(Advertiser.id, Advertiser.name)).all()
    by_id = {r.id: r.id for r in rows}
    by_name = {r.name.casefold(): r.id for r in rows}
    out, missing = [], []
    for w in wanted:
        aid = by_id.get(w) or by_name.get(w.casefold())
        if aid is None:
            missing.append(w)
        else:
            out.append(aid)
    if missing:
        raise NotFound(f"unknown advertiser(s): {', '.join(missing)}")
    return sorted(set(out))


def open_exception_counts(s: Session, preinvoice_ids: Iterable[int] | None = None) -> dict[int, int]:
    q = (select(BillingException.preinvoice_id, func.count())
         .where(BillingException.state.in_(OPEN_EXCEPTION_STATES), BillingException.preinvoice_id.is_not(None))
         .group_by(BillingException.preinvoice_id))
    ids = set(preinvoice_ids) if preinvoice_ids is not None else None
    if ids is not None and len(ids) <= BIG_IN:
        q = q.where(BillingException.preinvoice_id.in_(ids))
    return {int(pid): int(n) for pid, n in s.execute(q) if pid is not None and (ids is None or pid in ids)}


def find_invoice(s: Session, number: str, legal_entity: str | None = None) -> Invoice:
    """The invoice or credit note with ``number`` (numbers are unique per legal entity)."""
    q = select(Invoice).where(Invoice.number == number)
    if legal_entity:
        q = q.where(Invoice.legal_entity_id == legal_entity)
    rows = list(s.execute(q).scalars())
    if not rows:
        raise NotFound(f"no invoice numbered {number}" + (f" for {legal_entity}" if legal_entity else ""))
    if len(rows) > 1:
        les = ", ".join(sorted(r.legal_entity_id for r in rows))
        raise Invalid(f"invoice number {number} exists for several legal entities ({les}); name one")
    return rows[0]
