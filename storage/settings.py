"""Settings from the environment and ``.env`` (pydantic-settings).

A wrong setting fails at start with a message naming it (:func:`load_settings` raises
:class:`SettingsError` whose text lists each bad variable).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from billing.money import is_currency
from billing.periods import check_zone

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(Exception):
    pass


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(default="", alias="DATABASE_URL")
    var_dir: Path = Field(default=Path("var"), alias="BILLBOT_VAR_DIR")
    slack_bot_token: str | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_team_id: str | None = Field(default=None, alias="SLACK_TEAM_ID")  # else auth.test's
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    port: int = Field(default=3000, alias="PORT", ge=1, le=65535)
    sandbox_port: int = Field(default=3001, alias="SANDBOX_PORT", ge=1, le=65535)
    exceptions_channel: str = Field(default="billing-exceptions", alias="EXCEPTIONS_CHANNEL")
    managers_channel: str = Field(default="billing-managers", alias="MANAGERS_CHANNEL")
    signing_key_path: Path | None = Field(default=None, alias="SIGNING_KEY_PATH")
    audit_anchor_path: Path | None = Field(default=None, alias="AUDIT_ANCHOR_PATH")
    timezone: str = Field(default="Europe/Berlin", alias="BILLBOT_TIMEZONE")
    sla_hours: float = Field(default=24.0, alias="SLA_HOURS", gt=0)
    two_approver_amount: Decimal = Field(default=Decimal("10000.00"), alias="TWO_APPROVER_AMOUNT", ge=0)
    default_tolerance: Decimal = Field(default=Decimal("0.10"), alias="DEFAULT_TOLERANCE", ge=0)
    digest_cron: str = Field(default="0 8 * * *", alias="DIGEST_CRON")
    workers: int = Field(default=2, alias="BILLBOT_WORKERS", ge=1)
    # e-mail dispatch of invoices (issue 19): smtp://host:port (STARTTLS when the server offers it),
    # smtp+starttls://… (STARTTLS required), smtps://… (TLS from the start); user:password@ optional.
    # Unset: invoices are not mailed.
    smtp_url: str = Field(default="", alias="SMTP_URL")
    mail_from: str = Field(default="", alias="MAIL_FROM")
    smtp_ca_file: str | None = Field(default=None, alias="SMTP_CA_FILE")  # a private CA for the mail server
    dispatch_attempts: int = Field(default=4, alias="DISPATCH_ATTEMPTS", ge=1, le=20)
    dispatch_retry_seconds: float = Field(default=30.0, alias="DISPATCH_RETRY_SECONDS", ge=0)
    evidence_base_url: str = Field(default="", alias="EVIDENCE_BASE_URL")  # optional link in the mail

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, v: str) -> str:
        if v and v.split("://", 1)[0] not in ("smtp", "smtps", "smtp+starttls"):
            raise ValueError("must start with smtp://, smtp+starttls:// or smtps://")
        return v
    # cash application: under-/over-payments up to this (in the invoice currency) need no person
    payment_tolerance: Decimal = Field(default=Decimal("1.00"), alias="PAYMENT_TOLERANCE", ge=0)
    # totals across currencies (run reports, digest, aging, App Home); unset: the main legal entity's currency
    # (the one with the most advertisers, see bot.workflows.run_reports.reporting_currency)
    reporting_currency: str | None = Field(default=None, alias="REPORTING_CURRENCY")
    # files dropped by the bank's EBICS/SFTP client land in <inbox>/bank/ (issue 18)
    inbox_dir: Path = Field(default=Path("var/inbox"), alias="BILLBOT_INBOX_DIR")

    @field_validator("reporting_currency")
    @classmethod
    def _reporting_currency(cls, v: str | None) -> str | None:
        if not v or not v.strip():
            return None
        if not is_currency(v.strip().upper()):
            raise ValueError(f"not an ISO 4217 currency code: {v!r}")
        return v.strip().upper()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_zone(v)

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if v and not (v.startswith("sqlite") or v.startswith("postgresql")):
            raise ValueError("must start with sqlite:// or postgresql+psycopg://")
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+psycopg://" + v.split("://", 1)[1]
        return v

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'billbot.db').resolve()}"

    @property
    def key_path(self) -> Path:
        return self.signing_key_path or (self.var_dir / "signing_key.pem")

    @property
    def anchor_path(self) -> Path:
        """Where signed audit-chain heads are published, outside the database (next to the key)."""
        return self.audit_anchor_path or (self.key_path.parent / "audit-anchors.jsonl")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sandbox(self) -> bool:
        """No Slack credentials: run against the local sandbox workspace."""
        return not self.slack_bot_token


def local_time(at: datetime | None, *, tz: ZoneInfo | None = None, empty: str = "—") -> str:
    """A moment as people read it: ``2026-03-02 09:00 CET`` in ``BILLBOT_TIMEZONE`` (JSON keeps ISO 8601
    with its offset; this is for Slack texts, the digest and CLI tables). Naive times are UTC."""
    if at is None:
        return empty
    zone = tz or get_settings().tz
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        lines = []
        for err in e.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            val = os.environ.get(name)
            shown = f" (got {val!r})" if val is not None and "TOKEN" not in name and "SECRET" not in name else ""
            lines.append(f"{name}: {err['msg']}{shown}")
        raise SettingsError("bad setting: " + "; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
