"""Immutability of finalized documents and of the audit log, enforced by the ORM.

On PostgreSQL a trigger (created by the initial migration) refuses the same updates at the
database level, so even raw SQL cannot rewrite an issued invoice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from billing.errors import NotAllowed
from storage.models import AuditLog, Invoice, InvoiceLine

# Rendering bookkeeping may change after issue; nothing of legal content may.
MUTABLE_INVOICE_COLUMNS = frozenset({"pdf_state", "pdf_path", "pdf_sha256", "pdf_attempts", "pdf_error"})


@event.listens_for(Session, "before_flush")
def _refuse_rewrites(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in session.dirty:
        if isinstance(obj, Invoice):
            state = inspect(obj)
            changed = {a.key for a in state.attrs if a.history.has_changes()}
            bad = changed - MUTABLE_INVOICE_COLUMNS - {"lines", "advertiser", "legal_entity"}
            if bad:
                raise NotAllowed(
                    f"invoice {obj.number} is immutable (tried to change {', '.join(sorted(bad))})",
                    code="immutable",
                )
        elif isinstance(obj, InvoiceLine | AuditLog):
            if session.is_modified(obj, include_collections=False):
                raise NotAllowed(f"{type(obj).__name__} rows are append-only", code="immutable")
    for obj in session.deleted:
        if isinstance(obj, Invoice | InvoiceLine | AuditLog):
            raise NotAllowed(f"{type(obj).__name__} rows are never deleted", code="immutable")


PG_TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION billbot_refuse_rewrite() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME;
  END IF;
  IF TG_TABLE_NAME = 'invoices' THEN
    IF (to_jsonb(NEW) - ARRAY['pdf_state','pdf_path','pdf_sha256','pdf_attempts','pdf_error'])
       IS DISTINCT FROM (to_jsonb(OLD) - ARRAY['pdf_state','pdf_path','pdf_sha256','pdf_attempts','pdf_error']) THEN
      RAISE EXCEPTION 'invoice % is immutable', OLD.number;
    END IF;
    RETURN NEW;
  END IF;
  RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER invoices_immutable BEFORE UPDATE OR DELETE ON invoices
  FOR EACH ROW EXECUTE FUNCTION billbot_refuse_rewrite();
CREATE TRIGGER invoice_lines_immutable BEFORE UPDATE OR DELETE ON invoice_lines
  FOR EACH ROW EXECUTE FUNCTION billbot_refuse_rewrite();
CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION billbot_refuse_rewrite();
"""
