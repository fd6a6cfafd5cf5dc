#!/usr/bin/env bash
# Stop what deploy/local/up.sh started (by pid file); servers it found running are left alone.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
"$here/services.sh" stop
"$here/smtp.sh" stop
"$here/kafka.sh" stop
"$here/postgres.sh" stop
