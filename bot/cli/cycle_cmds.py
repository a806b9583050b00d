"""`billbot cycle`: the full headless billing cycle on the demo, through billbot's real data paths.

After ``billbot demo`` (master data loaded, delivery written as files into ``var/demo/``):

1. start the demo tracker (:mod:`bot.sandbox.tracker`, a local HasOffers Network API v3 on a free
   port), configure source ``tracker`` for this process (``BILLBOT_SOURCE_TRACKER_URL``, ``_TOKEN``,
   ``_KIND=hasoffers``, ``_LOOKBACK_DAYS`` reaching back to the period's first day), run a
   **partial sync** against it, stop it;
2. import the ad server's display report (source ``gam``), the client's click report
   (``client-analytics``, third party) and the booking service's log (``dealer-logs``);
3. create the period's pre-invoices (checks, variance exceptions, approvals by the system);
4. run billing for the period.

Each step prints one line as it goes; then the run's totals and a summary, with the job log written
to ``<var>/logs/cycle-<period>-<time>.log`` (named in the output; ``--verbose`` prints it instead).
``--json`` prints one object instead. Rerunning changes nothing: syncs and imports are idempotent (``unchanged``),
pre-invoices are updated in place, a second billing run bills nothing twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from billing.errors import Invalid
from bot.cli.groups import app
from bot.cli.identity import AsUser
from bot.cli.output import emit_json, handle_errors, out_console, progress
from bot.cli.runs_cmds import print_run_summary
from storage.sources.base import Batch, ProgressFn, Source, SourceConfig, env_prefix


class _AsOf:
    """A connector whose "today" is at least ``at``: a clock before the end of the demo's period
    would otherwise cut the tracker's date window short (the demo is October 2026)."""

    def __init__(self, inner: Source, at: datetime) -> None:
        self.inner = inner
        self.at = at
        self.config: SourceConfig = inner.config

    def fetch(self, *, mode: str, watermark: str | None, pending_ids: list[str], now: datetime,
              on_progress: ProgressFn | None = None) -> Iterator[Batch]:
        return self.inner.fetch(mode=mode, watermark=watermark, pending_ids=pending_ids, now=max(now, self.at),
                                on_progress=on_progress)

    def advance_watermark(self, old: str | None, *, max_day: date | None, max_occurred: str | None) -> str | None:
        return self.inner.advance_watermark(old, max_day=max_day, max_occurred=max_occurred)


@contextmanager
def source_env(name: str, values: dict[str, str]) -> Iterator[None]:
    """``BILLBOT_SOURCE_<NAME>_<KEY>`` set for the duration, then restored as it was."""
    prefix = env_prefix(name)
    saved = {k: os.environ.get(prefix + k) for k in values}
    try:
        os.environ.update({prefix + k: v for k, v in values.items()})
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(prefix + k, None)
            else:
                os.environ[prefix + k] = old


def _demo_dir(directory: Path | None) -> Path:
    if directory is not None:
        return directory
    from bot.context import settings

    return settings().var_dir / "demo"


