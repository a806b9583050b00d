"""CLI commands (billing)."""

from __future__ import annotations
