"""Operable in production (issue 16 item 10): ``GET /healthz`` for load balancers and ``billbot doctor``
for people, each check naming what to fix."""

from __future__ import annotations

import os

import httpx
from typer.testing import CliRunner

from bot import context
from bot.cli import app

runner = CliRunner()


def test_healthz_answers_200_when_healthy_and_503_with_the_database_stopped(world, monkeypatch):
    ok = httpx.get(world.server.url + "/healthz")
    assert ok.status_code == 200
    assert {k: v["ok"] for k, v in ok.json()["checks"].items()} == {"database": True, "migrations": True,
                                                                   "signing key": True}
    # the database goes away (a PostgreSQL nobody listens on): unhealthy, naming it, no password shown
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://billbot:hunter2@127.0.0.1:1/billbot")
    context.reset()
    down = httpx.get(world.server.url + "/healthz", timeout=30)
    assert down.status_code == 503
    body = down.json()
    assert body["ok"] is False and body["checks"]["database"]["ok"] is False
    assert "DATABASE_URL" in body["checks"]["database"]["detail"] and "hunter2" not in down.text


def test_healthz_is_503_when_the_signing_key_cannot_be_read(world, monkeypatch, tmp_path):
    monkeypatch.setenv("SIGNING_KEY_PATH", str(tmp_path / "missing.pem"))
    context.reset()
    r = httpx.get(world.server.url + "/healthz")
    assert r.status_code == 503 and r.json()["checks"]["signing key"]["ok"] is False


def test_doctor_passes_on_a_healthy_deployment(world):
    os.chmod(context.settings().key_path, 0o600)
    r = runner.invoke(app, ["doctor"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    names = [ln.split(":")[0].split(maxsplit=1)[1] for ln in lines]
    assert names == ["settings", "database", "migrations", "signing key", "signing secret", "slack", "schedules"]
    assert "auth.test ok" in r.output


def test_doctor_names_a_missing_signing_secret_and_a_readable_key(world, monkeypatch):
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    os.chmod(context.settings().key_path, 0o644)
    context.reset()
    r = runner.invoke(app, ["doctor"])
    assert r.exit_code == 1
    fails = [ln for ln in r.output.splitlines() if ln.startswith("FAIL")]
    assert any("SLACK_SIGNING_SECRET is not set" in ln for ln in fails), r.output
    assert any("chmod 600" in ln for ln in fails), r.output
    assert "Traceback" not in r.output


def test_doctor_names_a_bad_setting(monkeypatch):
    monkeypatch.setenv("PORT", "eighty")
    context.reset()
    r = runner.invoke(app, ["doctor"])
    context.reset()
    assert r.exit_code == 1 and "FAIL settings" in r.output and "PORT" in r.output
