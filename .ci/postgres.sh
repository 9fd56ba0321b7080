#!/usr/bin/env bash
# Start a local PostgreSQL for the reference backend's tests and print its URL on stdout.
#
# Idempotent: installs the `postgresql` package when no cluster exists, starts the first
# cluster (pg_ctlcluster, else `service postgresql start`), and creates the role `trayscan`
# (password `trayscan`) and the database `trayscan_test` it owns when they are missing.
# Everything but the URL goes to stderr, so `export TRAYSCAN_TEST_PG_URL=$(.ci/postgres.sh)`.
set -euo pipefail

ROLE=trayscan
PASSWORD=trayscan
DATABASE=trayscan_test
URL="postgresql+psycopg://${ROLE}:${PASSWORD}@127.0.0.1:5432/${DATABASE}"

log() { echo "postgres.sh: $*" >&2; }

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && sudo -n -u postgres -- "$@")
    fi
}

if ! command -v pg_lsclusters >/dev/null 2>&1; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
fi

cluster=$(pg_lsclusters --no-header | awk 'NR == 1 {print $1 " " $2}')
if [ -z "$cluster" ]; then
    log "no PostgreSQL cluster; creating one"
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_createcluster "$version" main >&2
    cluster="$version main"
fi
read -r version name <<<"$cluster"

if ! pg_lsclusters --no-header | awk -v v="$version" -v n="$name" \
        '$1 == v && $2 == n && $4 == "online" {found = 1} END {exit !found}'; then
    log "starting cluster $version/$name"
    pg_ctlcluster "$version" "$name" start >&2 || service postgresql start >&2
fi

for _ in $(seq 1 30); do
    if as_postgres psql -qtAc "SELECT 1" >/dev/null 2>&1; then
        break
    fi
    sleep 1
done

if [ "$(as_postgres psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname = '${ROLE}'")" != 1 ]; then
    log "creating role ${ROLE}"
    as_postgres psql -qc "CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASSWORD}'" >&2
fi
if [ "$(as_postgres psql -qtAc "SELECT 1 FROM pg_database WHERE datname = '${DATABASE}'")" != 1 ]; then
    log "creating database ${DATABASE}"
    as_postgres createdb -O "${ROLE}" "${DATABASE}" >&2
fi

echo "$URL"
