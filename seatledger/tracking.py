"""Exactly-once processing: state changes and the consumer's position in one transaction.

A consumer (the invoicer, the notifier) is an ``eventsourcing`` application whose recorder is a
*process recorder*: it stores tracking records ``(source, position)`` in the same transaction
as the new events. The source is either a Kafka partition (``"seatledger.ledger.v1:3"``, the
position being the message offset) or, in the embedded default, an upstream application's
notification log (``"ledger"``, the position being the notification id).

Single-row tracking refuses a position that is not greater than the stored one, so a
redelivered message can never be processed twice: :meth:`TrackedApplication.save_tracked`
reports it as a duplicate and records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, ProcessRecorder, Tracking


@dataclass(frozen=True, order=True)
class Position:
    """Where a message came from: a source (Kafka ``topic:partition`` or a notification log's
    application name) and the message's offset or notification id in it."""

    source: str
    offset: int

    @classmethod
    def kafka(cls, topic: str, partition: int, offset: int) -> Position:
        return cls(f"{topic}:{partition}", offset)

    @property
    def tracking(self) -> Tracking:
        return Tracking(application_name=self.source, notification_id=self.offset)


class ConcurrencyConflict(Exception):
    """Another writer changed one of the aggregates first; reload and retry."""


class TrackedApplication(Application[UUID]):
    """An application that records the position of every message it processed."""

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    def position(self, source: str) -> int | None:
        """The last processed offset or notification id of ``source``, if any."""
        return self.process_recorder.max_tracking_id(source)

    def has_processed(self, position: Position) -> bool:
        return self.process_recorder.has_tracking_id(position.source, position.offset)

    def save_tracked(self, position: Position, *aggregates: Any) -> bool:
        """Save the aggregates' new events and ``position`` in one transaction.

        Returns False, recording nothing, when ``position`` was processed already (a
        redelivery). Raises :class:`ConcurrencyConflict` when an aggregate was changed by
        someone else since it was loaded (the caller reloads and retries).
        """
        processing_event: ProcessingEvent[UUID] = ProcessingEvent(position.tracking)
        processing_event.collect_events(*aggregates)
        try:
            recordings = self._record(processing_event)
        except IntegrityError as exc:
            if self.has_processed(position):
                return False
            raise ConcurrencyConflict(str(exc)) from exc
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return True
