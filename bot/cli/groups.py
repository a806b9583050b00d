"""Typer apps for every command group, so several modules can add commands to one group."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="billbot",
    help="billbot — the billing desk of media agencies and ad networks, in Slack and on the terminal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
advertisers_app = typer.Typer(help="Advertisers (billing recipients).", no_args_is_help=True)
users_app = typer.Typer(help="Slack users and their roles.", no_args_is_help=True)
preinvoices_app = typer.Typer(help="Pre-invoices: editable drafts per campaign and period.", no_args_is_help=True)
invoices_app = typer.Typer(help="Immutable, numbered invoices and credit notes.", no_args_is_help=True)
fx_app = typer.Typer(help="Exchange rates.", no_args_is_help=True)
sync_app = typer.Typer(help="Syncs from ad trackers (standard, partial) and their status.", no_args_is_help=True)
import_app = typer.Typer(help="Import ad-server reports and server logs.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Rows that could not be imported, with the reason.", no_args_is_help=True)
exceptions_app = typer.Typer(help="Exceptions waiting for a decision.", no_args_is_help=True)
audit_app = typer.Typer(help="The signed, hash-chained audit log.", no_args_is_help=True)
evidence_app = typer.Typer(
    help="Evidence packs: `billbot evidence NUMBER -o FILE.zip`, `billbot evidence verify FILE.zip`.",
)
keys_app = typer.Typer(help="The deployment's signing keys: rotate them, export the public keys for auditors.",
                       no_args_is_help=True)
changes_app = typer.Typer(help="Master-data change sets that move money, waiting for a second person.",
                          no_args_is_help=True)
payments_app = typer.Typer(help="Bank statements in (camt.053/054, MT940) and cash application.",
                           no_args_is_help=True)
receivables_app = typer.Typer(help="What advertisers owe: aging and DSO, disputes and payment promises.",
                              no_args_is_help=True)
dunning_app = typer.Typer(help="Dunning letters for overdue invoices.", no_args_is_help=True)
schedule_app = typer.Typer(help="Cron schedules for syncs, billing runs and the digest.", no_args_is_help=True)

for _sub, _name in (
    (db_app, "db"), (advertisers_app, "advertisers"), (users_app, "users"), (preinvoices_app, "preinvoices"),
    (invoices_app, "invoices"), (fx_app, "fx"), (sync_app, "sync"), (import_app, "import"),
    (quarantine_app, "quarantine"), (exceptions_app, "exceptions"), (audit_app, "audit"),
    (schedule_app, "schedule"), (keys_app, "keys"), (changes_app, "changes"), (payments_app, "payments"),
    (receivables_app, "receivables"), (dunning_app, "dunning"),
):
    app.add_typer(_sub, name=_name)
