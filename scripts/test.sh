#!/usr/bin/env bash
# The whole suite on SQLite and on PostgreSQL. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
export BILLBOT_TEST_PG_URL="${BILLBOT_TEST_PG_URL:-$(scripts/postgres.sh | tail -1)}"
workers="${PYTEST_WORKERS:-2}"
echo "== tests on SQLite"
.venv/bin/pytest -n "$workers" -q --db sqlite "$@"
echo "== tests on PostgreSQL"
.venv/bin/pytest -n "$workers" -q --db postgres "$@"
