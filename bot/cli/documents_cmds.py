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
from bot.cli.identity import OPERATOR_ROLES, AsUser, acting_as
from bot.cli.output import check_output, emit_json, err_console, fail, handle_errors, out_console


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
    number: Annotated[str | None, typer.Argument(help="Invoice or credit note number, e.g. INV-2026-000123.")]
    = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write the PDF.")] = None,
    legal_entity: Annotated[str | None, typer.Option("--legal-entity", help="When several entities use the number.")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
    render_again: Annotated[bool, typer.Option("--render-again", help="Render again even if a PDF was recorded.")]
    = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Render every PDF that failed again.")]
    = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    as_user: AsUser = None,
) -> None:
    """Write the invoice's PDF/A-3b (with its Factur-X XML) to FILE, rendering it if needed (FILE's
    folder must exist; an existing FILE is overwritten only with --force); or, with --retry-failed,
    render every failed PDF again and say which still fail and why."""
    from bot.context import documents_dir, get_db, get_key, pdf_renderer
    from bot.workflows.documents import render_invoice_pdf

    if retry_failed:  # changes state (failed → pending, audited): an operator's act
        _retry_failed(json_out, acting_as(as_user, roles=OPERATOR_ROLES, what="invoices pdf --retry-failed"))
        return
    if number is None or output is None:
        from billing.errors import Invalid

        raise Invalid("give an invoice NUMBER and -o FILE, or --retry-failed")
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


@invoices_app.command("send")
@handle_errors
def invoices_send(  # noqa: PLR0917 - Typer maps parameters to options
    number: Annotated[str | None, typer.Argument(help="Invoice or credit note number, e.g. INV-2026-000123.")]
    = None,
    resend: Annotated[bool, typer.Option("--resend", help="Mail it again although it was sent.")] = False,
    unsent: Annotated[bool, typer.Option("--unsent", help="Mail every invoice never mailed yet (a month's close: "
                                         "one transaction for the claims, one SMTP connection).")] = False,
    legal_entity: Annotated[str | None, typer.Option("--legal-entity", help="When several entities use the number.")]
    = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    as_user: AsUser = None,
) -> None:
    """Mail the invoice to the advertiser's invoice addresses now (SMTP_URL, MAIL_FROM), or with --unsent
    every invoice never mailed (those of ``dispatch: none`` advertisers stay unmailed). An invoice already
    sent is mailed again only with --resend; a failure exits 1 and says the server's answer."""
    from dataclasses import asdict

    from billing.errors import Invalid
    from bot.context import documents_dir, get_db, get_key, pdf_renderer, settings
    from bot.mail import sender_from_settings
    from bot.workflows.dispatch import dispatch_invoice

    actor = acting_as(as_user, roles=OPERATOR_ROLES, what="invoices send")
    if (number is None) == (not unsent) or (unsent and resend):
        raise Invalid("give an invoice NUMBER (optionally --resend), or --unsent for every invoice not mailed yet")
    sender = sender_from_settings()
    if sender is None:
        raise Invalid("SMTP_URL is not set: say which mail server sends invoices (smtp://host:port)")
    st = settings()
    if unsent:
        _send_unsent(sender, actor, json_out)
        return
    assert number is not None
    outcome = dispatch_invoice(get_db(), _invoice_id(number, legal_entity), sender=sender, renderer=pdf_renderer(),
                               out_dir=documents_dir(), mail_from=st.mail_from, key=get_key(), actor=actor,
                               resend=resend, attempts=st.dispatch_attempts, retry_delay=st.dispatch_retry_seconds,
                               evidence_url=st.evidence_base_url or None)
    if json_out:
        emit_json({**asdict(outcome), "to": list(outcome.to), "cc": list(outcome.cc)})
    elif outcome.state == "sent":
        out_console.print(f"{outcome.number}: sent to {', '.join(outcome.to)}"
                          + (f" (cc {', '.join(outcome.cc)})" if outcome.cc else "")
                          + f", Message-ID {outcome.message_id}", highlight=False)
    elif outcome.state == "skipped":
        out_console.print(f"{outcome.number}: not sent: {outcome.note}"
                          + (" (--resend mails it again)" if outcome.note == "already sent" else ""), highlight=False)
    if outcome.state == "failed":
        fail(f"{outcome.number} could not be delivered: {outcome.error}")


