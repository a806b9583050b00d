"""The billing error family every surface (Slack, CLI, jobs) renders the same way.

Modelled on lago's named failures: a short machine code plus a human message. Raise these from
billing/, storage/ and bot/workflows/; handlers and the CLI map them to ephemeral messages / exit codes.
"""

from __future__ import annotations

from collections.abc import Iterable


class BillingError(Exception):
    """Base of every expected failure. ``code`` is stable and machine readable."""

    code: str = "billing_error"
    exit_code: int = 1

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class NotFound(BillingError):
    code = "not_found"
    exit_code = 2


class NotAllowed(BillingError):
    """The actor may not do this (role, separation of duties, state)."""

    code = "not_allowed"
    exit_code = 1


class Conflict(BillingError):
    """Someone else changed the thing first (double click, concurrent decision, stale message)."""

    code = "conflict"
    exit_code = 1


class Invalid(BillingError):
    """Bad input: carries every problem found, not only the first one."""

    code = "invalid"
    exit_code = 2

    def __init__(self, problems: Iterable[str] | str, *, code: str | None = None) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems) if self.problems else "invalid input", code=code)
