"""Settings come from the environment; a wrong one fails at start and names the variable."""

from __future__ import annotations

from decimal import Decimal

import pytest
from typer.testing import CliRunner

from storage.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_sqlite_database(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("BILLBOT_VAR_DIR", str(tmp_path))
    s = load_settings()
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'billbot.db'}"
    assert s.sandbox is True
    assert s.two_approver_amount == Decimal("10000.00")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("BILLBOT_TIMEZONE", "Mars/Olympus", "BILLBOT_TIMEZONE: Value error, unknown time zone 'Mars/Olympus'"),
        ("SLA_HOURS", "soon", "SLA_HOURS: Input should be a valid number"),
        ("TWO_APPROVER_AMOUNT", "-5", "TWO_APPROVER_AMOUNT: Input should be greater than or equal to 0"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: Value error, must start with sqlite:// or postgresql+psycopg://"),
        ("PORT", "99999", "PORT: Input should be less than or equal to 65535"),
    ],
)
def test_a_wrong_setting_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as e:
        load_settings()
    assert expected in str(e.value)


def test_cli_refuses_to_start_with_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import context
    from bot.cli import app

    monkeypatch.setenv("SLA_HOURS", "-1")
    context.reset()
    result = CliRunner().invoke(app, ["advertisers", "list"])
    context.reset()
    assert result.exit_code != 0
    assert isinstance(result.exception, SettingsError)
    assert "SLA_HOURS" in str(result.exception)


def test_postgres_urls_are_normalized_to_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1/db")
    assert load_settings().db_url == "postgresql+psycopg://u:p@127.0.0.1/db"
