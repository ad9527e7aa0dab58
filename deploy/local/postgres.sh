#!/usr/bin/env bash
# Local PostgreSQL for the tests, from Debian's packages, on 127.0.0.1:5432. No containers.
#
# Usage: deploy/local/postgres.sh {up|down|url}
#
#   up    start the cluster on port 5432 (creating one if none exists), then make sure the role
#         greenpartners (password greenpartners, CREATEDB) and database greenpartners_test exist
#   down  stop the cluster if `up` started it
#   url   print the asyncpg URL of the test database
#
# Environment:
#   TEST_DATABASE_URL  use this server instead; up and down do nothing, url prints it
set -euo pipefail

PORT=5432
ROLE=greenpartners
PASSWORD=greenpartners
DATABASE=greenpartners_test
# Which cluster `up` started, so `down` stops only that one (var/ is git-ignored).
STARTED_MARK="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)/var/postgres-started"

log() { printf 'postgres.sh: %s\n' "$*"; }
die() { printf 'postgres.sh: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }
as_postgres() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

# The newest installed server version, e.g. 15.
server_version() {
    local binary
    binary="$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n 1)" || true
    [[ -n "$binary" ]] && basename "$(dirname "$(dirname "$binary")")"
}

# "<version> <name> <status>" of the cluster configured for $PORT, if any.
cluster_on_port() {
    pg_lsclusters --no-header | awk -v port="$PORT" '$3 == port { print $1, $2, $4; exit }'
}

sql() { as_postgres psql --quiet --no-psqlrc -X -v ON_ERROR_STOP=1 -p "$PORT" -d postgres -tAc "$1"; }

cmd_up() {
    if [[ -n "${TEST_DATABASE_URL:-}" ]]; then
        log "TEST_DATABASE_URL is set: using that server, not starting a local one"
        return 0
    fi
    local version
    version="$(server_version)" || true
    if ! command -v pg_ctlcluster >/dev/null || [[ -z "$version" ]]; then
        die "PostgreSQL server not installed: run 'apt-get install postgresql' (Debian's package), or set TEST_DATABASE_URL"
    fi

    local cluster name status
    cluster="$(cluster_on_port)"
    if [[ -z "$cluster" ]]; then
        log "creating PostgreSQL $version cluster 'main' on port $PORT"
        as_root pg_createcluster "$version" main --port "$PORT" >/dev/null
        cluster="$(cluster_on_port)"
    fi
    read -r version name status <<<"$cluster"
    if [[ "$status" != online* ]]; then
        log "starting PostgreSQL $version/$name on 127.0.0.1:$PORT"
        as_root pg_ctlcluster "$version" "$name" start
        mkdir -p "$(dirname "$STARTED_MARK")"
        echo "$version $name" >"$STARTED_MARK"
    fi

    if [[ -z "$(sql "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" ]]; then
        sql "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
    else
        sql "ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
    fi
    if [[ -z "$(sql "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" ]]; then
        sql "CREATE DATABASE $DATABASE OWNER $ROLE"
    fi
    log "PostgreSQL $version/$name up: $(cmd_url)"
}

cmd_down() {
    if [[ -n "${TEST_DATABASE_URL:-}" ]]; then
        log "TEST_DATABASE_URL is set: nothing to stop"
        return 0
    fi
    if [[ ! -f "$STARTED_MARK" ]]; then
        log "no cluster started by 'up' to stop"
        return 0
    fi
    local version name
    read -r version name <"$STARTED_MARK"
    as_root pg_ctlcluster "$version" "$name" stop
    rm -f "$STARTED_MARK"
    log "PostgreSQL $version/$name stopped"
}

cmd_url() {
    echo "${TEST_DATABASE_URL:-postgresql+asyncpg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE}"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    url) cmd_url ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
