"""The ``billbot`` command line (Typer + Rich).

Conventions (DESIGN.md): listing commands take ``--json`` and print a JSON array; money is a
string with two decimals, dates ISO 8601. Errors go to stderr: exit 2 for bad input, 1 for failures.
Command groups live in :mod:`bot.cli.groups`; each ``bot/cli/*_cmds.py`` module adds its commands.
"""

from __future__ import annotations

import typer

from bot.cli import (  # noqa: F401 - each module adds its commands to the groups
    billing_cmds,
    core_cmds,
    cycle_cmds,
    documents_cmds,
    exceptions_cmds,
    payments_cmds,
    schedule_cmds,
    serve_cmds,
    slack_cmds,
    sync_cmds,
)
from bot.cli.groups import app

#: Commands whose process is not a plain CLI: they wire themselves for their role.
SELF_WIRED = frozenset({"serve", "worker", "clock"})


@app.callback()
def _wire(ctx: typer.Context) -> None:
    """billbot — the billing desk of media agencies and ad networks, in Slack and on the terminal."""
    if ctx.invoked_subcommand in SELF_WIRED or ctx.resilient_parsing:
        return
    from bot import runtime  # lazy: `billbot --help` and completion stay fast without Slack and workflows

    if runtime.wiring() is None:  # a process hosting an app (tests, notebooks) keeps the app's wiring
        runtime.wire("cli")


def main() -> None:
    from storage.settings import SettingsError

    try:
        app()
    except SettingsError as e:  # a wrong setting fails at start, naming it
        import sys

        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
