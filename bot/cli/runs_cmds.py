"""`billbot runs list|show`: past billing runs with their totals and job log (Billoid's "Job" tab),
and the run summary that `billbot cycle` and `billbot run` print instead of the whole job log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from bot.cli.groups import app
from bot.cli.output import emit_json, handle_errors, out_console
from bot.workflows.run_reports import Converted, RunReport

runs_app = typer.Typer(help="Past billing runs: totals and job log.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def money(value: Decimal) -> str:
    """The one number format of the CLI tables: grouped, two decimals (``1,234.50``)."""
    return f"{value.quantize(Decimal('0.01')):,}"


def totals(t: Mapping[str, Decimal]) -> str:
    return " · ".join(f"{money(v)} {c}" for c, v in t.items()) or "—"


def _conv(c: Converted | None, t: Mapping[str, Decimal]) -> str:
    if c is None or not t or list(t) == [c.currency]:
        return ""
    missing = f" (without {', '.join(c.missing)}: no rate)" if c.missing else ""
    return f"  ≈ {money(c.amount)} {c.currency}{missing}"


def summary_lines(r: RunReport) -> list[str]:
    """The run's totals in a few lines (``billbot cycle``, ``run``, ``runs show``)."""
    out = [
        f"Billing run {r.run_id} for {r.period}: {r.state}",
        f"  Invoices created         {r.created:>6,}   net {totals(r.net)}{_conv(r.net_reporting, r.net)}",
        f"  Skipped below threshold  {r.skipped:>6,}   {totals(r.skipped_totals)}"
        f"{_conv(r.skipped_reporting, r.skipped_totals)}",
        f"  Held                     {r.held:>6,}   {totals(r.held_totals)}{_conv(r.held_reporting, r.held_totals)}",
    ]
    if r.problems:
        out.append("  Problems: " + "; ".join(r.problems[:6]) + (f"; … and {len(r.problems) - 6} more"
                                                                  if len(r.problems) > 6 else ""))
    return out


def write_log(lines: Sequence[str], name: str) -> Path:
    """The full job log of a CLI run as a file under ``<var>/logs/`` (named with the time, never reused)."""
    from bot.context import settings

    folder = settings().var_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.log"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def print_run_summary(run_id: int | None, log: Sequence[str], *, name: str, verbose: bool) -> None:
    """The run's totals; the job log printed with ``--verbose``, else written to a file that is named."""
    from bot.context import get_db
    from bot.workflows.run_reports import run_report

    if verbose:
        out_console.print("\nJob log:", highlight=False)
        for line in log:
            out_console.print(f"  {line}", highlight=False, soft_wrap=True)
    if run_id is not None:
        with get_db().read() as s:
            report = run_report(s, run_id, with_log=False)
        out_console.print("")
        for line in summary_lines(report):
            out_console.print(line, highlight=False, soft_wrap=True)
    if not verbose and log:
        path = write_log(log, name)
        out_console.print(f"Full job log ({len(log):,} lines): {path} (or --verbose to print it)", highlight=False,
                          soft_wrap=True)


@runs_app.command("list")
@handle_errors
def runs_list(
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The last billing runs with their totals."""
    from bot.context import get_db
    from bot.workflows.run_reports import recent_runs

    with get_db().read() as s:
        reports = recent_runs(s, limit=limit)
    if json_out:
        emit_json([r.as_json() for r in reports])
        return
    if not reports:
        out_console.print("no billing runs yet")
        return
    rc = reports[0].net_reporting.currency
    out_console.print(f"{'RUN':>5}  {'PERIOD':<10} {'STATE':<7} {'STARTED (UTC)':<16} {'BY':<14} {'INVOICES':>8} "
                      f"{'NET ' + rc:>16} {'SKIPPED':>7} {'HELD':>6}  PROBLEMS", highlight=False)
    for r in reports:
        net = money(r.net_reporting.amount) + ("*" if r.net_reporting.missing else "")
        out_console.print(
            f"{r.run_id:>5}  {r.period:<10} {r.state:<7} {r.started_at:%Y-%m-%d %H:%M} {(r.started_by or '')[:14]:<14} "
            f"{r.created:>8,} {net:>16} {r.skipped:>7,} {r.held:>6,}  {len(r.problems)}", highlight=False)
    if any(r.net_reporting.missing for r in reports):
        out_console.print("* without amounts in currencies that have no rate", highlight=False)


@runs_app.command("show")
@handle_errors
def runs_show(
    run_id: Annotated[int, typer.Argument(help="The billing run's number.")],
    log_lines: Annotated[int | None, typer.Option("--log", help="Print at most this many log lines (default all).")]
    = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One billing run: its totals, then its job log."""
    from bot.context import get_db
    from bot.workflows.run_reports import run_report

    with get_db().read() as s:
        r = run_report(s, run_id)
    if json_out:
        emit_json({**r.as_json(), "log": [{"at": at, "level": lvl, "message": m} for at, lvl, m in r.log_rows]})
        return
    for line in summary_lines(r):
        out_console.print(line, highlight=False, soft_wrap=True)
    rows = r.log_rows if log_lines is None else r.log_rows[:log_lines]
    out_console.print(f"\nJob log ({len(r.log_rows):,} lines):", highlight=False)
    for at, level, message in rows:
        out_console.print(f"  {at:%Y-%m-%d %H:%M:%S} {level:<5} {message}", highlight=False, soft_wrap=True)
    if len(rows) < len(r.log_rows):
        out_console.print(f"  … and {len(r.log_rows) - len(rows):,} more (without --log to see them all)",
                          highlight=False)
