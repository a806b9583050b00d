"""CLI commands (slack)."""

from __future__ import annotations
