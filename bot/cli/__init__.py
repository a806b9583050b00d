"""The ``billbot`` command line (Typer + Rich).

Conventions (DESIGN.md): listing commands take ``--json`` and print a JSON array; money is a
string with two decimals, dates ISO 8601. Errors go to stderr: exit 2 for bad input, 1 for failures.
Command groups live in :mod:`bot.cli.groups`; each ``bot/cli/*_cmds.py`` module adds its commands.
"""

from __future__ import annotations

import importlib

from bot.cli.groups import app

_MODULES = (
    "bot.cli.core_cmds",
    "bot.cli.billing_cmds",
    "bot.cli.sync_cmds",
    "bot.cli.exceptions_cmds",
    "bot.cli.documents_cmds",
    "bot.cli.slack_cmds",
    "bot.cli.schedule_cmds",
    "bot.cli.serve_cmds",
    "bot.cli.cycle_cmds",
)

for _m in _MODULES:
    importlib.import_module(_m)


def main() -> None:
    from bot.settings import SettingsError

    try:
        app()
    except SettingsError as e:  # a wrong setting fails at start, naming it
        import sys

        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
