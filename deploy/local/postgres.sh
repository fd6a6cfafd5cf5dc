#!/usr/bin/env bash
# PostgreSQL from Debian's packages, as a cluster of this product's own (initdb + pg_ctl),
# listening on 127.0.0.1:$SEATLEDGER_PG_PORT, with a role and database for the product.
#   deploy/local/postgres.sh start|stop|status|reset
# start installs the packages if missing (apt-get, as root) and is idempotent.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="$SEATLEDGER_STATE_DIR/postgres"
STARTED="$STATE/started-by-us"

if [ "$(id -u)" = 0 ]; then
    # The server refuses to run as root: the cluster belongs to the postgres user and lives
    # where that user can reach it, whatever folder this checkout is in.
    PGDATA_DIR="${SEATLEDGER_PG_DATA_DIR:-/var/lib/postgresql/seatledger-$SEATLEDGER_PG_PORT}"
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
    PGDATA_DIR="${SEATLEDGER_PG_DATA_DIR:-$STATE/data}"
    as_pg() { "$@"; }
fi
PGLOG="$PGDATA_DIR.log"
SOCKET_DIR="/tmp"

pg_bin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$dir" ] && echo "$dir"
}

ensure_packages() {
    [ -n "$(pg_bin)" ] && return 0
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and installing it needs root: apt-get install postgresql"
    log "installing PostgreSQL from Debian's packages"
    mkdir -p "$STATE"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql postgresql-contrib; } \
        >"$STATE/apt.log" 2>&1 || die "apt-get install postgresql failed; see $STATE/apt.log" "$STATE/apt.log"
    [ -n "$(pg_bin)" ] || die "apt-get installed no PostgreSQL server binaries"
}

ready() {
    "$(pg_bin)/pg_isready" -q -h "$SEATLEDGER_PG_HOST" -p "$SEATLEDGER_PG_PORT" -t 2
}

wait_ready() {
    local deadline=$((SECONDS + SEATLEDGER_READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        ready && return 0
        sleep 0.5
    done
    die "PostgreSQL did not answer at $SEATLEDGER_PG_HOST:$SEATLEDGER_PG_PORT within ${SEATLEDGER_READY_TIMEOUT}s" "$PGLOG"
}

psql_admin() {
    as_pg "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$SEATLEDGER_PG_PORT" -d postgres "$@"
}

ensure_role_and_db() {
    psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$SEATLEDGER_PG_USER'" | grep -q 1 \
        || psql_admin -c "CREATE ROLE \"$SEATLEDGER_PG_USER\" LOGIN CREATEDB PASSWORD '$SEATLEDGER_PG_PASSWORD'"
    psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$SEATLEDGER_PG_DB'" | grep -q 1 \
        || psql_admin -c "CREATE DATABASE \"$SEATLEDGER_PG_DB\" OWNER \"$SEATLEDGER_PG_USER\""
}

our_server_running() {
    [ -f "$PGDATA_DIR/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

start() {
    mkdir -p "$STATE"
    ensure_packages
    if our_server_running; then
        wait_ready
        touch "$STARTED"
        ensure_role_and_db
        log "PostgreSQL already running at $SEATLEDGER_PG_HOST:$SEATLEDGER_PG_PORT ($PGDATA_DIR)"
        return 0
    fi
    if port_in_use "$SEATLEDGER_PG_HOST" "$SEATLEDGER_PG_PORT"; then
        if ready && PGPASSWORD="$SEATLEDGER_PG_PASSWORD" "$(pg_bin)/psql" -X -q -h "$SEATLEDGER_PG_HOST" \
                -p "$SEATLEDGER_PG_PORT" -U "$SEATLEDGER_PG_USER" -d "$SEATLEDGER_PG_DB" -c 'SELECT 1' >/dev/null 2>&1; then
            log "using the PostgreSQL server already listening at $SEATLEDGER_PG_HOST:$SEATLEDGER_PG_PORT (not started here; stop leaves it running)"
            return 0
        fi
        die "port $SEATLEDGER_PG_PORT is in use by another program ($(port_owner "$SEATLEDGER_PG_PORT")) that does not accept role $SEATLEDGER_PG_USER; set SEATLEDGER_PG_PORT"
    fi
    if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
        log "creating a PostgreSQL cluster in $PGDATA_DIR"
        mkdir -p "$PGDATA_DIR"
        [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA_DIR"
        chmod 700 "$PGDATA_DIR"
        as_pg "$(pg_bin)/initdb" -D "$PGDATA_DIR" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            -E UTF8 --locale=C.UTF-8 >"$STATE/initdb.log" 2>&1 || die "initdb failed" "$STATE/initdb.log"
    fi
    [ "$(id -u)" = 0 ] && { touch "$PGLOG"; chown postgres:postgres "$PGLOG"; }
    log "starting PostgreSQL at $SEATLEDGER_PG_HOST:$SEATLEDGER_PG_PORT (log: $PGLOG)"
    as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t "$SEATLEDGER_READY_TIMEOUT" \
        -o "-c listen_addresses=$SEATLEDGER_PG_HOST -p $SEATLEDGER_PG_PORT -c unix_socket_directories=$SOCKET_DIR -c max_connections=200" \
        start >/dev/null 2>&1 || die "PostgreSQL did not start" "$PGLOG"
    touch "$STARTED"
    wait_ready
    ensure_role_and_db
    log "PostgreSQL ready at $SEATLEDGER_PG_HOST:$SEATLEDGER_PG_PORT (database $SEATLEDGER_PG_DB, role $SEATLEDGER_PG_USER)"
}

stop() {
    if [ -f "$STARTED" ] && [ -n "$(pg_bin)" ] && our_server_running; then
        log "stopping PostgreSQL ($PGDATA_DIR)"
        as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
    else
        log "PostgreSQL: nothing of ours is running"
    fi
    rm -f "$STARTED"
}

status() {
    if [ -n "$(pg_bin)" ] && our_server_running; then
        echo "postgres: running at $SEATLEDGER_PG_HOST:$SEATLEDGER_PG_PORT ($PGDATA_DIR)"
    else
        echo "postgres: not running"
        return 3
    fi
}

reset() {
    stop
    if [ -d "$PGDATA_DIR" ]; then
        rm -rf "$PGDATA_DIR" "$PGLOG"
        log "PostgreSQL data wiped"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    reset) reset ;;
    *) echo "usage: $0 start|stop|status|reset" >&2; exit 2 ;;
esac
