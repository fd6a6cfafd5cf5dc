"""Bearer JWTs: verification, step-up (RFC 9470) and minting of development tokens.

- Algorithms come from an allow-list (``settings.jwt_algorithms``); ``none`` is never allowed,
  and a token whose header names another algorithm is refused before any key is used.
- ``iss``, ``aud``, ``exp`` and ``sub`` are required and checked.
- HS256 uses ``settings.jwt_secret`` (development and tests). RS256/ES256 keys come from a JWKS
  file (``jwt_jwks_file``) or URL (``jwt_jwks_url``), chosen by the token's ``kid``.
- Step-up: ``amr`` contains ``pwd`` and ``auth_time`` lies within ``max_age`` seconds; else
  401 with ``WWW-Authenticate: Bearer error="insufficient_user_authentication"``.
- The default development secret is refused unless the settings describe the embedded
  default (SQLite, no Kafka).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from seatledger.config import DEV_JWT_SECRET, Settings

SCOPE_ADMIN = "billing:admin"
SCOPE_LICENSES = "billing:licenses"
SCOPE_AUDIT = "billing:audit"
KNOWN_SCOPES = (SCOPE_ADMIN, SCOPE_LICENSES, SCOPE_AUDIT)

_SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
_ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"})
LEEWAY_S = 5


class AuthError(Exception):
    """A request is not authenticated (401) or not allowed (403)."""

    def __init__(
        self, detail: str, *, status: int = 401, error: str = "invalid_token", title: str = ""
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.error = error
        self.title = title or ("Unauthorized" if status == 401 else "Forbidden")

    @property
    def www_authenticate(self) -> str | None:
        if self.status != 401:
            return None
        if self.error == "missing":
            return 'Bearer realm="seatledger"'
        description = self.detail.replace('"', "'")
        return f'Bearer realm="seatledger", error="{self.error}", error_description="{description}"'


class InsecureConfiguration(RuntimeError):
    """The auth settings are not safe for this deployment."""


@dataclass(frozen=True)
class Principal:
    """The verified caller."""

    subject: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    amr: tuple[str, ...] = ()
    auth_time: int | None = None

    def has_scope(self, *scopes: str) -> bool:
        return bool(self.scopes.intersection(scopes))


class Authenticator:
    """Verifies bearer tokens against the configured keys and policy."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        check_settings(settings)
        algorithms = [a for a in settings.jwt_algorithms if a.lower() != "none"]
        unknown = set(algorithms) - _SYMMETRIC - _ASYMMETRIC
        if unknown or not algorithms:
            raise InsecureConfiguration(f"unsupported JWT algorithms: {sorted(unknown) or 'none'}")
        self.algorithms = algorithms
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.step_up_max_age_s = settings.step_up_max_age_s
        self.clock = clock
        self.cache_size = 4096
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._cache_lock = threading.Lock()
        self._secret = settings.jwt_secret.get_secret_value()
        self._jwks: jwt.PyJWKSet | None = None
        self._jwks_client: jwt.PyJWKClient | None = None
        if settings.jwt_jwks_file is not None:
            self._jwks = jwt.PyJWKSet.from_dict(json.loads(settings.jwt_jwks_file.read_text()))
        elif settings.jwt_jwks_url:
            self._jwks_client = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True)
        if set(algorithms) & _ASYMMETRIC and self._jwks is None and self._jwks_client is None:
            raise InsecureConfiguration("asymmetric JWT algorithms need a JWKS file or URL")

    def _key(self, token: str, header: dict[str, Any]) -> Any:
        alg = header.get("alg")
        if alg in _SYMMETRIC:
            return self._secret
        kid = header.get("kid")
        if self._jwks is not None:
            for key in self._jwks.keys:
                if kid is None or key.key_id == kid:
                    return key.key
            raise AuthError("no key matches the token's kid")
        if self._jwks_client is not None:
            try:
                return self._jwks_client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError as exc:
                raise AuthError(f"no signing key: {exc}") from exc
        raise AuthError("no key for the token's algorithm")

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; raises :class:`AuthError` (401) otherwise.

        A verified token is remembered until it expires (bounded LRU keyed by the whole token,
        signature included), so a client reusing its token is not re-verified on every call.
        """
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if self.clock() < expires + LEEWAY_S:
                return principal
            self._verified.pop(token, None)
        principal, expires = self._verify(token)
        with self._cache_lock:
            self._verified[token] = (principal, expires)
            while len(self._verified) > self.cache_size:
                self._verified.pop(next(iter(self._verified)))
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("the token is malformed") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthError("the token's algorithm is not allowed")
        key = self._key(token, header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"], "verify_iat": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("the token is not meant for this audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("the token's issuer is not trusted") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the token lacks the claim {exc.claim!r}") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("the token is invalid") from exc
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("the token's subject is empty")
        scope = claims.get("scope", "")
        scopes = scope.split() if isinstance(scope, str) else list(scope or [])
        amr = claims.get("amr") or []
        auth_time = claims.get("auth_time")
        principal = Principal(
            subject=subject,
            scopes=frozenset(str(s) for s in scopes),
            amr=tuple(str(m) for m in amr) if isinstance(amr, list) else (),
            auth_time=int(auth_time) if isinstance(auth_time, (int, float)) else None,
        )
        return principal, float(claims["exp"])

    def verify_header(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer ...`` header value."""
        if not authorization:
            raise AuthError("a bearer token is required", error="missing")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header is not 'Bearer <token>'")
        return self.verify(token.strip())

    def subject_of(self, authorization: str | None) -> str | None:
        """The verified subject, or None when the header does not authenticate."""
        try:
            return self.verify_header(authorization).subject
        except AuthError:
            return None

    def require_step_up(self, principal: Principal) -> None:
        """Raise 401 ``insufficient_user_authentication`` unless the user re-authenticated
        with a password within ``step_up_max_age_s``."""
        if "pwd" not in principal.amr:
            raise AuthError(
                "this action needs a recent password authentication",
                error="insufficient_user_authentication",
            )
        if principal.auth_time is None or (
            self.clock() - principal.auth_time > self.step_up_max_age_s
        ):
            raise AuthError(
                f"the last authentication is older than {self.step_up_max_age_s} seconds",
                error="insufficient_user_authentication",
            )


def check_settings(settings: Settings) -> None:
    """Refuse the default development secret outside the embedded default."""
    uses_hs = any(a in _SYMMETRIC for a in settings.jwt_algorithms)
    if (
        uses_hs
        and settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET
        and not settings.embedded
    ):
        raise InsecureConfiguration(
            "SEATLEDGER_JWT_SECRET still has its development default; set a secret of your "
            "own when using PostgreSQL or Kafka"
        )
    if uses_hs and len(settings.jwt_secret.get_secret_value()) < 32:
        raise InsecureConfiguration("SEATLEDGER_JWT_SECRET must be at least 32 characters")


def mint_token(
    settings: Settings,
    *,
    subject: str,
    scopes: Iterable[str] = (),
    step_up: bool = False,
    ttl_s: int = 3600,
    now: float | None = None,
    auth_time: float | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A token signed with the configured HS256 secret, for local use and tests."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    scope_list = list(scopes)
    if scope_list:
        claims["scope"] = " ".join(scope_list)
    if step_up:
        claims["amr"] = ["pwd"]
        claims["auth_time"] = int(issued if auth_time is None else auth_time)
    if extra:
        claims.update(extra)
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
