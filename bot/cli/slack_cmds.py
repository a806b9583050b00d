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
    """Recompute the audit chain (hashes, links, Ed25519 signatures by the key each record names, from
    the key registry), the registry's hand-overs, the published anchors, and the business rows
    (invoices, credit notes, pre-invoices, decisions) against their latest audit record; name what is
    wrong. Read-only: it never creates a signing key."""
    from bot import context
    from bot.signing import load_key
    from bot.workflows.audit import check_anchors, check_registry, key_registry, verify_chain
    from bot.workflows.integrity import check_rows

    db = context.get_db()
    # read-only: never creates or changes a key; a missing key is an error naming it
    public = load_key(str(context.settings().key_path), generate=False).public_key()
    anchors = context.settings().anchor_path
    with db.read() as s:
        registry = key_registry(s)
        result = verify_chain(s, public, registry)
        problem = None
        if result.ok:
            problem = check_registry(s, registry) or check_anchors(s, anchors, public, registry)
        rows = check_rows(s) if result.ok and problem is None else []
    if problem is not None:
        typer.echo(f"audit log broken: {problem}", err=True)
        raise typer.Exit(1)
    if not result.ok:
        typer.echo(f"audit log broken at record {result.first_bad}: {result.problem}", err=True)
        raise typer.Exit(1)
    if rows:
        for r in rows:
            typer.echo(r, err=True)
        typer.echo(f"{len(rows)} row(s) differ from their audited state", err=True)
        raise typer.Exit(1)
    out_console.print(f"OK: {result.records} audit record(s) verified (hashes, chain, signatures by "
                      f"{len(registry)} registered key(s)); invoices, pre-invoices and decisions match "
                      "their audited state", highlight=False)


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
    """Write every public key of the registry (retired ones too, they signed older records and packs) as
    PEM, for an auditor verifying packs offline (`billbot evidence verify PACK --public-key FILE`).
    Read-only: never creates a key."""
    from billing.signatures import key_id
    from bot import context
    from bot.signing import load_key
    from bot.workflows.keys import export_pem, trusted_keys

    public = load_key(str(context.settings().key_path), generate=False).public_key()
    keys = trusted_keys(context.get_db(), public)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(export_pem(keys))
    ids = ", ".join(key_id(k) for k in keys)
    out_console.print(f"wrote {len(keys)} public key(s) ({ids}) to {output}", highlight=False)


@keys_app.command("rotate")
@handle_errors
def keys_rotate(
    as_user: AsUser = None,
    json_out: bool = typer.Option(False, "--json", help="Print the hand-over as JSON."),
) -> None:
    """Start a new signing key (an admin does): the hand-over is recorded in the audit log, signed by the
    old key; the old key stays in the registry so records and packs it signed still verify, but signs
    nothing more. In distributed mode, give every process the new key file."""
    from bot import context
    from bot.signing import install_key, load_key, stage_key
    from bot.workflows.keys import rotate

    actor = acting_as(as_user, roles=ADMIN_ROLES, what="keys rotate")
    path = context.settings().key_path
    old = load_key(str(path), generate=False)
    new, staged = stage_key(path)
    try:
        r = rotate(context.get_db(), old=old, new=new, actor=actor)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    install_key(staged, path)
    if json_out:
        emit_json({"old_key_id": r.old_key_id, "new_key_id": r.new_key_id, "record": r.record})
        return
    out_console.print(f"signing key {r.old_key_id} retired, {r.new_key_id} in force (hand-over: audit record "
                      f"{r.record}); export the keys for auditors with `billbot keys export`", highlight=False)


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
