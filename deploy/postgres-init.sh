#!/bin/sh
# Settle's own database next to Temporal's, on the compose file's PostgreSQL (run once, by the
# postgres image's entrypoint, when the data volume is new). The password comes from the env file.
set -eu
: "${SETTLE_DB_PASSWORD:?set SETTLE_DB_PASSWORD in the env file}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v settle_password="$SETTLE_DB_PASSWORD" <<'SQL'
CREATE USER settle WITH PASSWORD :'settle_password';
CREATE DATABASE settle OWNER settle;
SQL
