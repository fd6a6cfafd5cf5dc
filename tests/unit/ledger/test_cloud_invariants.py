"""The Cloud aggregate: every invariant and the period arithmetic, without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from seatledger.billing import prorate
from services.ledger.application import quote_expiry
from services.ledger.domain import (
    Actor,
    ChargeDateOutsidePeriod,
    Cloud,
    HonouredQuote,
    InvalidBillingEmail,
    InvalidContract,
    InvalidSeatReduction,
    InvalidUserId,
    LicenseAlreadyHeld,
    LicenseNotHeld,
    NoFreeSeat,
    SeatsMustGrow,
    UnbillableContract,
    UnknownRightsGroup,
    UnlicensedRightsGroup,
)
from tests.unit.ledger.builders import terms

OWNER = Actor("user", "owner-1")


def drain(cloud: Cloud) -> list[Any]:
    """The aggregate's new events (removed from its pending list)."""
    return list(cloud.collect_events())


T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def open_cloud(seats: int = 3, at: datetime = T0, **term_changes) -> Cloud:
    return Cloud.open(
        cloud_id=uuid.uuid4(), terms=terms(**term_changes), seats=seats, actor=OWNER, at=at
    )


def test_opening_records_contract_opened_with_first_period_containing_the_local_date():
    cloud = open_cloud()
    events = drain(cloud)
    assert [type(e).__name__ for e in events] == ["ContractOpened"]
    # Anchor day 31 clamps to Feb 28: the period containing Mar 10 is [Feb 28, Mar 31).
    assert cloud.current_period.start == date(2026, 2, 28)
    assert cloud.current_period.end == date(2026, 3, 31)
    assert cloud.seats == 3
    assert cloud.licenses_free == 3


def test_a_term_starting_in_the_future_starts_with_its_first_period():
    cloud = open_cloud(term_start=date(2026, 6, 1))
    assert cloud.period_index == 0
    assert cloud.current_period.start == date(2026, 6, 1)
    # A purchase before the term starts is charged from the first day: the full period.
    assert cloud.charge_date_at(T0) == date(2026, 6, 1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"currency": "EURO"}, "ISO 4217"),
        ({"currency": "XXX"}, "ISO 4217"),
        ({"seat_price": Decimal("-1")}, "non-negative"),
        ({"billing_period": "weekly"}, "monthly"),
        ({"time_zone": "Mars/Olympus"}, "IANA"),
        ({"tax_rate": Decimal("101")}, "between 0 and 100"),
        ({"locale": "fr"}, "locale"),
        ({"name": "  "}, "name"),
    ],
)
def test_invalid_terms_are_refused(changes, message):
    with pytest.raises(InvalidContract, match=message):
        open_cloud(**changes)


def test_a_contract_needs_at_least_one_seat_and_a_valid_billing_email():
    with pytest.raises(InvalidContract):
        open_cloud(seats=0)
    with pytest.raises(InvalidBillingEmail):
        open_cloud(billing_email="not-an-address")


def test_guest_can_not_be_a_licensed_rights_group():
    with pytest.raises(InvalidContract, match="guest"):
        Cloud.open(
            cloud_id=uuid.uuid4(),
            terms=terms(),
            seats=1,
            licensed_rights_groups=("admin", "guest"),
            actor=OWNER,
            at=T0,
        )


def test_seats_only_grow_through_a_purchase():
    cloud = open_cloud(seats=3)
    drain(cloud)
    for total in (3, 2):
        with pytest.raises(SeatsMustGrow):
            cloud.increase_seats(seats=total, actor=OWNER, at=T0)
    assert drain(cloud) == []
    cloud.increase_seats(seats=5, actor=OWNER, at=T0)
    (event,) = drain(cloud)
    assert (event.seats_before, event.seats_after) == (3, 5)
    assert event.actor == OWNER


def test_a_purchase_is_prorated_with_the_shared_proration_and_the_local_charge_date():
    cloud = open_cloud(seats=3)
    # 23:30 UTC on Mar 10 is already Mar 11 in Berlin.
    late = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    cloud.increase_seats(seats=5, actor=OWNER, at=late)
    event = drain(cloud)[-1]
    assert event.charge_date == date(2026, 3, 11)
    expected = prorate(2, Decimal("31.00"), cloud.current_period, date(2026, 3, 11), "EUR")
    assert event.net == expected.net == Decimal("40.00")  # 2 x 31 x 20/31
    assert (event.period_start, event.period_end) == (date(2026, 2, 28), date(2026, 3, 31))
    assert event.terms == cloud.terms


def test_a_purchase_with_a_quote_honours_the_quoted_date_and_amount():
    cloud = open_cloud(seats=3)
    quote = HonouredQuote(uuid.uuid4(), date(2026, 3, 10), Decimal("42.00"))
    cloud.increase_seats(seats=4, actor=OWNER, at=T0 + timedelta(minutes=5), quote=quote)
    event = drain(cloud)[-1]
    assert event.charge_date == date(2026, 3, 10)
    assert event.net == Decimal("42.00")
    assert event.quote == quote


