"""Slack handlers: one module per interaction, each with ``register(app)``.

Handlers are thin: ack first, parse the payload into a pydantic model, then submit a task by name
(:mod:`bot.tasks`) or call one workflow, and render with ``bot.blocks``. Domain errors propagate to
the single ``@app.error`` in :mod:`bot.handlers.errors`.
"""

from __future__ import annotations

from slack_bolt import App

from bot.handlers import errors, home
from bot.handlers.actions import cash, change_sets, decide, details, disputes, dunning, owners, pdf_retry
from bot.handlers.commands import billing
from bot.handlers.views import reason

MODULES = (errors, billing, decide, details, pdf_retry, cash, dunning, reason, change_sets, disputes, owners, home)


def register_all(app: App) -> None:
    for module in MODULES:
        module.register(app)
