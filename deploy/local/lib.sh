# shellcheck shell=bash
# Shared settings and helpers of the local infrastructure scripts. Sourced, never run.
# Every setting can be overridden from the environment.

SEATLEDGER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export SEATLEDGER_ROOT

# Where this checkout keeps downloaded jars (reused across starts) and runtime state.
SEATLEDGER_CACHE_DIR="${SEATLEDGER_CACHE_DIR:-$SEATLEDGER_ROOT/.cache}"
SEATLEDGER_STATE_DIR="${SEATLEDGER_STATE_DIR:-$SEATLEDGER_CACHE_DIR/local}"

SEATLEDGER_KAFKA_HOST="${SEATLEDGER_KAFKA_HOST:-127.0.0.1}"
SEATLEDGER_KAFKA_PORT="${SEATLEDGER_KAFKA_PORT:-9092}"
SEATLEDGER_KAFKA_CONTROLLER_PORT="${SEATLEDGER_KAFKA_CONTROLLER_PORT:-9093}"
SEATLEDGER_KAFKA_HEAP="${SEATLEDGER_KAFKA_HEAP:-768m}"

SEATLEDGER_PG_HOST="${SEATLEDGER_PG_HOST:-127.0.0.1}"
SEATLEDGER_PG_PORT="${SEATLEDGER_PG_PORT:-5432}"
SEATLEDGER_PG_USER="${SEATLEDGER_PG_USER:-seatledger}"
SEATLEDGER_PG_PASSWORD="${SEATLEDGER_PG_PASSWORD:-seatledger}"
SEATLEDGER_PG_DB="${SEATLEDGER_PG_DB:-seatledger}"

# The local SMTP sink (a real SMTP server that keeps what it accepts in a Maildir).
SEATLEDGER_SMTP_HOST="${SEATLEDGER_SMTP_SINK_HOST:-127.0.0.1}"
SEATLEDGER_SMTP_PORT="${SEATLEDGER_SMTP_SINK_PORT:-2525}"

# Seconds a server may take to answer before a start is declared failed.
SEATLEDGER_READY_TIMEOUT="${SEATLEDGER_READY_TIMEOUT:-90}"

SEATLEDGER_PYTHON="${SEATLEDGER_PYTHON:-$SEATLEDGER_ROOT/.venv/bin/python}"

log() { printf '[seatledger] %s\n' "$*" >&2; }

# die CAUSE [LOGFILE]: one line naming the cause, then the tail of the server log if given.
die() {
    printf 'seatledger: %s\n' "$1" >&2
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        printf -- '--- last lines of %s ---\n' "$2" >&2
        tail -n 25 "$2" >&2
    fi
    exit 1
}

# port_in_use HOST PORT: true when something accepts TCP connections there.
port_in_use() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# pid_alive PIDFILE: true when the file names a running process.
pid_alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# port_owner PORT: pid and command of the listener, where ss can tell.
port_owner() {
    if command -v ss >/dev/null 2>&1; then
        ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/\1/p' | head -n 1
    fi
}
