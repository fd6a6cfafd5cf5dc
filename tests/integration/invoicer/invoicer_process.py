"""An invoicer process for the crash tests.

Run as ``python -m tests.integration.invoicer.invoicer_process``,
configured by the ``SEATLEDGER_*`` environment like the real service, plus
``INVOICER_GROUP_ID`` and, optionally, ``INVOICER_KILL_AFTER``: after that many messages were
handled (their invoice and position committed to PostgreSQL) and BEFORE the consumer commits
the offset to Kafka, the process sends itself SIGKILL.
"""

from __future__ import annotations

import os
import signal
import threading

from schemas._base import EventData
from schemas.envelope import CloudEvent
from seatledger.config import load_settings
from seatledger.logging import configure_logging
from seatledger.metrics import new_registry
from seatledger.tracking import Position
from services.invoicer.bootstrap import build_invoicer


def main() -> None:
    configure_logging("WARNING")
    invoicer = build_invoicer(load_settings(), new_registry("invoicer"))
    kill_after = int(os.environ.get("INVOICER_KILL_AFTER", "0"))
    handled = 0

    def handle(cloud_event: CloudEvent, data: EventData, position: Position) -> None:
        nonlocal handled
        invoicer.handler(cloud_event, data, position)  # committed to PostgreSQL here
        handled += 1
        if kill_after and handled >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # before the consumer commits the offset

    consumer = invoicer.kafka_consumer(
        group_id=os.environ["INVOICER_GROUP_ID"],
        handler=handle,
        # Static membership: the restarted process takes over the killed member's partitions
        # at once instead of waiting for its session to time out.
        consumer_overrides={"session.timeout.ms": 6000, "group.instance.id": "invoicer-1"},
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    try:
        consumer.run(stop)
    finally:
        invoicer.close()


if __name__ == "__main__":
    main()
