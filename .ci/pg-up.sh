#!/bin/sh
# Starts Debian's PostgreSQL cluster (installing it when missing) and makes the test role `app`.
# Idempotent; shared by `make test` and .ci/run. pg_ctl refuses root, pg_ctlcluster does not.
set -e
cd /
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "PostgreSQL is not installed. As root: apt-get install postgresql (or point PGHOST/PGPORT/PGUSER/PGPASSWORD at a server)." >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
V=$(ls /usr/lib/postgresql | sort -V | tail -1)
pg_lsclusters -h | grep -q "^$V  *main " || pg_createcluster "$V" main >/dev/null
pg_ctlcluster "$V" main status >/dev/null 2>&1 || pg_ctlcluster "$V" main start
runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q <<'SQL'
SELECT 'CREATE ROLE app LOGIN CREATEDB PASSWORD ''app'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app')\gexec
-- DROP DATABASE ... WITH (FORCE) in the tests must be able to end an autovacuum worker.
SELECT 'GRANT pg_signal_backend TO app'
WHERE NOT pg_has_role('app', 'pg_signal_backend', 'MEMBER')\gexec
SQL
echo "PostgreSQL $V is up on 127.0.0.1:5432 (role app)."
