"""Every published domain event maps onto its contract model, with a stable event id."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from schemas import ledger as contract
from schemas.envelope import dataschema_uri
from services.ledger.contract import SOURCE, event_id, to_cloud_event
from services.ledger.domain import Actor, Cloud, HonouredQuote
from tests.unit.ledger.builders import terms

OWNER = Actor("user", "owner-1")


def drain(cloud: Cloud) -> list[Any]:
    """The aggregate's new events (removed from its pending list)."""
    return list(cloud.collect_events())


T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def a_cloud_with_every_event() -> tuple[Cloud, list]:
    cloud = Cloud.open(
        cloud_id=uuid.uuid4(),
        terms=terms(
            name="Acme", seat_price=Decimal("10.00"), term_start=date(2026, 1, 1), locale="en"
        ),
        seats=2,
        actor=OWNER,
        at=T0,
    )
    quote = HonouredQuote(uuid.uuid4(), date(2026, 3, 10), Decimal("14.19"))
    cloud.increase_seats(seats=4, actor=OWNER, at=T0, quote=quote)
    cloud.assign_license(user_id="u", rights_group="admin", actor=OWNER, at=T0)
    cloud.release_license(user_id="u", actor=OWNER, at=T0)
    cloud.set_rights_group(user_id="v", rights_group="employee", actor=OWNER, at=T0)
    cloud.set_rights_group(user_id="v", rights_group="admin", actor=OWNER, at=T0)
    cloud.schedule_reduction(seats=3, actor=OWNER, at=T0)
    cloud.change_billing_email(billing_email="ap@acme.example", actor=OWNER, at=T0)
    cloud.renew_due(at=datetime(2026, 4, 2, tzinfo=UTC))
    return cloud, drain(cloud)


def test_every_ledger_event_maps_onto_its_contract_model():
    cloud, events = a_cloud_with_every_event()
    published = [to_cloud_event(e) for e in events]
    assert all(p is not None for p in published)
    types = [p.type for p in published]
    assert sorted(set(types)) == sorted(cls.event_type() for cls in contract.LEDGER_EVENTS)
    by_type = {p.type: p for p in published}
    for model in contract.LEDGER_EVENTS:
        envelope = by_type[model.event_type()]
        assert envelope.source == SOURCE
        assert envelope.subject == str(cloud.id)
        assert envelope.dataschema == dataschema_uri(model.event_type())
        model.model_validate(envelope.data)  # the data satisfies the contract


def test_seats_increased_carries_charge_date_period_terms_and_quote():
    _cloud, events = a_cloud_with_every_event()
    envelope = to_cloud_event(events[1])
    data = contract.SeatsIncreased.model_validate(envelope.data)
    assert (data.seats_before, data.seats_after, data.seats_added) == (2, 4, 2)
    assert data.charge_date == date(2026, 3, 10)
    assert (data.period.start, data.period.end) == (date(2026, 3, 1), date(2026, 4, 1))
    assert data.terms.seat_price == Decimal("10.00")
    assert data.quote is not None
    assert data.quote.net == Decimal("14.19")
    assert envelope.data["terms"]["seat_price"] == "10.00"  # money travels as strings
    assert envelope.time == T0


def test_event_ids_are_stable_across_republication_and_distinct_per_event():
    cloud, events = a_cloud_with_every_event()
    first = [to_cloud_event(e).id for e in events]
    again = [to_cloud_event(e).id for e in events]
    assert first == again
    assert len(set(first)) == len(first)
    assert first[0] == str(event_id(cloud.id, 1))


def test_the_renewal_records_the_reduction_and_the_licenses():
    _, events = a_cloud_with_every_event()
    renewal = contract.PeriodRenewed.model_validate(to_cloud_event(events[-1]).data)
    assert renewal.period_index == 3
    assert (renewal.seats_before, renewal.seats, renewal.reduction_applied) == (4, 3, True)
    assert renewal.terms.billing_email == "ap@acme.example"


def test_the_renewal_publishes_the_requested_reduction_beside_the_seats_kept():
    cloud = Cloud.open(
        cloud_id=uuid.uuid4(),
        terms=a_cloud_with_every_event()[0].terms,
        seats=4,
        actor=OWNER,
        at=T0,
    )
    for user in ("a", "b", "c"):
        cloud.assign_license(user_id=user, rights_group="employee", actor=OWNER, at=T0)
    cloud.schedule_reduction(seats=1, actor=OWNER, at=T0)
    cloud.renew_due(at=datetime(2026, 4, 2, tzinfo=UTC))  # one renewal: March -> April
    renewal = contract.PeriodRenewed.model_validate(to_cloud_event(drain(cloud)[-1]).data)
    assert renewal.requested_seats == 1  # what the owner asked for
    assert (renewal.seats, renewal.licenses_assigned) == (3, 3)  # kept: three licenses held
    assert renewal.reduction_applied is True


def test_a_renewal_without_a_scheduled_reduction_publishes_no_requested_seats():
    cloud = Cloud.open(
        cloud_id=uuid.uuid4(),
        terms=a_cloud_with_every_event()[0].terms,
        seats=2,
        actor=OWNER,
        at=T0,
    )
    cloud.renew_due(at=datetime(2026, 4, 2, tzinfo=UTC))
    envelope = to_cloud_event(drain(cloud)[-1])
    assert envelope.data["requested_seats"] is None
    assert contract.PeriodRenewed.model_validate(envelope.data).reduction_applied is False
