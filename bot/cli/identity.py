"""Who acts on the command line: one identity across surfaces (issue 14).

Every command that changes state acts as a known billbot user — ``--as U…`` or ``BILLBOT_USER`` —
checked against that user's roles exactly like a Slack click; without it the command is refused.
Read-only commands stay open. The user is what the audit log, ``created_by``/``edited_by`` and
decisions record, so separation of duties holds whatever the surface.
"""

from __future__ import annotations

from typing import Annotated

import typer

from billing.errors import NotAllowed

AsUser = Annotated[
    str | None,
    typer.Option("--as", envvar="BILLBOT_USER", show_envvar=True,
                 help="The billbot user (Slack id U…) you act as; checked against their roles like a Slack click."),
]

OPERATOR_ROLES = frozenset({"operator", "admin"})
ADMIN_ROLES = frozenset({"admin"})
APPROVER_ROLES = frozenset({"approver", "finance_manager"})
FINANCE_ROLES = frozenset({"finance_manager"})
REQUESTER_ROLES = frozenset({"operator", "admin", "finance_manager"})


def acting_as(as_user: str | None, *, roles: frozenset[str] | None, what: str) -> str:
    """The Slack id of the known billbot user ``as_user`` if they hold one of ``roles`` (``None``:
    any known user — the workflow checks the roles itself, as for decisions); else a refusal naming
    what is missing (exit 1)."""
    from bot.context import get_db
    from storage.models import User

    who = (as_user or "").strip()
    if not who:
        raise NotAllowed(f"{what} changes state: say which billbot user you are with --as U… "
                         "(or set BILLBOT_USER)", code="identity_required")
    with get_db().read() as s:
        user = s.get(User, who)
        held = set(user.role_names) if user is not None else set()
    if user is None:
        raise NotAllowed(f"--as {who}: no such billbot user (an admin grants roles with `billbot users grant`)",
                         code="unknown_user")
    if roles is not None and not held & roles:
        raise NotAllowed(f"{what} needs the {' or '.join(sorted(roles))} role; {who} has "
                         f"{', '.join(sorted(held)) or 'no role'}", code="role_required")
    return who


def acting_or_bootstrap(as_user: str | None, *, roles: frozenset[str], what: str) -> str:
    """:func:`acting_as`, except while billbot knows no user at all: setting up a fresh deployment
    (the first ``load`` or ``demo``, which bring the users) acts as ``bootstrap`` — or as the id
    given, which cannot be checked yet — and says so in the audit log."""
    from sqlalchemy import select

    from bot.context import get_db
    from storage.models import User

    with get_db().read() as s:
        anyone = s.execute(select(User.slack_id).limit(1)).first() is not None
    if not anyone:
        return (as_user or "").strip() or "bootstrap"
    return acting_as(as_user, roles=roles, what=what)


def granting_as(as_user: str | None, *, role: str, what: str) -> str:
    """Granting roles needs an admin — except while there is none yet (a fresh deployment, recorded
    as ``bootstrap``): grant the first admin first."""
    from sqlalchemy import select

    from bot.context import get_db
    from storage.models import UserRole

    with get_db().read() as s:
        admin = s.execute(select(UserRole.slack_id).where(UserRole.role == "admin").limit(1)).first()
    if admin is None:  # a fresh deployment: roles are handed out until the first admin exists
        return "bootstrap"
    return acting_as(as_user, roles=ADMIN_ROLES, what=what)