@app.command("cycle")
@handle_errors
def cycle(  # noqa: PLR0915 - the demo cycle reads as its stages in order, each printed
    period: Annotated[str | None, typer.Option(help="Billing period (default: the demo's, 2026-10).")] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="The demo files (default var/demo).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the whole job log (else: to a file).")]
    = False,
    as_user: AsUser = None,
) -> None:
    """The full cycle on the demo: demo tracker → partial sync → report and log imports → pre-invoices → billing run."""
    from billing.periods import parse_period
    from bot.cli.identity import OPERATOR_ROLES, acting_as
    from bot.context import get_db, get_key, settings
    from bot.sandbox.tracker import DemoTracker
    from bot.workflows.billing_run import run_billing
    from bot.workflows.preinvoices import create_preinvoices
    from bot.workflows.sync import format_counts, import_logs, import_report, run_sync
    from storage.demo import DemoFiles, has_mixed_delivery
    from storage.sources.base import get_source_config, make_source

    folder = _demo_dir(directory)
    try:
        files = DemoFiles.read(folder)
    except FileNotFoundError:
        raise Invalid(f"{folder}: no demo files (run `billbot demo` first)") from None
    period = period or files.period
    p = parse_period(period)
    db, key, actor = get_db(), get_key(), acting_as(as_user, roles=OPERATOR_ROLES, what="cycle")
    tolerance = settings().default_tolerance
    with db.read() as s:
        if has_mixed_delivery(s, inline=False):
            raise Invalid("the database holds the demo's delivery loaded inline (`billbot demo --inline-delivery`); "
                          "importing the demo's files too would count it twice — start from scratch "
                          "(`rm -rf var/`) or bill it with `billbot preinvoices create` and `billbot run`")

    steps: list[str] = []
    syncs: list[dict[str, Any]] = []

    def step(line: str) -> None:
        steps.append(line)
        if not json_out:
            out_console.print(line, highlight=False, soft_wrap=True)

    sources = files.manifest()["sources"]
    name = str(sources["tracker"])
    tracker = DemoTracker.from_file(files.tracker, token=files.tracker_token).start()
    try:
        step(f"Demo tracker (HasOffers Network API v3) on {tracker.url}, serving {files.tracker}")
        now = datetime.now(UTC)
        tz = get_source_config(name).tz
        at = datetime.combine(p.end + timedelta(days=1), time(6), tz)  # the morning after the period
        as_of = max(now.astimezone(tz).date(), at.date())
        env = {"URL": tracker.url, "TOKEN": tracker.token, "KIND": "hasoffers",
               "LOOKBACK_DAYS": str(min(3650, max(1, (as_of - p.start).days + 1)))}
        with source_env(name, env), progress(f"partial sync of {name}", None, quiet=json_out) as advance:
            conn = None if now >= at else _AsOf(make_source(get_source_config(name, require=True)), at)
            res = run_sync(db, source=name, mode="partial", actor=actor, signing_key=key, connector=conn,
                           on_progress=lambda _stage, _page, _count: advance(1)).as_dict()
        syncs.append(res)
        calls = len(tracker.calls)
    finally:
        tracker.stop()
    until = f"; data until {res['data_until']}" if res.get("data_until") else ""
    step(f"Partial sync #{res['sync_run_id']} of {name} ({calls} API calls; tracker stopped): "
         f"{format_counts(res)}{until}")

    imports: list[tuple[str, Path, str, Callable[[Path, str], Any]]] = [
        ("Display report", files.gam_report, str(sources["gam_report"]),
         lambda f, src: import_report(db, path=f, source=src, actor=actor, signing_key=key)),
        ("Client's click report", files.third_party_report, str(sources["third_party_report"]),
         lambda f, src: import_report(db, path=f, source=src, third_party=True, actor=actor, signing_key=key)),
        ("Booking log", files.dealer_log, str(sources["dealer_log"]),
         lambda f, src: import_logs(db, path=f, source=src, actor=actor, signing_key=key)),
    ]
    for label, path, src, run_import in imports:
        r = run_import(path, src).as_dict()
        syncs.append(r)
        party = " (third party)" if path == files.third_party_report else ""
        step(f"{label} {path.name} → {src}{party}, sync #{r['sync_run_id']}: {format_counts(r)}")

    with progress(f"Pre-invoices for {period}", None, quiet=json_out):
        pre = create_preinvoices(db, period=period, actor=actor, key=key, now=datetime.now(UTC),
                                 default_tolerance=tolerance)
    step(f"Pre-invoices {pre.period}: {len(pre.created)} created, {len(pre.updated)} updated, "
         f"{len(pre.unchanged)} unchanged; {len(pre.approved)} approved by the system, {len(pre.pending)} pending "
         f"(variance exceptions), {len(pre.problems)} with problems")

    with progress(f"Billing {period}", None, quiet=json_out) as advance:
        run = run_billing(db, period=period, actor=actor, key=key, today=datetime.now(UTC).astimezone().date(),
                          on_progress=lambda _d, _t: advance(1))
    step(f"Billing run {run.run_id} for {run.period}: {len(run.created)} invoices created, "
         f"{len(run.skipped)} skipped below threshold, {len(run.held)} held")

    log = [line for r in syncs for line in r["log"]] + list(run.log)
    summary = {"created": len(run.created), "skipped": len(run.skipped), "held": len(run.held),
               "quarantined": sum(int(r["quarantined"]) for r in syncs), "open_exceptions": _open_exceptions(db)}
    if json_out:
        emit_json({"period": period, "steps": steps, "syncs": syncs,
                   "preinvoices": {"created": pre.created, "updated": pre.updated, "unchanged": pre.unchanged,
                                   "approved": pre.approved, "pending": pre.pending,
                                   "problems": [{"id": k, "problems": v} for k, v in sorted(pre.problems.items())]},
                   "run": {"run": run.run_id, "created": run.created, "skipped": run.skipped, "held": run.held,
                           "log": run.log},
                   "log": log, "summary": summary})
        return
    print_run_summary(run.run_id, log, name=f"cycle-{period}", verbose=verbose)
    out_console.print(
        f"\nCycle {period}: {summary['created']} invoices created, {summary['skipped']} skipped below threshold, "
        f"{summary['held']} held, {summary['quarantined']} rows quarantined (`billbot quarantine list`); "
        f"{summary['open_exceptions']} exceptions wait for a decision (`billbot exceptions list`, `billbot serve`)",
        highlight=False, soft_wrap=True)


def _open_exceptions(db: Any) -> int:
    from sqlalchemy import func, select

    from storage.models import OPEN_EXCEPTION_STATES, BillingException

    with db.read() as s:
        return int(s.execute(select(func.count()).select_from(BillingException)
                             .where(BillingException.state.in_(OPEN_EXCEPTION_STATES))).scalar_one())
