"""Shared CLI plumbing: JSON output, error mapping, progress bars.

- :func:`emit_json` prints DESIGN.md's JSON (money as two-decimal strings, ISO dates).
- :func:`handle_errors` maps the ``BillingError`` family to stderr + exit code (2 bad input, 1 failure).
- :func:`progress` shows a Rich progress bar on a terminal and nothing under ``--json`` / no TTY.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from billing.errors import BillingError, Invalid

P = ParamSpec("P")
R = TypeVar("R")

# Piped output (scripts, CI logs) gets wide tables instead of truncated cells; a terminal its own width.
_WIDTH = None if sys.stdout.isatty() else 200
err_console = Console(stderr=True, width=_WIDTH)
out_console = Console(width=_WIDTH)


def jsonable(o: Any) -> Any:
    if isinstance(o, Decimal):
        return str(o)  # money fields are formatted by the command with money_str
    if isinstance(o, datetime | date):
        return o.isoformat()
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [jsonable(v) for v in o]
    return o


def money_str(d: Decimal | None) -> str | None:
    """Money for JSON: a string with two decimals (``"7000.00"``)."""
    return None if d is None else str(d.quantize(Decimal("0.01")))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(data), indent=2, ensure_ascii=False) + "\n")


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def protected_files() -> dict[Path, str]:
    """Files no ``-o`` may write: the SQLite database and its journals, and the signing key."""
    from storage.settings import get_settings

    s = get_settings()
    out: dict[Path, str] = {s.key_path.resolve(): "the signing key"}
    if s.db_url.startswith("sqlite:///"):
        db = Path(s.db_url.split("///", 1)[1]).resolve()
        for suffix in ("", "-wal", "-shm", "-journal"):
            out[db.with_name(db.name + suffix)] = "the database" if not suffix else f"the database's {suffix[1:]} file"
    return out


def check_output(path: Path, *, force: bool) -> Path:
    """Where ``-o`` may write: an existing folder (none is created), never billbot's database, WAL or
    signing key, and an existing file only with ``--force``. Raises :class:`Invalid` (exit 2)."""
    target = path.resolve()
    what = protected_files().get(target)
    if what is not None:
        raise Invalid([f"-o {path}: that is {what}; write somewhere else"])
    if not target.parent.is_dir():
        raise Invalid([f"-o {path}: the folder {path.parent} does not exist (billbot creates no folders for -o)"])
    if target.is_dir():
        raise Invalid([f"-o {path}: is a folder; name a file"])
    if target.exists() and not force:
        raise Invalid([f"-o {path}: exists; pass --force to overwrite it"])
    return path


_SLACK_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for commands: domain errors → stderr and exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Invalid as e:
            for p in e.problems:
                err_console.print(f"[red]error:[/red] {p}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except BillingError as e:
            message = _SLACK_MENTION.sub(r"@\1", e.message)  # "Force needs a finance manager: @U04…"
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


@contextmanager
def progress(description: str, total: int | None, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """``with progress("Loading", n, quiet=json) as advance: advance(1)``."""
    if quiet or not sys.stderr.isatty():

        def nothing(_n: int = 1) -> None:
            return None

        yield nothing
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
