#!/usr/bin/env bash
# The production-like local run: `seatledger run ledger`, `run invoicer` and `run notifier`
# as three background processes against the local PostgreSQL, Kafka and SMTP sink
# (start those first with `make up`).
#   deploy/local/services.sh start|stop|status
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="$SEATLEDGER_STATE_DIR/services"
SECRET_FILE="$STATE/jwt-secret"
declare -A PORTS=(
    [ledger]="${SEATLEDGER_LEDGER_PORT:-8001}"
    [invoicer]="${SEATLEDGER_INVOICER_PORT:-8002}"
    [notifier]="${SEATLEDGER_NOTIFIER_PORT:-8003}"
)
SERVICES=(ledger invoicer notifier)

service_env() {
    export SEATLEDGER_DATABASE_URL="postgresql://$SEATLEDGER_PG_USER:$SEATLEDGER_PG_PASSWORD@$SEATLEDGER_PG_HOST:$SEATLEDGER_PG_PORT/$SEATLEDGER_PG_DB"
    export SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS="$SEATLEDGER_KAFKA_HOST:$SEATLEDGER_KAFKA_PORT"
    export SEATLEDGER_SMTP_HOST="$SEATLEDGER_SMTP_HOST" SEATLEDGER_SMTP_PORT="$SEATLEDGER_SMTP_PORT"
    export SEATLEDGER_DATA_DIR="$STATE/data"
    SEATLEDGER_JWT_SECRET="$(cat "$SECRET_FILE")"
    export SEATLEDGER_JWT_SECRET
}

start() {
    mkdir -p "$STATE/data"
    [ -x "$SEATLEDGER_ROOT/.venv/bin/seatledger" ] || die "no environment: run 'make up' first"
    port_in_use "$SEATLEDGER_PG_HOST" "$SEATLEDGER_PG_PORT" || die "PostgreSQL does not answer: run 'make up' first"
    port_in_use "$SEATLEDGER_KAFKA_HOST" "$SEATLEDGER_KAFKA_PORT" || die "Kafka does not answer: run 'make up' first"
    if [ ! -s "$SECRET_FILE" ]; then
        "$SEATLEDGER_PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$SECRET_FILE"
        chmod 600 "$SECRET_FILE"
    fi
    service_env
    for service in "${SERVICES[@]}"; do
        local pidfile="$STATE/$service.pid" port="${PORTS[$service]}"
        if pid_alive "$pidfile"; then
            log "$service already running (pid $(cat "$pidfile"), http://127.0.0.1:$port)"
            continue
        fi
        port_in_use 127.0.0.1 "$port" && die "port $port for the $service is in use ($(port_owner "$port"))"
        SEATLEDGER_HTTP_PORT="$port" nohup "$SEATLEDGER_ROOT/.venv/bin/seatledger" run "$service" \
            >"$STATE/$service.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    done
    for service in "${SERVICES[@]}"; do
        local pidfile="$STATE/$service.pid" port="${PORTS[$service]}"
        local deadline=$((SECONDS + SEATLEDGER_READY_TIMEOUT))
        until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
            pid_alive "$pidfile" || die "the $service exited while starting" "$STATE/$service.log"
            ((SECONDS < deadline)) || die "the $service was not ready within ${SEATLEDGER_READY_TIMEOUT}s" "$STATE/$service.log"
            sleep 0.3
        done
        log "$service ready at http://127.0.0.1:$port (log: $STATE/$service.log)"
    done
    log "a token: SEATLEDGER_JWT_SECRET=\$(cat $SECRET_FILE) .venv/bin/seatledger token --sub <user> [--scope billing:admin] [--step-up]"
    log "e-mails arrive in the SMTP sink's Maildir: $SEATLEDGER_STATE_DIR/smtp/maildir/new"
}

stop() {
    for service in notifier invoicer ledger; do
        local pidfile="$STATE/$service.pid"
        if pid_alive "$pidfile"; then
            local pid
            pid="$(cat "$pidfile")"
            log "stopping the $service (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 120); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.25
            done
            kill -0 "$pid" 2>/dev/null && { log "the $service did not stop in 30 s; killing it"; kill -9 "$pid" 2>/dev/null || true; }
        fi
        rm -f "$pidfile"
    done
}

status() {
    local code=0
    for service in "${SERVICES[@]}"; do
        if pid_alive "$STATE/$service.pid"; then
            echo "$service: running at http://127.0.0.1:${PORTS[$service]} (pid $(cat "$STATE/$service.pid"))"
        else
            echo "$service: not running"
            code=3
        fi
    done
    return $code
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
