"""Schedules and the background roles: ``billbot schedule list|add|remove``, ``billbot worker``,
``billbot clock``, ``billbot sweep``, ``billbot digest``."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from billing.errors import Invalid
from bot.cli.groups import app, schedule_app
from bot.cli.identity import OPERATOR_ROLES, AsUser, acting_as
from bot.cli.output import check_output, emit_json, handle_errors, out_console
from storage.settings import local_time


def _actor(as_user: str | None, what: str) -> str:
    return acting_as(as_user, roles=OPERATOR_ROLES, what=what)


def _parse_args(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    problems = []
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            problems.append(f"--arg {p!r}: expected NAME=VALUE")
            continue
        out[k.strip()] = v.strip()
    if problems:
        raise Invalid(problems)
    return out


def schedule_json(row: Any) -> dict[str, Any]:
    from bot.scheduler import _trigger

    nxt = _trigger(row.cron, row.timezone).get_next_fire_time(None, datetime.now(UTC))
    return {
        "id": row.id, "name": row.name, "task": row.task, "args": row.args, "cron": row.cron,
        "timezone": row.timezone, "enabled": row.enabled, "created_by": row.created_by,
        "created_at": row.created_at, "last_fired_at": row.last_fired_at,
        "next_run_at": nxt.astimezone(UTC) if nxt else None,
    }


@schedule_app.command("list")
@handle_errors
def schedule_list(json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False) -> None:
    """List the cron schedules with their next run."""
    from bot.context import get_db
    from bot.workflows.schedules import list_schedules

    rows = [schedule_json(r) for r in list_schedules(get_db())]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        out_console.print("no schedules")
    for r in rows:
        args = " ".join(f"{k}={v}" for k, v in sorted(r["args"].items()))
        nxt = local_time(r["next_run_at"], empty="-")
        out_console.print(f"{r['id']:>4}  {r['cron']:<16} {r['timezone']:<14} {r['task']} {args}  next {nxt}",
                          highlight=False, soft_wrap=True)


@schedule_app.command("add")
@handle_errors
def schedule_add(  # noqa: PLR0917 - Typer options
    task: Annotated[str, typer.Option("--task", help="sync | billing_run | digest | sla_sweep | accounting_export")],
    cron: Annotated[str, typer.Option("--cron", help='5-field crontab, e.g. "0 2 * * *"')],
    arg: Annotated[list[str] | None, typer.Option("--arg", help="NAME=VALUE, repeatable (source=tracker)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Label shown in listings.")] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="Time zone of the cron (default BILLBOT_TIMEZONE).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the schedule as JSON.")] = False,
    as_user: AsUser = None,
) -> None:
    """Add a schedule. Adding the same task, arguments and cron again changes nothing."""
    from bot.context import get_db, get_key, settings
    from bot.workflows.schedules import add_schedule, find_schedule

    actor = _actor(as_user, "schedule add")
    args = _parse_args(arg or [])
    db = get_db()
    existed = find_schedule(db, task=task, args=args, cron=cron) is not None
    row = add_schedule(db, task=task, args=args, cron=cron, name=name, actor=actor, signing_key=get_key(),
                       timezone=timezone or settings().timezone)
    if json_out:
        emit_json({**schedule_json(row), "created": not existed})
    else:
        out_console.print(f"schedule {row.id} {'already existed' if existed else 'added'}: {row.cron} {row.task}",
                          highlight=False, soft_wrap=True)


@schedule_app.command("remove")
@handle_errors
def schedule_remove(schedule_id: Annotated[int, typer.Argument(help="Schedule id (see `schedule list`).")],
                    as_user: AsUser = None) -> None:
    """Remove a schedule."""
    from bot.context import get_db, get_key
    from bot.workflows.schedules import remove_schedule

    row = remove_schedule(get_db(), schedule_id, actor=_actor(as_user, "schedule remove"), signing_key=get_key())
    out_console.print(f"schedule {row.id} removed ({row.cron} {row.task})", highlight=False)


def _distributed_only(role: str) -> None:
    from bot.context import settings

    if not settings().db_url.startswith("postgresql"):
        raise Invalid(f"DATABASE_URL: `billbot {role}` needs PostgreSQL (postgresql+psycopg://…); "
                      "in embedded mode `billbot serve` runs jobs and schedules itself")
    os.environ["BILLBOT_MODE"] = "distributed"  # this role only makes sense distributed


@app.command("worker")
@handle_errors
def worker(  # noqa: PLR0917 - Typer options
    queue: Annotated[list[str] | None, typer.Option("--queue", "-q", help="Queues to serve (default: all).")] = None,
    concurrency: Annotated[int, typer.Option(help="Jobs run at once by this worker.")] = 1,
    name: Annotated[str | None, typer.Option(help="Worker name in logs.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Exit when the queues are empty.")] = False,
    heartbeat: Annotated[float, typer.Option(help="Seconds between heartbeats.")] = 10.0,
    stalled_after: Annotated[
        float, typer.Option(help="A worker silent this long is dead; its jobs are retried.")
    ] = 30.0,
    import_: Annotated[list[str] | None, typer.Option("--import", help="Extra modules registering tasks.")] = None,
) -> None:
    """Distributed mode: a Procrastinate worker on PostgreSQL (run as many as you like)."""
    import importlib
    import logging

    from bot import jobs, runtime
    from bot.context import get_db

    _distributed_only("worker")
    for m in import_ or []:
        importlib.import_module(m)  # a deployment's own task modules, named on the command line
    get_db()  # migrate our schema
    jobs.apply_schema()
    # decisions, runs and PDFs it runs are told in Slack (messages, updates, uploads)
    runtime.wire("decider" if queue == ["decisions"] else "worker")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    jobs.run_worker(queues=queue or None, concurrency=concurrency, name=name, wait=not once,
                    heartbeat=heartbeat, stalled_after=stalled_after)


@app.command("clock")
@handle_errors
def clock() -> None:
    """Distributed mode: the ONE clock process — runs the schedules and the SLA sweep, only enqueues."""
    import logging

    from bot import jobs, runtime
    from bot.scheduler import run_clock

    _distributed_only("clock")
    runtime.wire("clock")
    jobs.apply_schema()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_clock(stop)


@app.command("sweep")
@handle_errors
def sweep_cmd(json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False) -> None:
    """Run one SLA sweep now: remind and escalate what is due (safe next to a running clock)."""
    from bot.context import get_db, get_key
    from bot.slack.client import get_client
    from bot.slack.sla import sweep

    res = sweep(get_db(), now=datetime.now(UTC), client=get_client(), key=get_key())
    if json_out:
        emit_json({"reminded": res.reminded, "escalated": res.escalated, "failed": res.failed})
        return
    out_console.print(f"reminded {len(res.reminded)}, escalated {len(res.escalated)}", highlight=False)
    for f in res.failed:
        out_console.print(f"failed: {f}", highlight=False)
    if res.failed:
        raise typer.Exit(1)


@app.command("digest")
@handle_errors
def digest_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the digest as text; post nothing.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With --dry-run: the Block Kit JSON instead.")] = False,
    chart: Annotated[str | None, typer.Option("--chart", help="Also write the chart PNG to this file.")] = None,
    as_user: AsUser = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the --chart file if it exists.")] = False,
) -> None:
    """Send the managers' digest now (or show it with --dry-run)."""
    from pathlib import Path

    from bot.context import get_db, get_key
    from bot.context import settings as current_settings
    from bot.slack.client import get_client
    from bot.slack.digest import send_digest

    if chart:
        check_output(Path(chart), force=force)
    if not dry_run and not current_settings().slack_bot_token:
        raise Invalid(["SLACK_BOT_TOKEN: not set — the digest is posted to Slack; set SLACK_BOT_TOKEN "
                       "(and SLACK_API_URL for a local workspace), or look at it with --dry-run"])
    actor = "cli:dry-run" if dry_run else _actor(as_user, "digest")  # a dry run changes nothing
    res = send_digest(get_db(), now=datetime.now(UTC), client=None if dry_run else get_client(), key=get_key(),
                      dry_run=dry_run, actor=actor)
    if chart:
        Path(chart).write_bytes(res.chart_png)
    if dry_run and json_out:
        emit_json({"text": res.text, "blocks": res.blocks, "chart_bytes": len(res.chart_png)})
        return
    if dry_run:
        from bot.blocks.text import blocks_as_text

        out_console.print(blocks_as_text(res.blocks), highlight=False, soft_wrap=True, markup=False, emoji=False)
        out_console.print(f"(dry run: nothing posted; the chart, {len(res.chart_png):,} bytes, "
                          + (f"written to {chart})" if chart else "with --chart FILE)"), highlight=False)
        return
    out_console.print(f"digest posted to {res.channel} (ts {res.ts})", highlight=False)
    for p in res.problems:
        out_console.print(f"warning: {p}", highlight=False)
