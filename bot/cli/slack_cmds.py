"""CLI commands (slack): ``billbot audit verify`` and ``billbot users grant|revoke|list``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bot.cli.groups import audit_app, keys_app, users_app
from bot.cli.identity import ADMIN_ROLES, AsUser, acting_as, granting_as
from bot.cli.output import emit_json, handle_errors, out_console


@audit_app.command("verify")
@handle_errors
def audit_verify() -> None:
    """Recompute the audit chain (hashes, links, Ed25519 signatures); name the first broken record.
    Read-only: it never creates a signing key."""
    from bot import context
    from bot.signing import load_key
    from bot.workflows.audit import check_anchors, verify_chain

    db = context.get_db()
    # read-only: never creates or changes a key; a missing key is an error naming it
    public = load_key(str(context.settings().key_path), generate=False).public_key()
    anchors = context.settings().anchor_path
    with db.read() as s:
        result = verify_chain(s, public)
        cut = check_anchors(s, anchors, public) if result.ok else None
    if cut is not None:
        typer.echo(f"audit log broken: {cut}", err=True)
        raise typer.Exit(1)
    if result.ok:
        out_console.print(f"OK: {result.records} audit record(s) verified (hashes, chain, signatures)",
                          highlight=False)
        return
    typer.echo(f"audit log broken at record {result.first_bad}: {result.problem}", err=True)
    raise typer.Exit(1)


@audit_app.command("anchor")
@handle_errors
def audit_anchor(json_out: bool = typer.Option(False, "--json", help="Print the anchor as JSON.")) -> None:
    """Sign the chain head (sequence + hash) and append it to the anchor file (AUDIT_ANCHOR_PATH,
    default next to the key). The managers' digest publishes one every day."""
    from bot import context
    from bot.workflows.audit import publish_anchor

    with context.get_db().read() as s:
        anchor = publish_anchor(s, key=context.get_key(), path=context.settings().anchor_path)
    if json_out:
        emit_json(anchor)
    else:
        out_console.print(f"anchored record {anchor['seq']} ({anchor['hash'][:16]}…) in "
                          f"{context.settings().anchor_path}", highlight=False)


@keys_app.command("export")
@handle_errors
def keys_export(
    output: Annotated[Path, typer.Option("-o", "--output", help="The PEM file to write (public keys only).")],
) -> None:
    """Write the deployment's public signing key(s) as PEM, for an auditor verifying packs offline
    (`billbot evidence verify PACK --public-key FILE`). Read-only: never creates a key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from billing.signatures import key_id
    from bot import context
    from bot.signing import load_key

    public = load_key(str(context.settings().key_path), generate=False).public_key()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    out_console.print(f"wrote public key {key_id(public)} to {output}", highlight=False)


@users_app.command("grant")
@handle_errors
def users_grant(
    slack_id: str = typer.Argument(..., help="Slack user id, e.g. U123ABC"),
    role: str = typer.Argument(..., help="approver | finance_manager | operator | admin"),
    as_user: AsUser = None,
) -> None:
    """Give a Slack user a role (an admin does; the first admin is granted while there is none)."""
    from bot import context
    from bot.workflows.users import grant_role

    actor = granting_as(as_user, role=role, what="users grant")
    changed = grant_role(context.get_db(), slack_id, role, actor=actor, signing_key=context.get_key())
    out_console.print(f"{slack_id}: {role} {'granted' if changed else 'already held'}", highlight=False)


@users_app.command("revoke")
@handle_errors
def users_revoke(
    slack_id: str = typer.Argument(..., help="Slack user id"),
    role: str = typer.Argument(..., help="the role to take away"),
    as_user: AsUser = None,
) -> None:
    """Take a role from a Slack user (an admin does)."""
    from bot import context
    from bot.workflows.users import revoke_role

    actor = acting_as(as_user, roles=ADMIN_ROLES, what="users revoke")
    changed = revoke_role(context.get_db(), slack_id, role, actor=actor, signing_key=context.get_key())
    out_console.print(f"{slack_id}: {role} {'revoked' if changed else 'was not held'}", highlight=False)


@users_app.command("list")
@handle_errors
def users_list(as_json: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Slack users billbot knows, with their roles."""
    from bot import context
    from bot.workflows.users import list_users

    with context.get_db().read() as s:
        rows: list[dict[str, Any]] = [
            {"slack_id": u.slack_id, "name": u.name, "email": u.email, "roles": sorted(u.role_names),
             "profile_fetched_at": u.profile_fetched_at}
            for u in list_users(s)
        ]
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table("slack id", "name", "email", "roles")
    for r in rows:
        table.add_row(str(r["slack_id"]), str(r["name"] or ""), str(r["email"] or ""), ", ".join(r["roles"]))
    out_console.print(table)
