"""The authorization matrix of the ledger's API; a refused request records nothing."""

from __future__ import annotations

import time

import jwt
import pytest

from seatledger.auth import mint_token
from seatledger.config import load_settings

pytestmark = pytest.mark.integration


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _caller(ledger, who: str) -> dict[str, str]:
    s = ledger.settings
    match who:
        case "owner":
            return ledger.headers("owner-1", step_up=True)
        case "owner_without_step_up":
            return ledger.headers("owner-1")
        case "owner_with_stale_step_up":
            return ledger.headers("owner-1", step_up=True, auth_time=time.time() - 600)
        case "another_user":
            return ledger.headers("mallory", step_up=True)
        case "admin":
            return ledger.headers("admin-1", "billing:admin", step_up=True)
        case "auditor":
            return ledger.headers("audit-1", "billing:audit")
        case "no_token":
            return {}
        case "expired":
            return _bearer(
                mint_token(s, subject="owner-1", step_up=True, now=time.time() - 7200, ttl_s=60)
            )
        case "wrong_audience":
            return _bearer(
                mint_token(s, subject="owner-1", step_up=True, extra={"aud": "other-service"})
            )
        case "alg_none":
            claims = {
                "sub": "owner-1",
                "iss": s.jwt_issuer,
                "aud": s.jwt_audience,
                "exp": int(time.time()) + 600,
                "amr": ["pwd"],
                "auth_time": int(time.time()),
            }
            unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
            return _bearer(unsigned)
        case "wrong_secret":
            other = load_settings(jwt_secret="not-the-servers-secret-0123456789abcdef")
            return _bearer(mint_token(other, subject="owner-1", step_up=True))
    raise AssertionError(who)


PURCHASE_MATRIX = [
    ("owner", 201, None),
    ("owner_without_step_up", 401, "insufficient_user_authentication"),
    ("owner_with_stale_step_up", 401, "insufficient_user_authentication"),
    ("another_user", 404, None),
    ("admin", 403, None),
    ("auditor", 403, None),
    ("no_token", 401, None),
    ("expired", 401, "invalid_token"),
    ("wrong_audience", 401, "invalid_token"),
    ("alg_none", 401, "invalid_token"),
    ("wrong_secret", 401, "invalid_token"),
]


@pytest.mark.parametrize(("who", "status", "error"), PURCHASE_MATRIX)
def test_only_the_owner_with_step_up_buys_seats(ledger, who, status, error):
    cloud_id = ledger.open_cloud()["cloud_id"]
    before = ledger.event_count()
    response = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-purchases", json={"seats": 4}, headers=_caller(ledger, who)
    )
    assert response.status_code == status, response.text
    if status == 201:
        assert ledger.event_count() == before + 1
        return
    assert response.headers["content-type"] == "application/problem+json"
    assert ledger.event_count() == before
    if status == 401:
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer")
        if error:
            assert f'error="{error}"' in challenge


READ_MATRIX = [
    ("owner", 200),
    ("admin", 200),
    ("auditor", 200),
    ("another_user", 404),
    ("no_token", 401),
    ("expired", 401),
    ("wrong_audience", 401),
    ("alg_none", 401),
]


@pytest.mark.parametrize(("who", "status"), READ_MATRIX)
def test_a_cloud_is_read_by_its_owner_an_admin_or_an_auditor(ledger, who, status):
    cloud_id = ledger.open_cloud()["cloud_id"]
    response = ledger.client.get(f"/v1/clouds/{cloud_id}", headers=_caller(ledger, who))
    assert response.status_code == status


@pytest.mark.parametrize(
    ("who", "status"), [("admin", 200), ("auditor", 200), ("owner", 403), ("another_user", 404)]
)
def test_the_history_is_read_with_the_audit_or_admin_scope(ledger, who, status):
    cloud_id = ledger.open_cloud()["cloud_id"]
    response = ledger.client.get(f"/v1/clouds/{cloud_id}/events", headers=_caller(ledger, who))
    assert response.status_code == status
    if status == 200:
        assert [e["version"] for e in response.json()["events"]] == [1]


def test_only_an_admin_opens_a_cloud(ledger):
    from tests.integration.ledger.conftest import CLOUD_BODY

    for who, status in (("owner", 403), ("auditor", 403), ("no_token", 401)):
        response = ledger.client.post("/v1/clouds", json=CLOUD_BODY, headers=_caller(ledger, who))
        assert response.status_code == status
    assert ledger.event_count() == 0


def test_another_user_can_neither_assign_licenses_nor_change_the_billing_email(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    mallory = _caller(ledger, "another_user")
    assigned = ledger.client.post(
        f"/v1/clouds/{cloud_id}/licenses",
        json={"user_id": "m", "rights_group": "admin"},
        headers=mallory,
    )
    changed = ledger.client.put(
        f"/v1/clouds/{cloud_id}/billing-email",
        json={"billing_email": "mallory@evil.example"},
        headers=mallory,
    )
    reduced = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-reductions", json={"seats": 1}, headers=mallory
    )
    quoted = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-quotes", json={"seats": 9}, headers=mallory
    )
    assert [r.status_code for r in (assigned, changed, reduced, quoted)] == [404, 404, 404, 404]
    assert ledger.event_count() == 1


def test_a_seat_reduction_needs_step_up(ledger):
    cloud_id = ledger.open_cloud()["cloud_id"]
    response = ledger.client.post(
        f"/v1/clouds/{cloud_id}/seat-reductions",
        json={"seats": 2},
        headers=_caller(ledger, "owner_without_step_up"),
    )
    assert response.status_code == 401
    assert 'error="insufficient_user_authentication"' in response.headers["www-authenticate"]
    assert ledger.event_count() == 1
