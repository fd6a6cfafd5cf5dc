"""``seatledger topics ensure``: create the product's topics and their dead-letter topics.

Idempotent: an existing topic is left as it is (its partition count in particular: growing it
would move clouds to other partitions mid-stream). Topic names carry the deployment's
``SEATLEDGER_KAFKA_TOPIC_PREFIX``.
"""

from __future__ import annotations

import argparse
from typing import Any

from seatledger.cli import CommandError
from seatledger.config import load_settings
from seatledger.kafka import PRODUCT_TOPICS, ensure_topics, with_dead_letters


def register(subparsers: Any) -> None:
    topics = subparsers.add_parser("topics", help="manage the product's Kafka topics")
    topic_commands = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    ensure = topic_commands.add_parser(
        "ensure", help="create the topics and dead-letter topics that are missing (idempotent)"
    )
    ensure.add_argument("--partitions", type=int, help="partitions of a new topic (default 6)")
    ensure.add_argument(
        "--retention-ms", type=int, help="retention of a new topic in ms (-1 keeps forever)"
    )
    ensure.set_defaults(handler=run_ensure)


def run_ensure(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.kafka_bootstrap_servers:
        raise CommandError("SEATLEDGER_KAFKA_BOOTSTRAP_SERVERS is not set; there is no broker")
    partitions = args.partitions if args.partitions is not None else settings.kafka_topic_partitions
    if partitions < 1:
        raise CommandError("--partitions must be at least 1")
    retention = (
        args.retention_ms if args.retention_ms is not None else settings.kafka_topic_retention_ms
    )
    if retention < -1 or retention == 0:
        raise CommandError("--retention-ms must be positive, or -1 to keep events forever")
    specs = with_dead_letters(map(settings.topic, PRODUCT_TOPICS), partitions, retention)
    try:
        outcome = ensure_topics(settings.kafka_bootstrap_servers, specs)
    except Exception as exc:
        raise CommandError(f"could not ensure topics: {exc}") from exc
    for name in sorted(outcome):
        print(f"{outcome[name]:8} {name}")
    return 0
