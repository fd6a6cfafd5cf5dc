"""Bearer token verification, step-up and the development secret policy."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from seatledger.auth import Authenticator, AuthError, InsecureConfiguration, mint_token
from seatledger.cli import main
from seatledger.config import DEV_JWT_SECRET, load_settings

SECRET = "unit-test-secret-0123456789abcdef0123456789"


@pytest.fixture
def settings():
    return load_settings(jwt_secret=SECRET, database_url=None, kafka_bootstrap_servers=None)


@pytest.fixture
def auth(settings):
    return Authenticator(settings)


def test_a_valid_token_yields_its_subject_and_scopes(settings, auth):
    token = mint_token(settings, subject="u1", scopes=["billing:admin", "billing:audit"])
    principal = auth.verify(token)
    assert principal.subject == "u1"
    assert principal.has_scope("billing:audit")
    assert not principal.has_scope("billing:licenses")


def test_an_expired_token_is_refused(settings, auth):
    token = mint_token(settings, subject="u1", now=time.time() - 7200, ttl_s=60)
    with pytest.raises(AuthError, match="expired"):
        auth.verify(token)


def test_a_token_for_another_audience_or_issuer_is_refused(settings, auth):
    for claim, value in (("aud", "someone-else"), ("iss", "evil")):
        token = mint_token(settings, subject="u1", extra={claim: value})
        with pytest.raises(AuthError):
            auth.verify(token)


def test_alg_none_is_refused(auth):
    token = jwt.encode(
        {"sub": "u1", "iss": "seatledger", "aud": "seatledger", "exp": time.time() + 60},
        None,  # type: ignore[arg-type]
        algorithm="none",
    )
    with pytest.raises(AuthError, match="algorithm"):
        auth.verify(token)


def test_a_token_without_exp_is_refused(auth):
    token = jwt.encode({"sub": "u1", "iss": "seatledger", "aud": "seatledger"}, SECRET)
    with pytest.raises(AuthError, match="exp"):
        auth.verify(token)


def test_a_token_signed_with_another_secret_is_refused(settings, auth):
    other = load_settings(jwt_secret="another-secret-0123456789abcdef0123456789")
    with pytest.raises(AuthError):
        auth.verify(mint_token(other, subject="u1"))


def test_step_up_needs_pwd_and_a_recent_auth_time(settings, auth):
    fresh = auth.verify(mint_token(settings, subject="u1", step_up=True))
    auth.require_step_up(fresh)
    plain = auth.verify(mint_token(settings, subject="u1"))
    with pytest.raises(AuthError) as missing:
        auth.require_step_up(plain)
    assert missing.value.error == "insufficient_user_authentication"
    assert 'error="insufficient_user_authentication"' in (missing.value.www_authenticate or "")
    stale = auth.verify(
        mint_token(settings, subject="u1", step_up=True, auth_time=time.time() - 301)
    )
    with pytest.raises(AuthError, match="older"):
        auth.require_step_up(stale)


def test_the_default_dev_secret_is_refused_outside_the_embedded_default():
    embedded = load_settings(
        jwt_secret=DEV_JWT_SECRET, database_url=None, kafka_bootstrap_servers=None
    )
    Authenticator(embedded)  # accepted
    postgres = load_settings(
        jwt_secret=DEV_JWT_SECRET, database_url="postgresql://u:p@127.0.0.1/db"
    )
    with pytest.raises(InsecureConfiguration, match="development default"):
        Authenticator(postgres)
    kafka = load_settings(jwt_secret=DEV_JWT_SECRET, kafka_bootstrap_servers="127.0.0.1:9092")
    with pytest.raises(InsecureConfiguration):
        Authenticator(kafka)


def test_rs256_tokens_are_verified_with_a_jwks_file(tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="k1", alg="RS256", use="sig")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    settings = load_settings(jwt_algorithms="RS256", jwt_jwks_file=jwks, jwt_secret=SECRET)
    auth = Authenticator(settings)
    claims = {"sub": "u1", "iss": "seatledger", "aud": "seatledger", "exp": time.time() + 60}
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
    assert auth.verify(token).subject == "u1"
    # An HS256 token is refused: the algorithm is not on this deployment's allow-list.
    with pytest.raises(AuthError, match="algorithm"):
        auth.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_the_token_command_prints_a_verifiable_token(monkeypatch, capsys):
    monkeypatch.setenv("SEATLEDGER_JWT_SECRET", SECRET)
    assert main(["token", "--sub", "u7", "--scope", "billing:audit", "--step-up"]) == 0
    token = capsys.readouterr().out.strip()
    auth = Authenticator(load_settings())
    principal = auth.verify(token)
    assert principal.subject == "u7"
    assert principal.has_scope("billing:audit")
    auth.require_step_up(principal)


def test_the_token_command_refuses_an_empty_subject(capsys):
    assert main(["token", "--sub", " "]) == 1
    assert "--sub" in capsys.readouterr().err


def test_rs256_tokens_are_verified_with_keys_from_a_jwks_url():
    import http.server
    import threading

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="url-key", alg="RS256", use="sig")
    payload = json.dumps({"keys": [jwk]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        auth = Authenticator(
            load_settings(jwt_algorithms="RS256", jwt_jwks_url=url, jwt_secret=SECRET)
        )
        claims = {"sub": "u9", "iss": "seatledger", "aud": "seatledger", "exp": time.time() + 60}
        good = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "url-key"})
        assert auth.verify(good).subject == "u9"
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "url-key"})
        with pytest.raises(AuthError):
            auth.verify(forged)
    finally:
        server.shutdown()
