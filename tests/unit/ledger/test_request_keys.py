"""A cloud remembers which requests recorded its events (its opening, purchases, reductions,
license and rights-group changes, billing e-mail changes: a digest of the caller and its
Idempotency-Key, kept with the event), so a retry after a crash is answered with the committed
result; events recorded before this field read back without it."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import StoredEvent

from services.ledger.application import Ledger, opened_cloud_id, request_identity
from services.ledger.domain import REQUEST_KEYS_KEPT, SEAT_REQUESTS, Actor, Cloud, RecentRequests
from tests.unit.ledger.builders import terms

OWNER = Actor("user", "owner-1")
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def a_cloud() -> Cloud:
    return Cloud.open(cloud_id=uuid.uuid4(), terms=terms(), seats=3, actor=OWNER, at=T0)


def test_a_purchase_and_a_reduction_record_their_request_and_its_version():
    cloud = a_cloud()
    key = request_identity("owner-1", "buy-1")
    cloud.increase_seats(seats=5, actor=OWNER, at=T0, request_key=key)
    assert cloud.committed_request(key) == cloud.version
    cloud.schedule_reduction(seats=4, actor=OWNER, at=T0, request_key="r" * 64)
    assert cloud.committed_request("r" * 64) == cloud.version
    assert cloud.committed_request(request_identity("owner-1", "other")) is None
    events: list[Any] = list(cloud.collect_events())
    assert events[1].request_key == key


def test_the_identity_depends_on_the_caller_and_the_key_and_hides_the_key():
    one = request_identity("owner-1", "k")
    assert one == request_identity("owner-1", "k")
    assert one != request_identity("owner-2", "k")
    assert one != request_identity("owner-1", "k2")
    # No ambiguity from concatenation.
    assert request_identity("ab", "c") != request_identity("a", "bc")
    assert len(one) == 64
    int(one, 16)  # a hex SHA-256 digest


def test_only_the_most_recent_requests_are_kept():
    cloud = a_cloud()
    for n in range(REQUEST_KEYS_KEPT + 5):
        cloud.increase_seats(seats=4 + n, actor=OWNER, at=T0, request_key=f"key-{n}")
    assert cloud.committed_request("key-0") is None
    assert cloud.committed_request("key-4") is None
    assert cloud.committed_request("key-5") is not None
    assert len(cloud.recent_requests[SEAT_REQUESTS]) == REQUEST_KEYS_KEPT


def test_many_license_commands_never_push_out_a_purchase():
    cloud = a_cloud()
    cloud.increase_seats(seats=10 + REQUEST_KEYS_KEPT, actor=OWNER, at=T0, request_key="buy")
    bought = cloud.committed_request("buy")
    for n in range(REQUEST_KEYS_KEPT + 5):
        cloud.assign_license(
            user_id=f"u-{n}", rights_group="employee", actor=OWNER, at=T0, request_key=f"a-{n}"
        )
    assert cloud.committed_request("a-0") is None
    assert cloud.committed_request(f"a-{REQUEST_KEYS_KEPT + 4}") is not None
    assert cloud.committed_request("buy") == bought


def test_a_copy_of_a_cloud_shares_its_recent_requests_instead_of_copying_each():
    cloud = a_cloud()
    for n in range(50):
        cloud.increase_seats(seats=4 + n, actor=OWNER, at=T0, request_key=f"key-{n}")
    copied = copy.deepcopy(cloud)
    assert copied.recent_requests[SEAT_REQUESTS] is cloud.recent_requests[SEAT_REQUESTS]
    cloud.increase_seats(seats=100, actor=OWNER, at=T0, request_key="later")
    assert copied.committed_request("later") is None  # immutable: the copy keeps its state
    assert cloud.committed_request("later") is not None


def test_an_identity_is_found_only_at_the_start_of_an_entry():
    # The second entry's bytes contain, across its version and the next identity, bytes that
    # equal a third identity's first 16 bytes: that is no match.
    first = "aa" * 32
    requests = RecentRequests(10).with_request(first, 7)
    straddling = (requests.blob[8:24] + bytes(16)).hex()[:32] + "00" * 16
    assert requests.version_of(straddling) is None
    assert requests.version_of(first) == 7
    # A newer entry of the same identity wins; identities that are not digests still work.
    requests = requests.with_request(first, 9).with_request("not-a-digest", 11)
    assert requests.version_of(first) == 9
    assert requests.version_of("not-a-digest") == 11
    assert requests.version_of("other") is None


def test_the_keys_are_rebuilt_from_the_stored_events():
    app = Ledger()
    cloud = a_cloud()
    cloud.increase_seats(seats=5, actor=OWNER, at=T0, request_key="k-1")
    app.save(cloud)
    loaded = app.repository.get(cloud.id)
    assert isinstance(loaded, Cloud)
    assert loaded.committed_request("k-1") == 2


def test_every_command_records_its_request_and_the_version_of_its_event():
    opening = request_identity("admin-1", "open")
    cloud = Cloud.open(
        cloud_id=uuid.uuid4(), terms=terms(), seats=3, actor=OWNER, at=T0, request_key=opening
    )
    assert cloud.committed_request(opening) == 1
    assert cloud.opening_request_key == opening
    cloud.assign_license(
        user_id="u1", rights_group="employee", actor=OWNER, at=T0, request_key="assign"
    )
    assert cloud.committed_request("assign") == cloud.version
    cloud.release_license(user_id="u1", actor=OWNER, at=T0, request_key="release")
    assert cloud.committed_request("release") == cloud.version
    outcomes = []
    for n, group in enumerate(("employee", "admin", "guest")):
        outcome = cloud.set_rights_group(
            user_id="u2", rights_group=group, actor=OWNER, at=T0, request_key=f"group-{n}"
        )
        outcomes.append(outcome)
        assert cloud.committed_request(f"group-{n}") == cloud.version
    assert outcomes == ["assigned", "changed", "released"]
    cloud.change_billing_email(
        billing_email="ap@acme.example", actor=OWNER, at=T0, request_key="email"
    )
    assert cloud.committed_request("email") == cloud.version
    events: list[Any] = list(cloud.collect_events())
    recorded = {type(e).__name__: e.request_key for e in events}
    assert recorded == {
        "ContractOpened": opening,
        "LicenseAssigned": "group-0",
        "LicenseReleased": "group-2",
        "LicenseRightsGroupChanged": "group-1",
        "BillingEmailChanged": "email",
    }


def test_a_command_that_records_nothing_remembers_no_request():
    cloud = a_cloud()
    assert not cloud.change_billing_email(
        billing_email=cloud.terms.billing_email, actor=OWNER, at=T0, request_key="same"
    )
    assert (
        cloud.set_rights_group(
            user_id="u1", rights_group="guest", actor=OWNER, at=T0, request_key="guest"
        )
        == "unchanged"
    )
    assert cloud.committed_request("same") is None
    assert cloud.committed_request("guest") is None


def test_the_opening_request_is_never_forgotten():
    cloud = Cloud.open(
        cloud_id=uuid.uuid4(), terms=terms(), seats=3, actor=OWNER, at=T0, request_key="opened"
    )
    for n in range(REQUEST_KEYS_KEPT + 1):
        cloud.change_billing_email(
            billing_email=f"billing-{n}@acme.example", actor=OWNER, at=T0, request_key=f"k-{n}"
        )
    assert cloud.committed_request("opened") is None
    assert cloud.opening_request_key == "opened"


def test_a_cloud_opened_without_an_id_gets_one_derived_from_its_request():
    one = request_identity("admin-1", "open-1")
    assert opened_cloud_id(one) == opened_cloud_id(request_identity("admin-1", "open-1"))
    assert opened_cloud_id(one) != opened_cloud_id(request_identity("admin-2", "open-1"))
    assert opened_cloud_id(one) != opened_cloud_id(request_identity("admin-1", "open-2"))
    assert opened_cloud_id(one).version == 5


def test_events_stored_before_the_field_existed_still_load():
    app = Ledger()
    cloud = Cloud.open(
        cloud_id=uuid.uuid4(), terms=terms(), seats=3, actor=OWNER, at=T0, request_key="o"
    )
    cloud.increase_seats(seats=5, actor=OWNER, at=T0, request_key="p")
    cloud.assign_license(user_id="u1", rights_group="employee", actor=OWNER, at=T0)
    cloud.set_rights_group(user_id="u1", rights_group="admin", actor=OWNER, at=T0, request_key="c")
    cloud.release_license(user_id="u1", actor=OWNER, at=T0, request_key="r")
    cloud.change_billing_email(billing_email="ap@acme.example", actor=OWNER, at=T0, request_key="e")
    app.save(cloud)
    stored = app.recorder.select_events(cloud.id)
    older: list[StoredEvent] = []
    for event in stored:
        state = json.loads(event.state)
        state.pop("request_key", None)  # as an older release stored it
        older.append(
            StoredEvent(
                originator_id=event.originator_id,
                originator_version=event.originator_version,
                topic=event.topic,
                state=json.dumps(state).encode(),
            )
        )
    aggregate: Any = None
    for stored_event in older:
        loaded: Any = app.mapper.to_domain_event(stored_event)
        mutate: Any = loaded.mutate
        aggregate = mutate(aggregate)
    assert isinstance(aggregate, Cloud)
    assert aggregate.seats == 5
    assert aggregate.licenses == {}
    assert aggregate.terms.billing_email == "ap@acme.example"
    for key in ("o", "p", "c", "r", "e"):
        assert aggregate.committed_request(key) is None
    assert aggregate.opening_request_key is None
    for stored_event in older:
        decoded: Any = app.mapper.to_domain_event(stored_event)
        assert decoded.request_key is None
