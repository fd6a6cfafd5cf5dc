#!/usr/bin/env bash
# Install (if missing) and start the local infrastructure: PostgreSQL and Kafka. Idempotent.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
"$here/postgres.sh" start
"$here/kafka.sh" start
