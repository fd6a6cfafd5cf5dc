#!/usr/bin/env bash
# Install (if missing) and start the local infrastructure: PostgreSQL, Kafka, an SMTP sink. Idempotent.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
"$here/postgres.sh" start
"$here/kafka.sh" start
"$here/smtp.sh" start
