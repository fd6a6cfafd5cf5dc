"""Building blocks of the contracts: the base model and the value types."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    WithJsonSchema,
)

_DECIMAL_PATTERN = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
_DECIMAL = re.compile(_DECIMAL_PATTERN[:-1] + r"\Z")


def _decimal_from_string(value: Any) -> Any:
    """Money and rates travel as decimal strings; a JSON number (a float) is refused."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (bool, float)):
        raise ValueError("decimal values are strings, never floats")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        if not _DECIMAL.match(value):
            # The published pattern: ASCII digits, no exponent, sign, spaces or underscores.
            raise ValueError(f"{value[:40]!r} is not a plain decimal string")
        try:
            parsed = Decimal(value)
        except InvalidOperation as exc:
            raise ValueError(f"{value!r} is not a decimal number") from exc
        if not parsed.is_finite():
            raise ValueError("decimal values are finite")
        return parsed
    raise ValueError("decimal values are strings")


#: A decimal amount, serialized as a string such as ``"119.00"`` (never a float).
DecimalString = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_string),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": _DECIMAL_PATTERN}),
]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps carry a UTC offset")
    return value


#: An instant with its UTC offset (RFC 3339).
Timestamp = Annotated[datetime, AfterValidator(_aware)]

#: A calendar date (ISO 8601 ``YYYY-MM-DD``), local to the contract's time zone.
LocalDate = date

#: An ISO 4217 currency code.
CurrencyCode = Annotated[
    str,
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$"}),
    AfterValidator(lambda v: _check_currency(v)),
]


def _check_currency(value: str) -> str:
    if len(value) != 3 or not value.isascii() or not value.isupper() or not value.isalpha():
        raise ValueError("a currency is a three-letter ISO 4217 code")
    return value


class ContractModel(BaseModel):
    """Base of every contract payload.

    Unknown fields are ignored when reading, so a consumer built against an older minor shape
    of a version keeps working when the version gains optional fields.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class EventData(ContractModel):
    """Base of an event's ``data``: the CloudEvents ``type`` is
    ``seatledger.<source>.<name>.v<version>``."""

    source_service: ClassVar[str]
    event_name: ClassVar[str]
    event_version: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return f"seatledger.{cls.source_service}.{cls.event_name}.v{cls.event_version}"
