"""Core commands: schema, scenario loading, demo data, advertisers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import select

from billing.errors import Invalid
from bot.cli.groups import advertisers_app, app, db_app
from bot.cli.identity import OPERATOR_ROLES, AsUser, acting_or_bootstrap
from bot.cli.output import emit_json, handle_errors, money_str, out_console


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Migrate the database to the latest schema (start-up does this too)."""
    from bot.context import get_db
    from storage.migrate import current

    db = get_db(migrate=True)
    out_console.print(f"database at revision {current(db)} ({db.dialect})")


@app.command("load")
@handle_errors
def load(
    file: Annotated[Path, typer.Argument(help="Scenario YAML file (see shared/scenarios/example.yaml).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    as_user: AsUser = None,
) -> None:
    """Load a scenario file: validated, atomic, idempotent (reloading the same file changes nothing)."""
    from bot.context import get_db, get_key
    from bot.workflows.load import load as load_wf

    actor = acting_or_bootstrap(as_user, roles=OPERATOR_ROLES, what="load")
    res = load_wf(get_db(), file, actor=actor, signing_key=get_key(), what=file.name)
    _print_load(res.as_dict(), json_out)


def _print_load(counts: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json(counts)
        return
    kinds = sorted({k for name in ("inserted", "updated", "unchanged") for k in counts[name]})
    held = counts.get("held") or []
    if not any(counts["inserted"].values()) and not any(counts["updated"].values()):
        out_console.print("nothing changed" + (" (until the change set below is approved)" if held else ""))
    for k in kinds:
        out_console.print(f"{k}: {counts['inserted'].get(k, 0)} inserted, {counts['updated'].get(k, 0)} updated, "
                          f"{counts['unchanged'].get(k, 0)} unchanged")
    if held:
        out_console.print(f"{len(held)} change(s) that move money held in change set #{counts['change_set']}, waiting "
                          f"for approval by someone else (`billbot changes show {counts['change_set']}`)",
                          highlight=False)


@app.command("demo")
@handle_errors
def demo(  # noqa: PLR0917 - Typer maps parameters to options
    size: Annotated[int, typer.Option(help="Number of dealer branches (one advertiser each).", min=1)] = 1124,
    seed: Annotated[int, typer.Option(help="Changes the data reproducibly.")] = 1,
    write: Annotated[Path | None, typer.Option(help="Also write the scenario as YAML to this file.")] = None,
    inline_delivery: Annotated[bool, typer.Option(
        "--inline-delivery", help="Load the delivery into the database instead of writing its files.")] = False,
    out_dir: Annotated[Path | None, typer.Option("--dir", help="Where delivery files go (default var/demo).")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    as_user: AsUser = None,
) -> None:
    """Load the demo: a car maker's regional campaign for its dealers' branches (October 2026).

    Loads the master data and writes October's delivery as the files a billing desk receives
    (tracker stats, ad-server report, the client's report, booking log) into var/demo/; `billbot cycle`
    then syncs, imports and bills them. --inline-delivery loads the delivery directly instead.
    """
    import yaml

    from bot.cli.output import progress
    from bot.context import get_db, get_key, settings
    from bot.workflows.load import load as load_wf
    from storage.demo import build_demo, demo_files, has_mixed_delivery, master_data

    actor = acting_or_bootstrap(as_user, roles=OPERATOR_ROLES, what="demo")
    with progress("Building demo", None, quiet=json_out):
        data = build_demo(size=size, seed=seed)
    if write is not None:
        write.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    db = get_db()
    folder = out_dir or settings().var_dir / "demo"
    with db.read() as s:
        if has_mixed_delivery(s, inline=inline_delivery):
            other = "imported from the demo's files" if inline_delivery else "loaded inline (--inline-delivery)"
            raise Invalid(f"the database already holds the demo's delivery {other}; loading it the other way too "
                          "would count it twice — start from scratch (`rm -rf var/`) or keep to one way")
        if not inline_delivery and has_mixed_delivery(s, inline=True):
            _same_demo_or_fail(folder, size, seed)
    what = f"demo size={size} seed={seed}" + (" inline" if inline_delivery else "")
    with progress(f"Loading {size} branches", None, quiet=json_out):
        res = load_wf(db, data if inline_delivery else master_data(data), actor=actor, signing_key=get_key(),
                      what=what)
    files = None if inline_delivery else demo_files(data, folder, seed=seed)
    if json_out:
        out = res.as_dict()
        if files is not None:
            out["files"] = {**files.manifest(), "directory": str(files.directory)}
        emit_json(out)
        return
    _print_load(res.as_dict(), json_out)
    if files is not None:
        c = files.counts
        out_console.print(
            f"delivery files in {files.directory}/ (bill them with `billbot cycle`):\n"
            f"  {files.tracker.name}: {c['stats_rows']} tracker stats rows, served by the demo tracker\n"
            f"  {files.gam_report.name}: {c['display_rows']} display rows (Google Ad Manager API dump)\n"
            f"  {files.third_party_report.name}: {c['third_party_rows']} rows of the client's clicks (GAM UI export)\n"
            f"  {files.dealer_log.name}: {c['bookings']} test-drive bookings in {c['log_lines']} log lines "
            f"({c['pending_test_drives_left_out']} pending test drives not logged)",
            highlight=False, soft_wrap=True)


def _same_demo_or_fail(folder: Path, size: int, seed: int) -> None:
    """Delivery of the demo's files is in the database already: only the same demo may be reloaded.
    Another size or seed changes every branch's figures, and bookings already imported would stay."""
    from storage.demo import DemoFiles

    try:
        before = DemoFiles.read(folder)
    except FileNotFoundError:
        return
    if (before.size, before.seed) not in ((size, seed), (None, None)):
        raise Invalid(f"the database holds the demo with --size {before.size} --seed {before.seed}, already synced; "
                      f"another size or seed changes every branch — start from scratch (`rm -rf var/`)")


@advertisers_app.command("list")
@handle_errors
def advertisers_list(
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    legal_entity: Annotated[str | None, typer.Option(help="Only this legal entity.")] = None,
) -> None:
    """List advertisers with their legal entity, currency and billing threshold."""
    from bot.context import get_db
    from storage.models import Advertiser

    with get_db().read() as s:
        q = select(Advertiser).order_by(Advertiser.id)
        if legal_entity:
            q = q.where(Advertiser.legal_entity_id == legal_entity)
        rows = [
            {"id": a.id, "name": a.name, "legal_entity": a.legal_entity_id, "currency": a.currency,
             "billing_threshold": money_str(a.billing_threshold), "country": a.country, "vat_id": a.vat_id,
             "payment_terms_days": a.payment_terms_days, "locale": a.locale}
            for a in s.execute(q).scalars()
        ]
    if json_out:
        emit_json(rows)
        return
    from rich.table import Table

    t = Table("id", "name", "legal entity", "currency", "threshold")
    for r in rows:
        t.add_row(*(str(r[k]) for k in ("id", "name", "legal_entity", "currency", "billing_threshold")))
    out_console.print(t)


@app.command("doctor")
def doctor() -> None:
    """Check settings, database, migrations, signing key and secret, Slack (auth.test) and schedules; one
    line per check with what to fix. Exit 1 if any check fails."""
    from rich.markup import escape

    from bot.health import all_checks

    checks = all_checks()
    for c in checks:
        colour = "green" if c.ok else "red"
        out_console.print(f"[{colour}]{escape(c.line())}[/{colour}]", highlight=False, soft_wrap=True)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
