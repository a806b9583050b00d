"""CLI commands: ``sync standard|partial|status``, ``import report|logs``, ``quarantine list``.

``--json`` prints one object per run (``sync_run_id``, ``source``, ``mode``, ``state``, ``inserted``,
``updated``, ``unchanged``, ``quarantined``, ``duplicates``, ``ignored``, ``by_kind``, watermarks,
``data_until``, ``log``); ``sync standard|partial`` without ``--source`` syncs every configured tracker
and prints a JSON array. ``sync status --json`` and ``quarantine list --json`` print arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bot.cli.groups import import_app, quarantine_app, sync_app
from bot.cli.identity import OPERATOR_ROLES, AsUser, acting_as
from bot.cli.output import emit_json, handle_errors, out_console
from storage.settings import local_time

SourceOpt = Annotated[str | None, typer.Option("--source", "-s", help="Source name (BILLBOT_SOURCE_<NAME>_*).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _actor(as_user: str | None, what: str) -> str:
    return acting_as(as_user, roles=OPERATOR_ROLES, what=what)


def _print_result(res: dict[str, Any]) -> None:
    out_console.print(
        f"sync #{res['sync_run_id']} {res['source']} ({res['mode']}): {res['inserted']} inserted, "
        f"{res['updated']} updated, {res['unchanged']} unchanged, {res['quarantined']} quarantined"
        + (f", {res['duplicates']} duplicates" if res.get("duplicates") else "")
        + (f", {res['ignored']} ignored" if res.get("ignored") else "")
        + (f"; data until {res['data_until']}" if res.get("data_until") else ""),
        highlight=False,
    )
    if res["quarantined"]:
        out_console.print(f"  see `billbot quarantine list --source {res['source']}`", highlight=False)


def _sync(mode: str, source: str | None, json_out: bool, as_user: str | None) -> None:
    from billing.errors import Invalid
    from bot.cli.output import progress
    from bot.context import get_db, get_key
    from bot.workflows.sync import run_sync
    from storage.sources import configured_sources

    names = [source] if source else configured_sources("hasoffers")
    if not names:
        raise Invalid("no tracker source configured: set BILLBOT_SOURCE_<NAME>_KIND=hasoffers and "
                      "BILLBOT_SOURCE_<NAME>_URL / _TOKEN, or pass --source")
    actor = _actor(as_user, f"sync {mode}")
    db, key = get_db(), get_key()
    results = []
    for name in names:
        with progress(f"{mode} sync of {name}", None, quiet=json_out) as advance:
            res = run_sync(db, source=name, mode=mode, actor=actor, signing_key=key,
                           on_progress=lambda _stage, _page, _count: advance(1))
        results.append(res.as_dict())
        if not json_out:
            _print_result(results[-1])
    if json_out:
        emit_json(results[0] if source else results)


@sync_app.command("standard")
@handle_errors
def sync_standard(source: SourceOpt = None, json_out: JsonOpt = False, as_user: AsUser = None) -> None:
    """Pull employees, advertisers, affiliates, stats and conversions (and re-check pending ones)."""
    _sync("standard", source, json_out, as_user)


@sync_app.command("partial")
@handle_errors
def sync_partial(source: SourceOpt = None, json_out: JsonOpt = False, as_user: AsUser = None) -> None:
    """Pull stats and re-check pending conversions."""
    _sync("partial", source, json_out, as_user)


@sync_app.command("status")
@handle_errors
def sync_status_cmd(json_out: JsonOpt = False) -> None:
    """The last successful sync per source and how old its data is."""
    from bot.context import get_db
    from bot.workflows.sync import sync_status

    rows = sync_status(get_db())
    if json_out:
        emit_json(rows)
        return
    if not rows:
        out_console.print("no sources yet")
    for r in rows:
        running = f" — sync #{r['running']['sync_run_id']} running" if r["running"] else ""
        when = local_time(r["last_success_at"], empty="never")
        until = r["data_until"].isoformat() if r["data_until"] else "—"
        out_console.print(f"{r['source']}: last success {when}, data until {until}{running}", highlight=False)


@import_app.command("report")
@handle_errors
def import_report_cmd(  # noqa: PLR0917 - Typer maps parameters to options
    file: Annotated[Path, typer.Argument(help="Google Ad Manager report (.csv or .xlsx).")],
    source: Annotated[str, typer.Option("--source", "-s", help="Source name the report comes from.")],
    third_party: Annotated[bool, typer.Option("--third-party", help="Figures of the client / an auditor.")] = False,
    decimal: Annotated[str | None, typer.Option(
        "--decimal", help="The decimal separator of a UI export (',' or '.') when its numbers do not tell.")] = None,
    json_out: JsonOpt = False,
    as_user: AsUser = None,
) -> None:
    """Import an ad-server delivery report (.csv, .tsv, .csv.gz, .xlsx); line item ids map to campaign items
    via external_ids."""
    from bot.context import get_db, get_key
    from bot.workflows.sync import import_report

    res = import_report(get_db(), path=file, source=source, third_party=third_party,
                        actor=_actor(as_user, "import report"),
                        signing_key=get_key(), decimal=decimal).as_dict()
    emit_json(res) if json_out else _print_result(res)


@import_app.command("logs")
@handle_errors
def import_logs_cmd(
    file: Annotated[Path, typer.Argument(help="Server log (combined log format or JSON lines).")],
    source: Annotated[str, typer.Option("--source", "-s", help="Source name of the log.")],
    rule: Annotated[Path | None, typer.Option("--rule", help="YAML rule: which requests are billable events.")] = None,
    json_out: JsonOpt = False,
    as_user: AsUser = None,
) -> None:
    """Import billable events (default: successful POST /test-drive/bookings; repeats count once)."""
    from bot.context import get_db, get_key
    from bot.workflows.sync import import_logs

    res = import_logs(get_db(), path=file, source=source, rule=rule, actor=_actor(as_user, "import logs"),
                      signing_key=get_key()).as_dict()
    emit_json(res) if json_out else _print_result(res)


@quarantine_app.command("list")
@handle_errors
def quarantine_list_cmd(source: SourceOpt = None, json_out: JsonOpt = False) -> None:
    """Rows that could not be imported: source, location (file:line or page:row), reason, raw text."""
    from bot.context import get_db
    from bot.workflows.sync import quarantine_list

    rows = quarantine_list(get_db(), source=source)
    if json_out:
        emit_json(rows)
        return
    if not rows:
        out_console.print("quarantine is empty")
    for r in rows:
        out_console.print(f"{r['source']} {r['location']}: {r['reason']}\n    {r['raw'][:200]}", highlight=False)
