"""CLI commands (core)."""

from __future__ import annotations
