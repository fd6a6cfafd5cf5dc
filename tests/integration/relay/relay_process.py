"""A relay in a process of its own, for the crash test:

    python -m tests.integration.relay.relay_process DATABASE_URL TOPIC BOOTSTRAP DATA_DIR

It maps slowly (half a millisecond per event) so that a SIGKILL lands mid-batch.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from schemas.envelope import CloudEvent
from seatledger.kafka import producer_config
from seatledger.relay import OutboxRelay
from tests.integration.relay.support import desk_app, to_cloud_event

BATCH_SIZE = 100
MAX_IN_FLIGHT = 3


def slow_mapper(domain_event: Any) -> CloudEvent | None:
    time.sleep(0.0005)
    return to_cloud_event(domain_event)


def main() -> None:
    database_url, topic, bootstrap, data_dir = sys.argv[1:5]
    app = desk_app(database_url, Path(data_dir))
    relay = OutboxRelay(
        app,
        topic,
        slow_mapper,
        producer_config(bootstrap, "crash-test-relay"),
        batch_size=BATCH_SIZE,
        max_in_flight=MAX_IN_FLIGHT,
    )
    print("ready", flush=True)
    relay.run(threading.Event())


if __name__ == "__main__":
    main()
