# shellcheck shell=bash
# `source deploy/local/env.sh` points the product and its tests at the local infrastructure.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export SEATLEDGER_TEST_DATABASE_URL="${SEATLEDGER_TEST_DATABASE_URL:-postgresql://$SEATLEDGER_PG_USER:$SEATLEDGER_PG_PASSWORD@$SEATLEDGER_PG_HOST:$SEATLEDGER_PG_PORT/$SEATLEDGER_PG_DB}"
export SEATLEDGER_TEST_KAFKA_BOOTSTRAP_SERVERS="${SEATLEDGER_TEST_KAFKA_BOOTSTRAP_SERVERS:-$SEATLEDGER_KAFKA_HOST:$SEATLEDGER_KAFKA_PORT}"
