"""Exit 0 when a Kafka broker answers a metadata request: wait_kafka.py BOOTSTRAP TIMEOUT_S."""

import sys

from confluent_kafka.admin import AdminClient


def main() -> int:
    bootstrap, timeout = sys.argv[1], float(sys.argv[2])
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception as exc:
        print(f"no answer from {bootstrap}: {exc}", file=sys.stderr)
        return 1
    return 0 if metadata.brokers else 1


if __name__ == "__main__":
    sys.exit(main())
