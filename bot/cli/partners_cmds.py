"""CLI commands (partners, issue 19): ``billbot partners list [--json]`` and
``billbot partners statement PARTNER --period P -o FILE [--json]`` (the partner's monthly statement PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli.groups import app
from bot.cli.output import check_output, emit_json, handle_errors, out_console

partners_app = typer.Typer(help="Sales partners and their branches: list them, write a partner's statement.",
                           no_args_is_help=True)
app.add_typer(partners_app, name="partners")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@partners_app.command("list")
@handle_errors
def partners_list(json_out: JsonOpt = False) -> None:
    """List the partners: invoicing (per_branch or consolidated), head office, number of branches."""
    from bot.context import get_db
    from bot.workflows.partners import list_partners

    rows = list_partners(get_db())
    if json_out:
        emit_json(rows)
        return
    for p in rows:
        out_console.print(f"{p['id']}  {p['name']}  {p['invoicing']}  {p['branches']} branch(es)", highlight=False)


@partners_app.command("statement")
@handle_errors
def partners_statement(
    partner: Annotated[str, typer.Argument(help="The partner's id (billbot partners list).")],
    period: Annotated[str, typer.Option("--period", help="The month, e.g. 2026-10.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the PDF.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write the partner's statement for the period as a PDF: every invoice and credit note of its branches
    (per-branch or consolidated) with totals per currency."""
    from bot.context import get_db
    from bot.documents.statements import render_statement
    from bot.workflows.partners import partner_statement

    check_output(output, force=force)
    st = partner_statement(get_db(), partner, period=period)
    output.write_bytes(render_statement(st))
    if json_out:
        emit_json({**st.as_json(), "file": str(output)})
        return
    out_console.print(f"statement of {st.partner_name} for {st.period}: {len(st.rows)} document(s) of "
                      f"{len(st.branches)} branch(es) written to {output}", highlight=False)
