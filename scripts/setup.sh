#!/usr/bin/env bash
# Set up a fresh machine for billbot: system packages (as root, with apt), the virtualenv and the
# Python packages. Idempotent: a second run only checks. Usage: scripts/setup.sh [run|test]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-run}"

# WeasyPrint needs Pango/HarfBuzz and fonts; the sandbox page shows billbot's emoji (a colour emoji font, else
# boxes); tests also need PostgreSQL and Chromium (Playwright).
pkgs=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libharfbuzz-subset0 fonts-liberation fonts-dejavu-core
  fonts-noto-color-emoji python3-venv)
if [[ "$what" == "test" ]]; then
  pkgs+=(postgresql chromium)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "please install these system packages first: ${missing[*]}" >&2
    exit 1
  fi
fi

venv="${BILLBOT_VENV:-.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
# Exactly the versions in requirements.lock, each checked against its hashes (pip refuses anything
# else); then billbot itself, with no dependencies of its own choosing. `make lock` refreshes the lock.
stamp="$venv/.installed-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  "$venv/bin/python" -m pip install -q --require-hashes --no-deps -r requirements.lock
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
  "$venv/bin/python" -m pip check
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
