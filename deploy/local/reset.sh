#!/usr/bin/env bash
# Stop the local infrastructure and wipe its data (Kafka logs, the PostgreSQL cluster).
# Downloaded jars are kept.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
"$here/smtp.sh" reset
"$here/kafka.sh" reset
"$here/postgres.sh" reset
