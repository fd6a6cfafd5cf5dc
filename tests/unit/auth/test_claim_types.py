"""Validly signed tokens whose claims have the wrong types are refused (401), never a 500,
and a token issued in the future, or a step-up whose authentication time lies in the future,
is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from seatledger.auth import LEEWAY_S, Authenticator, AuthError, mint_token
from seatledger.config import load_settings
from seatledger.http import CurrentPrincipal, create_app
from seatledger.metrics import new_registry

SECRET = "unit-test-secret-0123456789abcdef0123456789"


@pytest.fixture
def settings():
    return load_settings(jwt_secret=SECRET, database_url=None, kafka_bootstrap_servers=None)


@pytest.fixture
def auth(settings):
    return Authenticator(settings)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload_json: str, secret: str = SECRET) -> str:
    """An HS256 token over a payload written by hand (JSON encoders refuse Infinity or NaN)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(payload_json.encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(signature.digest())}"


def claims_json(**overrides: str) -> str:
    """The JSON text of valid claims, each value given as JSON text, with ``overrides``."""
    claims = {
        "iss": '"seatledger"',
        "aud": '"seatledger"',
        "sub": '"u1"',
        "exp": str(int(time.time()) + 600),
        "amr": '["pwd"]',
        "auth_time": str(int(time.time())),
    }
    claims.update(overrides)
    return "{" + ", ".join(f'"{name}": {value}' for name, value in claims.items()) + "}"


def test_a_hand_signed_token_with_sound_claims_is_accepted(auth):
    principal = auth.verify(signed(claims_json(scope='"billing:admin billing:audit"')))
    assert principal.subject == "u1"
    assert principal.scopes == {"billing:admin", "billing:audit"}
    auth.require_step_up(principal)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("scope", "5"),
        ("scope", '{"a": 1}'),
        ("scope", '["billing:admin", 5]'),
        ("scope", "true"),
        ("amr", '"pwd"'),
        ("amr", "[1]"),
        ("amr", '{"pwd": true}'),
        ("auth_time", "Infinity"),
        ("auth_time", "-Infinity"),
        ("auth_time", "NaN"),
        ("auth_time", "1e400"),
        ("auth_time", "true"),
        ("auth_time", '"1700000000"'),
        ("auth_time", "[1700000000]"),
        ("auth_time", "-1"),
        ("auth_time", "1" + "0" * 30),
        ("sub", "5"),
        ("sub", '["u1"]'),
        ("sub", '""'),
        ("exp", "Infinity"),
        ("exp", "NaN"),
        ("exp", "1e400"),
        ("exp", "1" + "0" * 400),
        ("exp", "true"),
        ("exp", '"soon"'),
        ("nbf", "Infinity"),
        ("iat", '"x"'),
        ("iat", "Infinity"),
        ("iat", "-Infinity"),
        ("iat", "NaN"),
        ("iat", "1e400"),
        ("iat", "true"),
        ("iat", "[1700000000]"),
        ("iat", "-1"),
        ("iss", "5"),
        ("aud", "[5]"),
    ],
)
def test_a_signed_token_whose_claim_has_the_wrong_type_is_refused(auth, claim, value):
    with pytest.raises(AuthError) as refused:
        auth.verify(signed(claims_json(**{claim: value})))
    assert refused.value.status == 401


def test_wrong_claim_types_answer_401_problems_on_a_route(settings, auth):
    router = APIRouter()

    @router.get("/whoami")
    def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"sub": principal.subject}

    app = create_app(title="t", routers=[router], registry=new_registry("t"), authenticator=auth)
    client = TestClient(app, raise_server_exceptions=False)
    for claim, value in (("scope", "5"), ("auth_time", "Infinity"), ("auth_time", "1e400")):
        token = signed(claims_json(**{claim: value}))
        response = client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (claim, value, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_a_step_up_authenticated_in_the_future_is_refused(settings):
    now = 1_800_000_000.0
    auth = Authenticator(settings, clock=lambda: now)
    token = mint_token(settings, subject="u1", step_up=True, now=now, auth_time=now + 3600)
    principal = auth.verify(token)
    with pytest.raises(AuthError) as refused:
        auth.require_step_up(principal)
    assert refused.value.error == "insufficient_user_authentication"
    assert "future" in refused.value.detail


def test_a_step_up_within_the_clock_skew_is_accepted(settings):
    now = 1_800_000_000.0
    auth = Authenticator(settings, clock=lambda: now)
    token = mint_token(settings, subject="u1", step_up=True, now=now, auth_time=now + LEEWAY_S)
    auth.require_step_up(auth.verify(token))


def test_a_token_issued_in_the_future_is_refused(settings):
    now = 1_800_000_000.0
    auth = Authenticator(settings, clock=lambda: now)
    issued = int(now) + LEEWAY_S + 1
    with pytest.raises(AuthError) as refused:
        auth.verify(signed(claims_json(iat=str(issued), exp=str(issued + 600))))
    assert refused.value.status == 401
    assert "future" in refused.value.detail


def test_a_token_issued_within_the_clock_skew_or_without_iat_is_accepted(settings):
    now = 1_800_000_000.0
    auth = Authenticator(settings, clock=lambda: now)
    exp = str(int(now) + 600)
    assert auth.verify(signed(claims_json(iat=str(int(now) + LEEWAY_S), exp=exp))).subject == "u1"
    assert auth.verify(signed(claims_json(iat=str(now - 0.5), exp=exp))).subject == "u1"
    assert auth.verify(signed(claims_json(exp=exp))).subject == "u1"


def test_a_token_with_a_non_numeric_iat_answers_401_on_a_route(settings, auth):
    router = APIRouter()

    @router.get("/whoami")
    def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"sub": principal.subject}

    app = create_app(title="t", routers=[router], registry=new_registry("t"), authenticator=auth)
    client = TestClient(app, raise_server_exceptions=False)
    future = str(int(time.time()) + 3600)
    for value in ('"x"', "Infinity", future):
        token = signed(claims_json(iat=value))
        response = client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (value, response.text)
        assert response.headers["content-type"] == "application/problem+json"
