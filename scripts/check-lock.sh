#!/usr/bin/env bash
# The virtualenv holds exactly what requirements.lock pins: `pip freeze` (billbot itself and pip left out)
# equals the lock's pins. CI runs this right after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BILLBOT_VENV:-.venv}"
norm() { tr 'A-Z_.' 'a-z--' | sort; }
diff <("$venv/bin/python" -m pip freeze --all --exclude-editable 2>/dev/null | grep -v '^pip==' | norm) \
     <(grep -E '^[A-Za-z0-9].*==' requirements.lock | cut -d' ' -f1 | norm) \
  && echo "installed packages equal requirements.lock"