def test_a_quote_outside_the_current_period_is_refused():
    cloud = open_cloud(seats=3)
    with pytest.raises(ChargeDateOutsidePeriod):
        cloud.quote(seats=4, charge_date=date(2026, 4, 2))


def test_licenses_never_exceed_seats():
    cloud = open_cloud(seats=2)
    cloud.assign_license(user_id="a", rights_group="admin", actor=OWNER, at=T0)
    cloud.assign_license(user_id="b", rights_group="employee", actor=OWNER, at=T0)
    with pytest.raises(NoFreeSeat):
        cloud.assign_license(user_id="c", rights_group="employee", actor=OWNER, at=T0)
    assert cloud.licenses_assigned == 2
    assert cloud.licenses_free == 0


def test_a_user_holds_at_most_one_license_per_cloud():
    cloud = open_cloud(seats=5)
    cloud.assign_license(user_id="a", rights_group="admin", actor=OWNER, at=T0)
    with pytest.raises(LicenseAlreadyHeld):
        cloud.assign_license(user_id="a", rights_group="employee", actor=OWNER, at=T0)


def test_guest_needs_no_license_and_unknown_groups_are_refused():
    cloud = open_cloud(seats=5)
    with pytest.raises(UnlicensedRightsGroup):
        cloud.assign_license(user_id="a", rights_group="guest", actor=OWNER, at=T0)
    with pytest.raises(UnknownRightsGroup):
        cloud.assign_license(user_id="a", rights_group="superuser", actor=OWNER, at=T0)


def test_licensed_rights_groups_are_configurable():
    cloud = Cloud.open(
        cloud_id=uuid.uuid4(),
        terms=terms(),
        seats=2,
        licensed_rights_groups=("editor",),
        actor=OWNER,
        at=T0,
    )
    cloud.assign_license(user_id="a", rights_group="editor", actor=OWNER, at=T0)
    with pytest.raises(UnknownRightsGroup):
        cloud.assign_license(user_id="b", rights_group="admin", actor=OWNER, at=T0)


def test_releasing_a_user_who_holds_no_license_is_an_error():
    cloud = open_cloud()
    with pytest.raises(LicenseNotHeld):
        cloud.release_license(user_id="nobody", actor=OWNER, at=T0)
    cloud.assign_license(user_id="a", rights_group="admin", actor=OWNER, at=T0)
    cloud.release_license(user_id="a", actor=OWNER, at=T0)
    released = drain(cloud)[-1]
    assert (released.previous_rights_group, released.licenses_assigned) == ("admin", 0)
    assert cloud.licenses_free == 3


def test_renewal_catches_up_every_missed_period_once():
    cloud = open_cloud(seats=3)
    drain(cloud)
    # From [Feb 28, Mar 31) to Jun 15: Mar 31, Apr 30, May 31 starts are due.
    renewed = cloud.renew_due(at=datetime(2026, 6, 15, tzinfo=UTC))
    events = drain(cloud)
    assert renewed == 3
    assert [(e.period_start, e.period_end) for e in events] == [
        (date(2026, 3, 31), date(2026, 4, 30)),
        (date(2026, 4, 30), date(2026, 5, 31)),
        (date(2026, 5, 31), date(2026, 6, 30)),
    ]
    assert [e.period_index for e in events] == [2, 3, 4]
    assert cloud.renew_due(at=datetime(2026, 6, 15, tzinfo=UTC)) == 0


def test_renewal_happens_at_local_midnight_of_the_contract_zone():
    cloud = open_cloud(seats=3)
    # Mar 30, 22:30 UTC is Mar 31, 00:30 in Berlin (CEST from Mar 29): the period ended.
    assert cloud.renew_due(at=datetime(2026, 3, 30, 21, 30, tzinfo=UTC)) == 0
    assert cloud.renew_due(at=datetime(2026, 3, 30, 22, 30, tzinfo=UTC)) == 1


def test_a_reduction_takes_effect_at_the_next_period_and_never_below_assigned_licenses():
    cloud = open_cloud(seats=5)
    for user in ("a", "b", "c"):
        cloud.assign_license(user_id=user, rights_group="employee", actor=OWNER, at=T0)
    cloud.schedule_reduction(seats=2, actor=OWNER, at=T0)
    scheduled = drain(cloud)[-1]
    assert scheduled.effective_date == date(2026, 3, 31)
    assert cloud.seats == 5  # unchanged until the period ends
    cloud.renew_due(at=datetime(2026, 4, 1, tzinfo=UTC))
    renewal = drain(cloud)[-1]
    assert renewal.requested_seats == 2
    assert renewal.licenses_assigned == 3
    assert renewal.seats == 3
    assert renewal.seats_before == 5
    assert renewal.reduction_applied
    assert cloud.seats == 3
    assert cloud.scheduled_reduction is None


