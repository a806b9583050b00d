#!/usr/bin/env bash
# The main job on the embedded default (SQLite in var/): load the demo and run a full headless
# billing cycle on it, printing the job log. Usage: scripts/run.sh [PERIOD] [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
period="${1:-2026-10}"
size="${2:-1124}"
billbot=.venv/bin/billbot
$billbot db upgrade
$billbot demo --size "$size"
$billbot preinvoices create --period "$period"
$billbot run --period "$period"
