"""Slack handlers: one module per interaction, each with ``register(app)``.

Handlers are thin: ack first, parse the payload into a pydantic model, call one workflow, render
with ``bot.blocks``. Domain errors propagate to the single ``@app.error`` in :mod:`bot.handlers.errors`.
"""

from __future__ import annotations

import importlib
from typing import Any

MODULES = (
    "bot.handlers.errors",
    "bot.handlers.commands.billing",
    "bot.handlers.actions.decide",
    "bot.handlers.actions.details",
    "bot.handlers.views.reason",
    "bot.handlers.home",
)


def register_all(app: Any) -> None:
    for name in MODULES:
        importlib.import_module(name).register(app)
