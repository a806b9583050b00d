"""CLI commands (sync)."""

from __future__ import annotations