def test_a_reduction_must_name_a_lower_total_of_at_least_one():
    cloud = open_cloud(seats=3)
    for seats in (3, 4, 0):
        with pytest.raises(InvalidSeatReduction):
            cloud.schedule_reduction(seats=seats, actor=OWNER, at=T0)


def test_changing_the_billing_email_records_only_a_change():
    cloud = open_cloud()
    drain(cloud)
    assert not cloud.change_billing_email(billing_email="billing@acme.example", actor=OWNER, at=T0)
    assert cloud.change_billing_email(billing_email="ap@acme.example", actor=OWNER, at=T0)
    assert cloud.terms.billing_email == "ap@acme.example"
    assert len(drain(cloud)) == 1
    with pytest.raises(InvalidBillingEmail):
        cloud.change_billing_email(billing_email="nope", actor=OWNER, at=T0)


def test_a_quote_expires_after_its_ttl_or_at_local_midnight_whichever_is_first():
    noon = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)  # 12:00 in Berlin
    assert quote_expiry(noon, "Europe/Berlin", 900) == noon + timedelta(minutes=15)
    late = datetime(2026, 3, 10, 22, 50, tzinfo=UTC)  # 23:50 in Berlin
    assert quote_expiry(late, "Europe/Berlin", 900) == datetime(2026, 3, 10, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"term_start": date(9999, 12, 16)}, "term start"),
        ({"term_start": date(1999, 12, 31)}, "term start"),
        ({"seat_price": Decimal("1" * 21)}, "seat price"),
        ({"seat_price": Decimal("0E-5000000")}, "seat price"),
        ({"tax_rate": Decimal("0E-5000000")}, "tax rate"),
        ({"time_zone": "localtime"}, "IANA"),
        ({"time_zone": "right/UTC"}, "IANA"),
        ({"owner_id": "a/b"}, "owner id"),
        ({"name": "Acme\x00"}, "name"),
    ],
)
def test_the_domain_refuses_terms_outside_the_field_rules(changes, message):
    with pytest.raises(InvalidContract, match=message):
        open_cloud(**changes)


@pytest.mark.parametrize("address", ["a,b@example.com", "a(b)@example.com", "a\x01b@x.example"])
def test_the_domain_refuses_undeliverable_billing_addresses(address):
    with pytest.raises(InvalidBillingEmail):
        open_cloud(billing_email=address)
    cloud = open_cloud()
    drain(cloud)
    with pytest.raises(InvalidBillingEmail):
        cloud.change_billing_email(billing_email=address, actor=OWNER, at=T0)
    assert drain(cloud) == []


@pytest.mark.parametrize("user_id", ["a/b", "../x", " ", ""])
def test_a_new_license_needs_a_user_id_of_the_rule(user_id):
    cloud = open_cloud()
    drain(cloud)
    with pytest.raises(InvalidUserId):
        cloud.assign_license(user_id=user_id, rights_group="employee", actor=OWNER, at=T0)
    assert drain(cloud) == []


def _recorded_by_an_older_release(**changes: Any) -> Cloud:
    cloud: Cloud = Cloud._create(
        Cloud.ContractOpened,
        id=uuid.uuid4(),
        timestamp=T0,
        terms=terms(**changes),
        seats=3,
        licensed_rights_groups=("admin", "employee"),
        first_period_index=0,
        actor=OWNER,
    )
    drain(cloud)
    return cloud


def test_a_cloud_whose_periods_overflow_refuses_every_command_as_unbillable():
    cloud = _recorded_by_an_older_release(term_start=date(9999, 12, 16))
    with pytest.raises(UnbillableContract, match="9999-12-16"):
        _ = cloud.current_period
    with pytest.raises(UnbillableContract):
        cloud.renew_due(at=T0)
    with pytest.raises(UnbillableContract):
        cloud.increase_seats(seats=4, actor=OWNER, at=T0)
    with pytest.raises(UnbillableContract):
        cloud.as_at(T0)
    assert drain(cloud) == []


def test_a_license_recorded_for_an_odd_id_by_an_older_release_is_released():
    cloud = _recorded_by_an_older_release()
    cloud.trigger_event(
        Cloud.LicenseAssigned,
        timestamp=T0,
        user_id="a/b",
        rights_group="employee",
        licenses_assigned=1,
        seats=3,
        actor=OWNER,
    )
    drain(cloud)
    assert cloud.set_rights_group(user_id="a/b", rights_group="admin", actor=OWNER, at=T0) == (
        "changed"
    )
    cloud.release_license(user_id="a/b", actor=OWNER, at=T0, rights_group="guest")
    assert cloud.licenses == {}
