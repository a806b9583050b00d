"""CLI commands (controls, issue 14): master-data change sets waiting for a second person
(``billbot changes list|show|approve|reject``)."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.groups import changes_app
from bot.cli.identity import APPROVER_ROLES, AsUser, acting_as
from bot.cli.output import emit_json, handle_errors, out_console


def _diff_lines(diff: list[dict[str, object]]) -> list[str]:
    return [f"  {d['kind']} {d['id']}: {d['field']} {d['before']} → {d['after']}" for d in diff]


@changes_app.command("list")
@handle_errors
def changes_list(
    state: Annotated[str | None, typer.Option(help="pending, approved or rejected (default: all).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Change sets of master data that move money: who made them, their diff, their state."""
    from bot.context import get_db
    from bot.workflows.change_sets import list_change_sets

    views = list_change_sets(get_db(), state=state)
    if json_out:
        emit_json([v.as_json() for v in views])
        return
    for v in views:
        out_console.print(f"#{v.id} {v.state:<8} by {v.author} ({v.source}): {len(v.diff)} change(s)", highlight=False)
    if not views:
        out_console.print("no change sets")


@changes_app.command("show")
@handle_errors
def changes_show(
    change_set_id: Annotated[int, typer.Argument(help="The change set's id.")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One change set with its before/after diff."""
    from bot.context import get_db
    from bot.workflows.change_sets import get_change_set

    v = get_change_set(get_db(), change_set_id)
    if json_out:
        emit_json(v.as_json())
        return
    decided = f", {v.state} by {v.decided_by}" if v.decided_by else ""
    out_console.print(f"change set #{v.id} ({v.state}{decided}), by {v.author} from {v.source}:", highlight=False)
    for line in _diff_lines(v.diff):
        out_console.print(line, highlight=False)


def _decide(change_set_id: int, decision: str, as_user: str | None, reason: str | None, json_out: bool) -> None:
    from bot.context import get_db, get_key
    from bot.workflows.change_sets import decide_change_set

    actor = acting_as(as_user, roles=APPROVER_ROLES, what=f"changes {decision}")
    cs = decide_change_set(get_db(), change_set_id=change_set_id, decision="approve" if decision == "approve"
                           else "reject", actor=actor, key=get_key(), reason=reason)
    if json_out:
        emit_json({"id": cs.id, "state": cs.state, "decided_by": cs.decided_by})
        return
    out_console.print(f"change set #{cs.id} {cs.state} by {actor}", highlight=False)


@changes_app.command("approve")
@handle_errors
def changes_approve(
    change_set_id: Annotated[int, typer.Argument(help="The change set's id.")],
    as_user: AsUser = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Apply a change set (an approver or finance manager other than its author)."""
    _decide(change_set_id, "approve", as_user, None, json_out)


@changes_app.command("reject")
@handle_errors
def changes_reject(
    change_set_id: Annotated[int, typer.Argument(help="The change set's id.")],
    reason: Annotated[str, typer.Option(help="Why (recorded and shown in Slack).")],
    as_user: AsUser = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Drop a change set: the master data keeps its values."""
    _decide(change_set_id, "reject", as_user, reason, json_out)
