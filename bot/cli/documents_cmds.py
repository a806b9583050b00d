"""CLI commands (documents): ``billbot invoices pdf NUMBER -o FILE``, ``billbot evidence NUMBER -o FILE.zip``,
``billbot evidence verify FILE.zip``."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from bot.cli.groups import app, invoices_app
from bot.cli.output import check_output, emit_json, fail, handle_errors, out_console


class _DefaultCommandGroup(TyperGroup):
    """``billbot evidence NUMBER …`` runs the hidden ``create`` command; ``billbot evidence verify …``
    runs ``verify``. (A group callback taking NUMBER would swallow the word ``verify``.)"""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["create", *args]
        return super().resolve_command(ctx, args)


evidence_app = typer.Typer(
    cls=_DefaultCommandGroup,
    help="Evidence packs: `billbot evidence NUMBER -o FILE.zip`, `billbot evidence verify FILE.zip`.",
    no_args_is_help=True,
)
app.add_typer(evidence_app, name="evidence")


def _invoice_id(number: str, legal_entity: str | None) -> int:
    from bot.context import get_db
    from storage.queries import find_invoice

    with get_db().read() as s:
        return find_invoice(s, number, legal_entity).id


@invoices_app.command("pdf")
@handle_errors
def invoices_pdf(  # noqa: PLR0917 - Typer maps parameters to options
    number: Annotated[str, typer.Argument(help="Invoice or credit note number, e.g. INV-2026-000123.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the PDF.")],
    legal_entity: Annotated[str | None, typer.Option("--legal-entity", help="When several entities use the number.")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
    render_again: Annotated[bool, typer.Option("--render-again", help="Render again even if a PDF was recorded.")]
    = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Write the invoice's PDF/A-3b (with its Factur-X XML) to FILE, rendering it if needed. FILE's
    folder must exist; an existing FILE is overwritten only with --force."""
    from bot.context import documents_dir, get_db, get_key, pdf_renderer
    from bot.workflows.documents import render_invoice_pdf

    invoice_id = _invoice_id(number, legal_entity)
    check_output(output, force=force)
    path = render_invoice_pdf(get_db(), invoice_id, renderer=pdf_renderer(),
                              out_dir=documents_dir(), key=get_key(), force=render_again)
    if output.resolve() != path.resolve():
        shutil.copyfile(path, output)
    data = output.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if json_out:
        emit_json({"number": number, "file": str(output), "bytes": len(data), "sha256": sha})
    else:
        out_console.print(f"{number}: wrote {output} ({len(data)} bytes, sha256 {sha[:16]}…)")


@evidence_app.command("create", hidden=True)
@handle_errors
def evidence_create(
    number: Annotated[str, typer.Argument(help="Invoice or credit note number.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The zip to write.")],
    legal_entity: Annotated[str | None, typer.Option("--legal-entity", help="When several entities use the number.")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Write the evidence pack of NUMBER: PDF, XML, source rows, manifest, signed decisions, SHA256SUMS."""
    from bot.context import documents_dir, get_db, get_key, pdf_renderer
    from bot.workflows.evidence import build_evidence_pack

    check_output(output, force=force)
    path = build_evidence_pack(get_db(), number, output, renderer=pdf_renderer(), out_dir=documents_dir(),
                               legal_entity=legal_entity, key=get_key())
    data = path.read_bytes()
    result = {"number": number, "file": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if json_out:
        emit_json(result)
    else:
        out_console.print(f"{number}: wrote {path} ({len(data)} bytes)")


@evidence_app.command("verify")
@handle_errors
def evidence_verify(
    file: Annotated[Path, typer.Argument(help="An evidence pack written by `billbot evidence NUMBER -o FILE`.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check an evidence pack: hashes, canonical archive, signatures, embedded XML. Exit 1 if it fails."""
    from bot.workflows.evidence import verify_evidence_pack

    if not file.is_file():
        fail(f"{file}: no such file", code=2)
    problems = verify_evidence_pack(file)
    if json_out:
        emit_json({"file": str(file), "ok": not problems, "problems": problems})
        if problems:
            raise typer.Exit(1)
        return
    if problems:
        for p in problems:
            out_console.print(f"[red]✗[/red] {p}", highlight=False)
        fail(f"{file}: evidence pack does not verify ({len(problems)} problem(s))")
    out_console.print(f"[green]✓[/green] {file}: evidence pack verifies")
