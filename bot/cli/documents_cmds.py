"""CLI commands (documents)."""

from __future__ import annotations
