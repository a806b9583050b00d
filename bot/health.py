"""Is this deployment able to work? One check per thing that must hold, each saying what to fix.

``GET /healthz`` (load balancers) runs :func:`liveness_checks` — database reachable, migrations
current, signing key readable — and answers 200 or 503. ``billbot doctor`` runs :func:`all_checks`:
those plus the settings, Slack (``auth.test``), the signing secret, the key's permissions and every
schedule, one line each.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage.settings import Settings, SettingsError, load_settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found; for a failure, what to change

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _shown_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(settings.db_url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot parse is not echoed
        return "DATABASE_URL"


def check_database(settings: Settings) -> Check:
    from sqlalchemy import text

    from bot import context

    try:
        with context.get_db(migrate=False).read() as s:
            s.execute(text("SELECT 1"))
    except Exception as e:  # every failure to reach the database is this check's answer
        return Check("database", False, f"{_shown_url(settings)} unreachable ({_first_line(e)}); check DATABASE_URL "
                                        "and that the database server runs")
    return Check("database", True, f"{_shown_url(settings)} reachable")


def check_migrations(settings: Settings) -> Check:
    from alembic.script import ScriptDirectory

    from bot import context
    from storage.migrate import alembic_config, current

    try:
        head = ScriptDirectory.from_config(alembic_config(settings.db_url)).get_current_head()
        now = current(context.get_db(migrate=False))
    except Exception as e:  # an unreachable database is reported by check_database; say it here too
        return Check("migrations", False, f"cannot read the schema revision ({_first_line(e)})")
    if now != head:
        return Check("migrations", False,
                     f"schema at {now or 'nothing'}, code expects {head}; run `billbot db upgrade`")
    return Check("migrations", True, f"schema at {head} (current)")


def check_signing_key(settings: Settings, *, permissions: bool = False) -> Check:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    path = settings.key_path
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        return Check("signing key", False, f"{path} does not exist; set SIGNING_KEY_PATH to billbot's key (embedded "
                                           "mode creates one at its first start)")
    except (OSError, ValueError, TypeError) as e:
        return Check("signing key", False, f"{path} cannot be read as a PEM key ({_first_line(e)}); check "
                                           "SIGNING_KEY_PATH and the file's owner")
    if not isinstance(key, Ed25519PrivateKey):
        return Check("signing key", False, f"{path} is not an Ed25519 key; SIGNING_KEY_PATH must name billbot's key")
    if permissions:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            return Check("signing key", False, f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
    return Check("signing key", True, f"{path} readable" + (" and private (0600)" if permissions else ""))


def check_slack(settings: Settings, client: Any = None) -> Check:
    if not settings.slack_bot_token:
        return Check("slack", True, "SLACK_BOT_TOKEN not set: only the local sandbox (`billbot serve`) talks to "
                                    "billbot; set SLACK_BOT_TOKEN to use Slack")
    from bot.slack.client import make_client

    c = client or make_client(settings.slack_bot_token, settings.slack_api_url)
    try:
        r = c.auth_test()
    except Exception as e:  # any Slack or network failure is the answer
        return Check("slack", False, f"auth.test failed ({_first_line(e)}); check SLACK_BOT_TOKEN and SLACK_API_URL")
    team = r.get("team") or r.get("team_id")
    if settings.slack_team_id and r.get("team_id") != settings.slack_team_id:
        return Check("slack", False, f"the token belongs to {team} ({r.get('team_id')}), not SLACK_TEAM_ID "
                                     f"{settings.slack_team_id}")
    return Check("slack", True, f"auth.test ok: {r.get('user') or r.get('user_id')} in {team}")


def check_signing_secret(settings: Settings) -> Check:
    if settings.slack_bot_token and not settings.slack_app_token and not settings.slack_signing_secret:
        return Check("signing secret", False, "SLACK_SIGNING_SECRET is not set: Slack over HTTP refuses to start; set "
                                              "it from the app's Basic Information page (or use SLACK_APP_TOKEN)")
    if settings.slack_signing_secret:
        return Check("signing secret", True, "SLACK_SIGNING_SECRET set")
    return Check("signing secret", True, "not needed (" + ("Socket Mode" if settings.slack_app_token else "sandbox")
                 + ")")


def check_schedules(settings: Settings) -> Check:
    from bot import context
    from bot.workflows.schedules import list_schedules, validate

    try:
        rows = list_schedules(context.get_db(migrate=False))
    except Exception as e:  # reported by check_database as well
        return Check("schedules", False, f"cannot be read ({_first_line(e)})")
    bad = [f"#{r.id} {r.name}: {'; '.join(p)}" for r in rows
           if (p := validate(r.task, r.args or {}, r.cron, r.timezone))]
    if bad:
        return Check("schedules", False, "; ".join(bad) + " — fix with `billbot schedule remove ID` and add it again")
    enabled = sum(1 for r in rows if r.enabled)
    return Check("schedules", True, f"{len(rows)} schedule(s), {enabled} enabled, all valid")


def liveness_checks(settings: Settings) -> list[Check]:
    return [check_database(settings), check_migrations(settings), check_signing_key(settings)]


def all_checks(client: Any = None) -> list[Check]:
    """Every check ``billbot doctor`` prints (a bad setting stops the rest: nothing else can be read)."""
    try:
        settings = load_settings()
    except SettingsError as e:
        return [Check("settings", False, str(e))]
    checks: list[Callable[[], Check]] = [
        lambda: Check("settings", True, "environment and .env read"),
        lambda: check_database(settings), lambda: check_migrations(settings),
        lambda: check_signing_key(settings, permissions=True), lambda: check_signing_secret(settings),
        lambda: check_slack(settings, client), lambda: check_schedules(settings),
    ]
    return [c() for c in checks]
