"""Configuration from ``SEATLEDGER_*`` environment variables (pydantic-settings).

Nothing reads the environment at import time: call :func:`load_settings` in a composition
root and pass the result down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The development JWT secret. Accepted only by the embedded default (SQLite, no Kafka);
#: a service pointed at PostgreSQL or Kafka refuses to start with it.
DEV_JWT_SECRET = "seatledger-dev-secret-change-me-0123456789"  # noqa: S105


class Settings(BaseSettings):
    """Every setting of every service. Unset optional infrastructure means the embedded default."""

    model_config = SettingsConfigDict(env_prefix="SEATLEDGER_", extra="ignore")

    # Storage. Unset: SQLite files in ``data_dir``.
    database_url: str | None = None
    data_dir: Path = Path("var")

    # Kafka. Unset: the embedded default, where consumers follow notification logs directly.
    kafka_bootstrap_servers: str | None = None
    kafka_topic_partitions: int = Field(default=6, ge=1)
    kafka_topic_retention_ms: int = Field(default=-1, ge=-1)  # -1 keeps events forever
    kafka_client_id: str = "seatledger"
    # Prepended to every topic name (e.g. "staging." or a test run's namespace); empty in
    # production, where the topics are exactly the contract's names.
    kafka_topic_prefix: str = ""

    # HTTP.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    # Bounds of every request: headers and body must arrive in time, bodies and answers are
    # limited in size (413 for a larger body, 408 for a body too slow).
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    http_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    http_max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=64 * 1024)
    # How long an Idempotency-Key's answer is kept and replayed (then the key is free again).
    idempotency_keep_answers_s: int = Field(default=86400, ge=60)

    # Auth.
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "seatledger"
    jwt_audience: str = "seatledger"
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    jwt_jwks_file: Path | None = None
    jwt_jwks_url: str | None = None
    step_up_max_age_s: int = Field(default=300, ge=1)

    # Domain.
    licensed_rights_groups: list[str] = Field(default_factory=lambda: ["admin", "employee"])
    quote_ttl_s: int = Field(default=900, ge=1)
    invoice_number_prefix: str = "SL"

    # E-mail. Unset host: messages are written as .eml files to ``data_dir/outbox``.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_timeout_s: float = 10.0
    mail_from: str = "billing@seatledger.invalid"

    # Logging.
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    @field_validator("licensed_rights_groups", "jwt_algorithms", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def topic(self, name: str) -> str:
        """The name of the contract topic ``name`` in this deployment."""
        return f"{self.kafka_topic_prefix}{name}"

    @property
    def embedded(self) -> bool:
        """True for the embedded default: SQLite storage and no Kafka."""
        url = self.database_url
        return self.kafka_bootstrap_servers is None and (url is None or url.startswith("sqlite"))


def load_settings(**overrides: object) -> Settings:
    """Read the environment; keyword arguments win over it."""
    return Settings(**overrides)  # type: ignore[arg-type]
