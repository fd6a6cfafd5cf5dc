"""Bearer JWTs: verification, step-up (RFC 9470) and minting of development tokens.

- Algorithms come from an allow-list (``settings.jwt_algorithms``); ``none`` is never allowed,
  and a token whose header names another algorithm is refused before any key is used.
- ``iss``, ``aud``, ``exp`` and ``sub`` are required and checked.
- HS256 uses ``settings.jwt_secret`` (development and tests). RS256/ES256 keys come from a JWKS
  file (``jwt_jwks_file``) or URL (``jwt_jwks_url``), chosen by the token's ``kid``.
- Claims have their registered types, else the token is refused (401): ``sub`` a non-empty
  string, ``scope`` a space-separated string (or a list of strings), ``amr`` a list of strings,
  ``exp``, ``iat`` and ``auth_time`` finite numbers in the range of real instants (no booleans,
  strings, ``Infinity``, ``NaN`` or ``1e400``). A token issued in the future (``iat`` beyond
  ``LEEWAY_S`` of clock skew) is refused; ``iat`` may be absent.
- Step-up: ``amr`` contains ``pwd`` and ``auth_time`` lies within ``max_age`` seconds and not
  in the future (beyond ``LEEWAY_S`` of clock skew); else 401 with
  ``WWW-Authenticate: Bearer error="insufficient_user_authentication"``.
- The default development secret is refused unless the settings describe the embedded
  default (SQLite, no Kafka).
"""

from __future__ import annotations

import json
import math
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
#: The largest instant a numeric date claim may name (year 9999); larger ones are refused.
MAX_NUMERIC_DATE = 253_402_300_799


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
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
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
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise AuthError("the token is invalid") from exc
        return _principal_of(claims, now=self.clock())

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
        now = self.clock()
        if principal.auth_time is not None and principal.auth_time > now + LEEWAY_S:
            raise AuthError(
                "the token's authentication time lies in the future",
                error="insufficient_user_authentication",
            )
        if principal.auth_time is None or now - principal.auth_time > self.step_up_max_age_s:
            raise AuthError(
                f"the last authentication is older than {self.step_up_max_age_s} seconds",
                error="insufficient_user_authentication",
            )


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519): a finite number of seconds, no boolean; else 401."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AuthError(f"the token's claim {name!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise AuthError(f"the token's claim {name!r} is not a finite number")
    if not 0 <= value <= MAX_NUMERIC_DATE:
        raise AuthError(f"the token's claim {name!r} is out of range")
    return float(value)


def _strings(claims: dict[str, Any], name: str, *, space_separated: bool) -> list[str]:
    """A claim that is a list of strings (or, when ``space_separated``, one string of
    space-separated values); absent: empty; any other type: 401."""
    value = claims.get(name)
    if value is None:
        return []
    if space_separated and isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise AuthError(f"the token's claim {name!r} has the wrong type")


def _principal_of(claims: dict[str, Any], *, now: float) -> tuple[Principal, float]:
    """The principal of verified claims; claims of the wrong type, and a token issued after
    ``now`` (beyond the clock skew), are refused (401)."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthError("the token's subject is empty or not a string")
    expires = _numeric_date(claims, "exp")
    if expires is None:
        raise AuthError("the token lacks the claim 'exp'")
    issued = _numeric_date(claims, "iat")
    if issued is not None and issued > now + LEEWAY_S:
        raise AuthError("the token was issued in the future")
    auth_time = _numeric_date(claims, "auth_time")
    principal = Principal(
        subject=subject,
        scopes=frozenset(_strings(claims, "scope", space_separated=True)),
        amr=tuple(_strings(claims, "amr", space_separated=False)),
        auth_time=None if auth_time is None else int(auth_time),
    )
    return principal, expires


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
