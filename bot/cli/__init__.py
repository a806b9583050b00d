"""The ``billbot`` command line (Typer + Rich).

Conventions (DESIGN.md): listing commands take ``--json`` and print a JSON array; money is a
string with two decimals, dates ISO 8601. Errors go to stderr: exit 2 for bad input, 1 for failures.
Command groups live in :mod:`bot.cli.groups`; each ``bot/cli/*_cmds.py`` module adds its commands.
"""

from __future__ import annotations

from urllib.error import URLError

import typer

from bot.cli import (  # noqa: F401 - each module adds its commands to the groups
    billing_cmds,
    controls_cmds,
    core_cmds,
    cycle_cmds,
    disputes_cmds,
    documents_cmds,
    exceptions_cmds,
    export_cmds,
    manual_invoice_cmds,
    partners_cmds,
    payments_cmds,
    runs_cmds,
    schedule_cmds,
    serve_cmds,
    slack_cmds,
    sync_cmds,
)
from bot.cli.groups import app

#: Commands whose process is not a plain CLI: they wire themselves for their role.
SELF_WIRED = frozenset({"serve", "worker", "clock", "doctor"})


@app.callback()
def _wire(ctx: typer.Context) -> None:
    """billbot — the billing desk of media agencies and ad networks, in Slack and on the terminal."""
    if ctx.invoked_subcommand in SELF_WIRED or ctx.resilient_parsing:
        return
    from bot import runtime  # lazy: `billbot --help` and completion stay fast without Slack and workflows

    if runtime.wiring() is None:  # a process hosting an app (tests, notebooks) keeps the app's wiring
        runtime.wire("cli")


def main() -> None:
    """``billbot``: operator errors (a wrong setting, an unreachable database or Slack) end in one line
    on stderr naming what to change — exit 2 for a wrong setting, 1 for a failure — never a traceback."""
    import sys

    from slack_sdk.errors import SlackClientError
    from sqlalchemy.exc import OperationalError

    from storage.settings import SettingsError

    try:
        app()
    except SettingsError as e:  # a wrong setting fails at start, naming it
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(2) from None
    except OperationalError as e:
        sys.stderr.write(f"error: {database_problem(e)}\n")
        raise SystemExit(1) from None
    except (SlackClientError, URLError) as e:
        sys.stderr.write(f"error: Slack could not be reached or refused ({_first_line(e)}); check SLACK_BOT_TOKEN "
                         "and SLACK_API_URL\n")
        raise SystemExit(1) from None


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def database_problem(e: BaseException) -> str:
    """``the database is unreachable (postgresql+psycopg://billbot:***@db:5432/billbot): …; check DATABASE_URL``"""
    from sqlalchemy.engine import make_url

    from storage.settings import get_settings

    try:
        shown = make_url(get_settings().db_url).render_as_string(hide_password=True)
    except Exception:  # the URL itself is what is wrong; do not echo it
        shown = "DATABASE_URL"
    return f"the database is unreachable ({shown}): {_first_line(e)}; check DATABASE_URL (or BILLBOT_VAR_DIR)"
