#!/usr/bin/env bash
# Apache Kafka 4.x, one node in KRaft mode, from its Maven Central jars, on the local JVM.
#   deploy/local/kafka.sh start|stop|status|reset
# start is idempotent: a running broker of this checkout is reused; jars are downloaded once.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_DIR="$SEATLEDGER_ROOT/deploy/local/kafka"
STATE="$SEATLEDGER_STATE_DIR/kafka"
PIDFILE="$STATE/kafka.pid"
LOGFILE="$STATE/logs/server.log"
STDOUT="$STATE/logs/stdout.log"
POM_SUM="$(sha256sum "$KAFKA_DIR/pom.xml" | cut -c1-12)"
JARS="$SEATLEDGER_CACHE_DIR/kafka/jars-$POM_SUM"
BOOTSTRAP="$SEATLEDGER_KAFKA_HOST:$SEATLEDGER_KAFKA_PORT"

ensure_jars() {
    [ -f "$JARS/.complete" ] && return 0
    command -v java >/dev/null 2>&1 || die "java not found: install a JDK 17 or newer"
    command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (apt-get install maven)"
    log "downloading the Kafka broker jars from Maven Central into $JARS"
    mkdir -p "$JARS" "$STATE/logs"
    if ! mvn -B -q -f "$KAFKA_DIR/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$JARS" >"$STATE/logs/mvn.log" 2>&1; then
        rm -rf "$JARS"
        die "downloading the Kafka jars failed (mvn dependency:copy-dependencies); see $STATE/logs/mvn.log" "$STATE/logs/mvn.log"
    fi
    touch "$JARS/.complete"
}

broker_answers() { # TIMEOUT_SECONDS
    "$SEATLEDGER_PYTHON" "$SEATLEDGER_ROOT/deploy/local/wait_kafka.py" "$BOOTSTRAP" "$1" >/dev/null 2>&1
}

wait_ready() {
    local deadline=$((SECONDS + SEATLEDGER_READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        if [ -f "$PIDFILE" ] && ! pid_alive "$PIDFILE"; then
            rm -f "$PIDFILE"
            die "Kafka exited while starting" "$LOGFILE"
        fi
        broker_answers 3 && return 0
        sleep 1
    done
    die "Kafka did not answer at $BOOTSTRAP within ${SEATLEDGER_READY_TIMEOUT}s" "$LOGFILE"
}

start() {
    mkdir -p "$STATE/data" "$STATE/logs"
    if pid_alive "$PIDFILE"; then
        wait_ready
        log "Kafka already running at $BOOTSTRAP (pid $(cat "$PIDFILE"))"
        return 0
    fi
    rm -f "$PIDFILE"
    if port_in_use "$SEATLEDGER_KAFKA_HOST" "$SEATLEDGER_KAFKA_PORT"; then
        if broker_answers 3; then
            log "using the Kafka broker already listening at $BOOTSTRAP (not started here; stop leaves it running)"
            return 0
        fi
        die "port $SEATLEDGER_KAFKA_PORT is in use by another program ($(port_owner "$SEATLEDGER_KAFKA_PORT")) that is not a Kafka broker; set SEATLEDGER_KAFKA_PORT"
    fi
    if port_in_use "$SEATLEDGER_KAFKA_HOST" "$SEATLEDGER_KAFKA_CONTROLLER_PORT"; then
        die "the Kafka controller port $SEATLEDGER_KAFKA_CONTROLLER_PORT is in use by another program ($(port_owner "$SEATLEDGER_KAFKA_CONTROLLER_PORT")); set SEATLEDGER_KAFKA_CONTROLLER_PORT"
    fi
    [ -x "$SEATLEDGER_PYTHON" ] || die "no Python environment at $SEATLEDGER_PYTHON: run 'make sync' first"
    ensure_jars
    sed -e "s#@HOST@#$SEATLEDGER_KAFKA_HOST#g" -e "s#@PORT@#$SEATLEDGER_KAFKA_PORT#g" \
        -e "s#@CONTROLLER_PORT@#$SEATLEDGER_KAFKA_CONTROLLER_PORT#g" -e "s#@DATA_DIR@#$STATE/data#g" \
        "$KAFKA_DIR/server.properties.in" >"$STATE/server.properties"
    local jvm=(java "-Xms256m" "-Xmx$SEATLEDGER_KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.properties" "-Dseatledger.kafka.logfile=$LOGFILE"
        -cp "$JARS/*")
    if [ ! -f "$STATE/data/meta.properties" ]; then
        # A URL-safe base64 id may begin with "-": pass it as --cluster-id=ID, never as -t ID.
        local cluster_id
        cluster_id="$("$SEATLEDGER_PYTHON" -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
        "${jvm[@]}" kafka.tools.StorageTool format --standalone --cluster-id="$cluster_id" \
            -c "$STATE/server.properties" >"$STATE/logs/format.log" 2>&1 \
            || die "formatting the Kafka log directory failed" "$STATE/logs/format.log"
    fi
    log "starting Kafka at $BOOTSTRAP (log: $LOGFILE)"
    nohup "${jvm[@]}" kafka.Kafka "$STATE/server.properties" >"$STDOUT" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    wait_ready
    log "Kafka ready at $BOOTSTRAP (pid $(cat "$PIDFILE"))"
}

stop() {
    if ! pid_alive "$PIDFILE"; then
        rm -f "$PIDFILE"
        log "Kafka: nothing of ours is running"
        return 0
    fi
    local pid
    pid="$(cat "$PIDFILE")"
    log "stopping Kafka (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "Kafka did not stop within 30 s; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}

status() {
    if pid_alive "$PIDFILE"; then
        echo "kafka: running at $BOOTSTRAP (pid $(cat "$PIDFILE"))"
    else
        echo "kafka: not running"
        return 3
    fi
}

reset() {
    stop
    rm -rf "$STATE/data" "$STATE/server.properties"
    log "Kafka data wiped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    reset) reset ;;
    *) echo "usage: $0 start|stop|status|reset" >&2; exit 2 ;;
esac
