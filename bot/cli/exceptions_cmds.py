"""CLI commands (exceptions)."""

from __future__ import annotations