def _send_unsent(sender: Any, actor: str, json_out: bool) -> None:
    from dataclasses import asdict

    from bot.context import documents_dir, get_db, get_key, pdf_renderer, settings
    from bot.workflows.dispatch import dispatch_many, unsent_invoices

    st = settings()
    db = get_db()
    ids = unsent_invoices(db)
    outcomes = []
    for i in range(0, len(ids), SEND_BATCH):
        outcomes += dispatch_many(db, ids[i:i + SEND_BATCH], sender=sender, renderer=pdf_renderer(),
                                  out_dir=documents_dir(), mail_from=st.mail_from, key=get_key(), actor=actor,
                                  attempts=st.dispatch_attempts, retry_delay=st.dispatch_retry_seconds,
                                  evidence_url=st.evidence_base_url or None)
        if not json_out:
            err_console.print(f"mailed {min(i + SEND_BATCH, len(ids))} of {len(ids)} invoices…", highlight=False)
    failed = [o for o in outcomes if o.state == "failed"]
    if json_out:
        emit_json([{**asdict(o), "to": list(o.to), "cc": list(o.cc)} for o in outcomes])
    else:
        counts = {k: sum(1 for o in outcomes if o.state == k) for k in ("sent", "failed", "skipped")}
        out_console.print(f"{counts['sent']} sent, {counts['failed']} failed, {counts['skipped']} not mailed "
                          f"(of {len(ids)} never mailed before)", highlight=False)
        for o in outcomes:
            if o.state == "skipped":
                out_console.print(f"  {o.number}: not sent: {o.note}", highlight=False)
    if failed:
        fail("; ".join(f"{o.number} could not be delivered: {o.error}" for o in failed))


#: invoices claimed, mailed and recorded together by ``invoices send --unsent``
SEND_BATCH = 200


def _retry_failed(json_out: bool, actor: str) -> None:
    from datetime import UTC, datetime

    from bot.context import documents_dir, get_db, get_key, pdf_renderer
    from bot.workflows.documents import RenderFailed, render_invoice_pdf, retry_failed_pdfs
    from bot.workflows.invoice_uploads import invoice_numbers

    db = get_db()
    ids = retry_failed_pdfs(db, actor=actor, key=get_key(), now=datetime.now(UTC))
    numbers = invoice_numbers(db, ids)
    results: list[dict[str, Any]] = []
    for iid in ids:
        try:
            path = render_invoice_pdf(db, iid, renderer=pdf_renderer(), out_dir=documents_dir(), key=get_key())
            results.append({"number": numbers[iid], "state": "done", "file": str(path), "error": None})
        except RenderFailed as e:
            results.append({"number": numbers[iid], "state": "failed", "file": None, "error": e.message})
    if json_out:
        emit_json(results)
    else:
        for r in results:
            out_console.print(f"{r['number']}: {r['file']}" if r["state"] == "done"
                              else f"{r['number']}: failed again: {r['error']}", highlight=False)
        out_console.print(f"{len(results)} failed PDF(s) retried, "
                          f"{sum(r['state'] == 'done' for r in results)} rendered", highlight=False)
    if any(r["state"] != "done" for r in results):
        raise typer.Exit(1)


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


def _trusted_keys(public_key: Path | None) -> list[Any]:
    """The keys a pack must be signed by: those in ``--public-key`` (one or more PEM blocks), else the
    deployment's key registry (every key, retired ones too) and its current key (read-only: a missing
    key is an error naming it, never generated)."""
    import re

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if public_key is None:
        from bot.context import get_db, settings
        from bot.signing import load_key
        from bot.workflows.keys import trusted_keys

        return trusted_keys(get_db(), load_key(str(settings().key_path), generate=False).public_key())
    if not public_key.is_file():
        fail(f"--public-key {public_key}: no such file", code=2)
    blocks = re.findall(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", public_key.read_bytes(), re.S)
    keys = []
    for b in blocks:
        try:
            k = load_pem_public_key(b)
        except ValueError:
            fail(f"--public-key {public_key}: not a PEM public key", code=2)
        if not isinstance(k, Ed25519PublicKey):
            fail(f"--public-key {public_key}: not an Ed25519 key", code=2)
        keys.append(k)
    if not keys:
        fail(f"--public-key {public_key}: no PEM public key in it", code=2)
    return keys


@evidence_app.command("verify")
@handle_errors
def evidence_verify(
    file: Annotated[Path, typer.Argument(help="An evidence pack written by `billbot evidence NUMBER -o FILE`.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="PEM public key(s) to trust (`billbot keys export`), for an auditor without "
                             "database access; default: every key of the deployment's registry.")] = None,
) -> None:
    """Check an evidence pack: a valid signature by a trusted key, hashes, canonical archive, audit
    signatures, embedded XML. Exit 1 if it fails."""
    from bot.workflows.evidence import verify_evidence_pack

    if not file.is_file():
        fail(f"{file}: no such file", code=2)
    problems = verify_evidence_pack(file, trusted=_trusted_keys(public_key))
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
