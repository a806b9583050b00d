#!/usr/bin/env bash
# Start a PostgreSQL server on 127.0.0.1 for the test suite and create the test role.
# Debian: the packaged cluster (`pg_ctlcluster`), as root; `initdb` itself refuses to run as root.
# Prints the URL to use as BILLBOT_TEST_PG_URL.
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | grep -q "^$ver main"; then
  pg_createcluster "$ver" main >/dev/null
fi
pg_ctlcluster "$ver" main start 2>/dev/null || true
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 && break
  sleep 0.5
done
su postgres -c "psql -q -tAc \"SELECT 1 FROM pg_roles WHERE rolname='billbot'\"" | grep -q 1 ||
  su postgres -c "psql -q -c \"CREATE ROLE billbot LOGIN SUPERUSER PASSWORD 'billbot'\""
su postgres -c "psql -q -tAc \"SELECT 1 FROM pg_database WHERE datname='billbot'\"" | grep -q 1 ||
  su postgres -c "psql -q -c 'CREATE DATABASE billbot OWNER billbot'"
echo "postgresql+psycopg://billbot:billbot@127.0.0.1:5432/billbot"
