"""A user's rights group decides whether they hold a license (the product rule): a licensed
group holds one, moving to an unlicensed group releases it, a move between licensed groups
keeps it. The contract events carry both groups."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas import ledger as contract
from services.ledger.contract import to_contract
from services.ledger.domain import (
    Actor,
    Cloud,
    InvalidUserId,
    LicensedRightsGroup,
    NoFreeSeat,
    UnknownRightsGroup,
)
from tests.unit.ledger.builders import terms

ADMIN_SVC = Actor("user", "user-admin-service")
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def a_cloud(seats: int = 2, groups: tuple[str, ...] = ("admin", "employee")) -> Cloud:
    cloud = Cloud.open(
        cloud_id=uuid.uuid4(),
        terms=terms(
            name="Acme", seat_price=Decimal("10.00"), term_start=date(2026, 1, 1), locale="en"
        ),
        seats=seats,
        licensed_rights_groups=groups,
        actor=ADMIN_SVC,
        at=T0,
    )
    list(cloud.collect_events())
    return cloud


def move(cloud: Cloud, user: str, group: str, previous: str | None = None) -> tuple[str, list[Any]]:
    outcome = cloud.set_rights_group(
        user_id=user, rights_group=group, actor=ADMIN_SVC, at=T0, previous_rights_group=previous
    )
    return outcome, list(cloud.collect_events())


def test_moving_a_guest_into_a_licensed_group_assigns_a_license_naming_the_previous_group():
    cloud = a_cloud()
    outcome, events = move(cloud, "u1", "employee", previous="guest")
    assert outcome == "assigned"
    assert [type(e).__name__ for e in events] == ["LicenseAssigned"]
    assert cloud.licenses == {"u1": "employee"}
    published = to_contract(events[0])
    assert isinstance(published, contract.LicenseAssigned)
    assert (published.rights_group, published.previous_rights_group) == ("employee", "guest")


def test_moving_a_holder_to_guest_releases_the_license_naming_the_new_group():
    cloud = a_cloud()
    move(cloud, "u1", "admin")
    outcome, events = move(cloud, "u1", "guest")
    assert outcome == "released"
    assert cloud.licenses == {}
    published = to_contract(events[0])
    assert isinstance(published, contract.LicenseReleased)
    assert (published.previous_rights_group, published.rights_group) == ("admin", "guest")
    assert published.licenses_assigned == 0


def test_a_group_the_cloud_does_not_license_counts_as_unlicensed():
    cloud = a_cloud(groups=("admin",))
    move(cloud, "u1", "admin")
    outcome, events = move(cloud, "u1", "employee")
    assert outcome == "released"
    assert to_contract(events[0]).rights_group == "employee"
    outcome, events = move(cloud, "u2", "contractor")
    assert (outcome, events, cloud.licenses) == ("unchanged", [], {})


def test_a_move_between_licensed_groups_keeps_the_license_and_records_the_change():
    cloud = a_cloud()
    move(cloud, "u1", "employee")
    outcome, events = move(cloud, "u1", "admin")
    assert outcome == "changed"
    assert cloud.licenses == {"u1": "admin"}
    assert cloud.licenses_assigned == 1
    published = to_contract(events[0])
    assert isinstance(published, contract.LicenseRightsGroupChanged)
    assert (published.rights_group, published.previous_rights_group) == ("admin", "employee")
    assert (published.licenses_assigned, published.seats) == (1, 2)


def test_the_same_state_again_records_nothing():
    cloud = a_cloud()
    move(cloud, "u1", "employee")
    assert move(cloud, "u1", "employee") == ("unchanged", [])
    assert move(cloud, "u2", "guest") == ("unchanged", [])
    assert cloud.licenses == {"u1": "employee"}


def test_a_licensed_group_without_a_free_seat_is_refused_and_records_nothing():
    cloud = a_cloud(seats=1)
    move(cloud, "u1", "employee")
    with pytest.raises(NoFreeSeat):
        move(cloud, "u2", "admin")
    assert list(cloud.collect_events()) == []
    assert cloud.licenses == {"u1": "employee"}


def test_logged_in_status_plays_no_part_a_change_between_licensed_groups_needs_no_free_seat():
    cloud = a_cloud(seats=1)
    move(cloud, "u1", "employee")
    assert move(cloud, "u1", "admin")[0] == "changed"


def test_an_empty_user_or_group_is_refused():
    cloud = a_cloud()
    with pytest.raises(InvalidUserId):
        move(cloud, " ", "employee")
    with pytest.raises(UnknownRightsGroup):
        move(cloud, "u1", " ")


def test_a_release_records_the_new_group_and_refuses_a_licensed_one():
    cloud = a_cloud()
    move(cloud, "u1", "employee")
    with pytest.raises(LicensedRightsGroup):
        cloud.release_license(user_id="u1", actor=ADMIN_SVC, at=T0, rights_group="admin")
    assert list(cloud.collect_events()) == []
    cloud.release_license(user_id="u1", actor=ADMIN_SVC, at=T0, rights_group="guest")
    (released,) = list(cloud.collect_events())
    assert to_contract(released).rights_group == "guest"


def test_events_stored_before_the_new_fields_read_as_unknown_groups():
    cloud = a_cloud()
    move(cloud, "u1", "employee")
    cloud.release_license(user_id="u1", actor=ADMIN_SVC, at=T0)
    for event in list(cloud.collect_events()):
        del event.__dict__["rights_group"]  # as read back from an older stored event
        assert to_contract(event).rights_group is None
