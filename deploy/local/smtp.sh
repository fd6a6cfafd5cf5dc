#!/usr/bin/env bash
# A real SMTP server for local runs (aiosmtpd), storing every message it accepts in a Maildir.
#   deploy/local/smtp.sh start|stop|status|reset
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE="$SEATLEDGER_STATE_DIR/smtp"
PIDFILE="$STATE/smtp.pid"
LOGFILE="$STATE/smtp.log"
MAILDIR="$STATE/maildir"

start() {
    mkdir -p "$STATE"
    if pid_alive "$PIDFILE"; then
        log "SMTP sink already running at $SEATLEDGER_SMTP_HOST:$SEATLEDGER_SMTP_PORT (pid $(cat "$PIDFILE"))"
        return 0
    fi
    rm -f "$PIDFILE"
    if port_in_use "$SEATLEDGER_SMTP_HOST" "$SEATLEDGER_SMTP_PORT"; then
        if "$SEATLEDGER_PYTHON" -c 'import smtplib,sys; smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=3).quit()' \
                "$SEATLEDGER_SMTP_HOST" "$SEATLEDGER_SMTP_PORT" >/dev/null 2>&1; then
            log "using the SMTP server already listening at $SEATLEDGER_SMTP_HOST:$SEATLEDGER_SMTP_PORT (not started here; stop leaves it running)"
            return 0
        fi
        die "port $SEATLEDGER_SMTP_PORT is in use by another program ($(port_owner "$SEATLEDGER_SMTP_PORT")); set SEATLEDGER_SMTP_SINK_PORT"
    fi
    [ -x "$SEATLEDGER_PYTHON" ] || die "no Python environment at $SEATLEDGER_PYTHON: run 'make sync' first"
    nohup "$SEATLEDGER_PYTHON" -m aiosmtpd -n -l "$SEATLEDGER_SMTP_HOST:$SEATLEDGER_SMTP_PORT" \
        -c aiosmtpd.handlers.Mailbox "$MAILDIR" >"$LOGFILE" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local deadline=$((SECONDS + SEATLEDGER_READY_TIMEOUT))
    until port_in_use "$SEATLEDGER_SMTP_HOST" "$SEATLEDGER_SMTP_PORT"; do
        pid_alive "$PIDFILE" || { rm -f "$PIDFILE"; die "the SMTP sink exited while starting" "$LOGFILE"; }
        ((SECONDS < deadline)) || die "the SMTP sink did not listen within ${SEATLEDGER_READY_TIMEOUT}s" "$LOGFILE"
        sleep 0.2
    done
    log "SMTP sink ready at $SEATLEDGER_SMTP_HOST:$SEATLEDGER_SMTP_PORT (messages in $MAILDIR/new)"
}

stop() {
    if pid_alive "$PIDFILE"; then
        log "stopping the SMTP sink (pid $(cat "$PIDFILE"))"
        kill "$(cat "$PIDFILE")" 2>/dev/null || true
    else
        log "SMTP sink: nothing of ours is running"
    fi
    rm -f "$PIDFILE"
}

status() {
    if pid_alive "$PIDFILE"; then
        echo "smtp: running at $SEATLEDGER_SMTP_HOST:$SEATLEDGER_SMTP_PORT (pid $(cat "$PIDFILE"), maildir $MAILDIR)"
    else
        echo "smtp: not running"
        return 3
    fi
}

reset() {
    stop
    rm -rf "$MAILDIR"
    log "SMTP sink mail wiped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    reset) reset ;;
    *) echo "usage: $0 start|stop|status|reset" >&2; exit 2 ;;
esac
