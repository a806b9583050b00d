#!/usr/bin/env bash
# `make run`: the demo through billbot's real data paths, then the sandbox workspace.
#   1. migrate the embedded database (SQLite in var/);
#   2. `billbot demo`: load the master data and write October's delivery as files into var/demo/
#      (tracker stats, ad-server report, the client's report, booking log);
#   3. `billbot cycle`: demo tracker → partial sync → report and log imports → pre-invoices → billing run,
#      printing the run's totals (the job log goes to var/logs/); variance exceptions and below-threshold
#      skips are left waiting;
#   4. `billbot serve`: the sandbox workspace (prints its URL; no browser under CI or without a display) on
#      PORT and SANDBOX_PORT when set (`make run PORT=3100 SANDBOX_PORT=3101`).
# Rerunning is safe (everything is idempotent); `rm -rf var/` starts from scratch.
# Usage: scripts/run.sh [PERIOD] [SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
period="${1:-2026-10}"
size="${2:-100}"
billbot="${BILLBOT:-.venv/bin/billbot}"
# State-changing commands act as a known billbot user: the demo's admin (the first `demo` on an empty
# database bootstraps it; later runs are checked against its roles).
export BILLBOT_USER="${BILLBOT_USER:-U05ADMIN}"
$billbot db upgrade
$billbot demo --size "$size"
$billbot cycle --period "$period"
serve_args=()
if [[ -n "${PORT:-}" ]]; then serve_args+=(--port "$PORT"); fi
if [[ -n "${SANDBOX_PORT:-}" ]]; then serve_args+=(--sandbox-port "$SANDBOX_PORT"); fi
if [[ -n "${CI:-}" ]] || { [[ "$(uname -s)" != Darwin && -z "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" ]]; }; then
  serve_args+=(--no-browser)
fi
exec $billbot serve ${serve_args[@]+"${serve_args[@]}"}
