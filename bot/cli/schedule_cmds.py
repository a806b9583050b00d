"""CLI commands (schedule)."""

from __future__ import annotations
