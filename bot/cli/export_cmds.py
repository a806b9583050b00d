"""CLI commands (accounting export, issue 19): ``billbot export datev|beancount --period P -o FILE --as U…``,
``billbot export … --batch ID -o FILE`` (re-write a batch byte for byte), ``billbot export batches``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli.groups import app
from bot.cli.identity import AsUser, acting_as
from bot.cli.output import emit_json, handle_errors, out_console

export_app = typer.Typer(help="Hand invoices and credit notes to accounting: DATEV Buchungsstapel, Beancount.",
                         no_args_is_help=True)
app.add_typer(export_app, name="export")

Period = Annotated[str | None, typer.Option("--period", help="The issue-date period to export, e.g. 2026-10.")]
Output = Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the file "
                                             "(default: a name with entity, period and batch).")]
LegalEntityOpt = Annotated[str | None, typer.Option("--legal-entity", help="Which legal entity (when several).")]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Re-write this batch, byte for byte.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _export(fmt: str, *, period: str | None, output: Path | None, legal_entity: str | None, batch: int | None,
            json_out: bool, as_user: str | None) -> None:
    from datetime import UTC, datetime

    from bot.context import get_db, get_key
    from bot.exports import default_file_name, writer
    from bot.workflows.accounting import EXPORT_ROLES, export_accounting

    actor = acting_as(as_user, roles=EXPORT_ROLES, what=f"export {fmt}")
    res = export_accounting(get_db(), fmt=fmt, period=period, actor=actor, key=get_key(), now=datetime.now(UTC),
                            writer=writer(fmt), legal_entity_id=legal_entity, batch_id=batch)
    path = None
    if res.data is not None:
        path = output or Path(default_file_name(res.header))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(res.data)
    if json_out:
        emit_json({"format": res.format, "legal_entity": res.legal_entity, "period": res.period,
                   "batch": res.batch_id, "documents": res.documents, "bookings": res.bookings,
                   "file": str(path) if path else None,
                   "sha256": res.sha256, "rewritten": res.rewritten})
    elif path is None:
        out_console.print(f"{fmt}: nothing new to export for {res.legal_entity} {res.period} "
                          "(every document is in an earlier batch; --batch ID writes one again)", highlight=False)
    else:
        verb = "re-wrote" if res.rewritten else "exported"
        out_console.print(f"{fmt}: {verb} batch {res.batch_id} with {len(res.documents)} document(s) and "
                          f"{len(res.bookings)} payment/write-off booking(s) of "
                          f"{res.legal_entity} {res.period} to {path} (sha256 {(res.sha256 or '')[:16]}…)",
                          highlight=False)


@export_app.command("datev")
@handle_errors
def export_datev(period: Period = None, output: Output = None, legal_entity: LegalEntityOpt = None,  # noqa: PLR0917
                 batch: BatchOpt = None, json_out: JsonOpt = False, as_user: AsUser = None) -> None:
    """Write the period's documents not yet exported as a DATEV Buchungsstapel (EXTF, Windows-1252)."""
    _export("datev", period=period, output=output, legal_entity=legal_entity, batch=batch, json_out=json_out,
            as_user=as_user)


@export_app.command("beancount")
@handle_errors
def export_beancount(period: Period = None, output: Output = None,  # noqa: PLR0917
                     legal_entity: LegalEntityOpt = None, batch: BatchOpt = None, json_out: JsonOpt = False,
                     as_user: AsUser = None) -> None:
    """Write the period's documents not yet exported as a Beancount ledger."""
    _export("beancount", period=period, output=output, legal_entity=legal_entity, batch=batch,
            json_out=json_out, as_user=as_user)


@export_app.command("batches")
@handle_errors
def export_batches(fmt: Annotated[str | None, typer.Option("--format", help="datev or beancount.")] = None,
                   json_out: JsonOpt = False) -> None:
    """List the export batches."""
    from bot.context import get_db
    from bot.workflows.accounting import list_batches
    from storage.settings import local_time

    rows = list_batches(get_db(), fmt=fmt)
    if json_out:
        emit_json([{"id": b.id, "format": b.format, "legal_entity": b.legal_entity, "period": b.period,
                    "documents": b.documents, "sha256": b.sha256, "created_by": b.created_by,
                    "created_at": b.created_at} for b in rows])
        return
    for b in rows:
        out_console.print(f"{b.id}  {b.format:9} {b.legal_entity}  {b.period}  {b.documents} document(s)  "
                          f"by {b.created_by} at {local_time(b.created_at)}", highlight=False)
