"""Slack users billbot knows, and their roles.

Roles come from the ``users`` table (scenario file, ``billbot users grant``); names and emails are
looked up with Slack's ``users.info`` and cached on the row for :data:`PROFILE_TTL`, so a decision
record names the person without a Slack round trip on every click.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.errors import Invalid, NotAllowed, NotFound
from bot.workflows import audit
from storage.db import Database
from storage.models import ROLES, User, UserRole

log = logging.getLogger(__name__)

PROFILE_TTL = timedelta(hours=24)


def _profile_is_fresh(user: User, now: datetime) -> bool:
    return user.profile_fetched_at is not None and now - user.profile_fetched_at < PROFILE_TTL


#: ``lookup(slack_id)`` → Slack's user object (``users.info``'s ``user``), or None when it cannot tell.
#: Given by the caller that talks to Slack (:func:`bot.slack.users.profile_lookup`).
ProfileLookup = Callable[[str], dict[str, Any] | None]


def ensure_user(s: Session, slack_id: str, *, lookup: ProfileLookup | None = None,
                now: datetime | None = None) -> User:
    """The ``User`` row for ``slack_id``, created on first sight, its name and email refreshed from
    Slack (``lookup``) when the cached profile is older than 24 hours (only when a lookup is given).

    The profile cache is bookkeeping, not a business state change, so it is not audited.
    """
    if not slack_id:
        raise Invalid("a Slack user id is required")
    now = now or datetime.now(UTC)
    user = s.get(User, slack_id)
    if user is None:
        user = User(slack_id=slack_id, name="")
        s.add(user)
    if lookup is not None and not _profile_is_fresh(user, now):
        info = lookup(slack_id)
        if info is not None:
            profile = info.get("profile") or {}
            user.name = str(
                profile.get("real_name") or info.get("real_name") or profile.get("display_name")
                or info.get("name") or user.name or slack_id
            )[:200]
            email = profile.get("email")
            user.email = str(email)[:200] if email else user.email
            user.profile_fetched_at = now
    s.flush()
    return user


def access_user_with_role(s: Session, actor: str, roles: frozenset[str], what: str) -> User:
    """The known billbot user ``actor`` if they hold one of ``roles``, else a refusal naming what
    ``what`` needs and what they hold (one condition per line)."""
    user = s.get(User, actor)
    if user is None:
        raise NotAllowed(f"{actor} is not a billbot user", code="unknown_user")
    if not user.role_names & roles:
        raise NotAllowed(f"{what} needs the {' or '.join(sorted(roles))} role; {actor} has "
                         f"{', '.join(sorted(user.role_names)) or 'no role'}", code="role_required")
    return user


def display_name(user: User | None, slack_id: str) -> str:
    return (user.name if user is not None and user.name else "") or slack_id


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid(f"role: unknown role {role!r} (one of {', '.join(ROLES)})")


def grant_role(
    db: Database, slack_id: str, role: str, *, actor: str, signing_key: Ed25519PrivateKey | None,
    now: datetime | None = None,
) -> bool:
    """Give ``slack_id`` the ``role``; True when it was new. Granting twice changes nothing."""
    _check_role(role)
    with db.transaction() as s:
        user = ensure_user(s, slack_id, now=now)
        if role in user.role_names:
            return False
        user.roles.append(UserRole(slack_id=slack_id, role=role))
        audit.record(s, key=signing_key, actor=actor, action="role.granted", subject_type="user",
                     subject_id=slack_id, payload={"user": slack_id, "role": role}, now=now)
        return True


def revoke_role(
    db: Database, slack_id: str, role: str, *, actor: str, signing_key: Ed25519PrivateKey | None,
    now: datetime | None = None,
) -> bool:
    """Take ``role`` from ``slack_id``; True when they had it."""
    _check_role(role)
    with db.transaction() as s:
        user = s.get(User, slack_id)
        if user is None:
            raise NotFound(f"user {slack_id} is not known")
        row = next((r for r in user.roles if r.role == role), None)
        if row is None:
            return False
        user.roles.remove(row)  # delete-orphan removes the row
        audit.record(s, key=signing_key, actor=actor, action="role.revoked", subject_type="user",
                     subject_id=slack_id, payload={"user": slack_id, "role": role}, now=now)
        return True


def list_users(s: Session) -> list[User]:
    return list(s.execute(select(User).order_by(User.slack_id)).scalars())


def users_with_role(s: Session, roles: frozenset[str], *, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Slack ids of the users holding one of ``roles`` (minus ``exclude``), by id: who can do what
    someone was refused."""
    ids = s.execute(select(UserRole.slack_id).where(UserRole.role.in_(roles)).distinct()
                    .order_by(UserRole.slack_id)).scalars()
    return [i for i in ids if i not in exclude]
