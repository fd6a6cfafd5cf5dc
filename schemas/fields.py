"""The field kinds: one rule per kind of value that crosses the edge of the product.

Each kind is defined once, as

- a plain check function (``check_*``) for the domain and any other Python code: it returns the
  value in its canonical form or raises :class:`ValueError` with a sentence saying the rule;
- an ``Annotated`` pydantic type for HTTP bodies, query parameters and models, built on the
  same function, whose JSON Schema states the rule.

The rules (the ledger's README lists them for the API's clients):

- **business dates** (term start, effective dates): ISO ``YYYY-MM-DD`` in the years
  2000 to 2199 inclusive, so that any billing period of a term stays a representable date;
- **instants** that select a state (``as_of``): RFC 3339 with an offset, years 2000 to 2199;
- **decimal strings** (money, rates): ``-?[0-9]{1,15}(.[0-9]{1,8})?`` in ASCII digits only: no
  exponent, no ``+``, no ``_``, no spaces, at most 15 integer and 8 fractional digits. A JSON
  number is refused (money is never a float); a ``Decimal`` or ``int`` given by Python code
  must fit the same rule. **Money** (a seat price) is not negative; a **tax rate** is a
  percentage from 0 to 100;
- **time zones**: an IANA zone name known to the zone database, not one of its non-zones
  (``localtime``, ``posixrules``, ``Factory``, the ``posix/`` and ``right/`` copies);
- **e-mail addresses**: at most 254 characters, an address an SMTP sender without SMTPUTF8
  delivers (checked by ``email-validator``: no quoted local part, no comments, no commas or
  control characters, a domain with a dot and not a special-use one); stored in its normalized
  ASCII form (domain lower-cased, an internationalized domain as IDNA);
- **identifiers** (user ids, owner ids): 1 to 200 characters of ``A-Z a-z 0-9`` and
  ``. _ ~ @ + | : = -``, the first one a letter or digit: they survive a URL path segment
  unchanged (no ``/``, no ``.`` or ``..`` segment, no spaces or control characters), and token
  subjects such as UUIDs, ``auth0|123`` or ``someone@example.com`` are identifiers;
- **names** (a customer's name): 1 to 200 characters, not blank, no control or format
  characters and no line or paragraph separators;
- **rights groups**: 1 to 100 characters of ``A-Z a-z 0-9 . _ -``, the first a letter or digit.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema


def _full_match(pattern: str) -> re.Pattern[str]:
    """The Python regex of a JSON Schema ``pattern`` written ``^...$``: its ``$`` becomes
    ``\\Z``, since Python's ``$`` also matches before a final newline."""
    return re.compile(pattern[:-1] + r"\Z")


# --------------------------------------------------------------------------------------------
# Business dates and instants.

#: The first and the last year of a business date or an ``as_of`` instant.
MIN_YEAR = 2000
MAX_YEAR = 2199


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def check_business_date(value: Any) -> date:
    """A business date: a date (not a datetime), or its ISO text ``YYYY-MM-DD``, in the years
    2000 to 2199 inclusive."""
    if isinstance(value, str):
        if not _ISO_DATE.match(value):
            raise ValueError("a business date is an ISO date YYYY-MM-DD")
        try:
            value = date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a calendar date") from exc
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValueError("a business date is an ISO date YYYY-MM-DD")
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"a business date lies in the years {MIN_YEAR} to {MAX_YEAR}")
    return value


def check_instant(value: datetime) -> datetime:
    """An instant with a UTC offset in the years 2000 to 2199 (UTC) inclusive."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("an instant is an RFC 3339 timestamp with its UTC offset")
    try:
        year = value.astimezone(UTC).year
    except OverflowError as exc:
        raise ValueError(f"an instant lies in the years {MIN_YEAR} to {MAX_YEAR}") from exc
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"an instant lies in the years {MIN_YEAR} to {MAX_YEAR}")
    return value


#: A business date (years 2000 to 2199).
BusinessDate = Annotated[
    date,
    BeforeValidator(check_business_date),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "description": f"ISO date YYYY-MM-DD, years {MIN_YEAR} to {MAX_YEAR}",
        }
    ),
]

#: An instant (RFC 3339 with its offset, years 2000 to 2199).
Instant = Annotated[
    datetime,
    AfterValidator(check_instant),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": f"RFC 3339 instant with its UTC offset, years {MIN_YEAR} to {MAX_YEAR}",
        }
    ),
]

# --------------------------------------------------------------------------------------------
# Decimal strings.

INTEGER_DIGITS = 15
FRACTION_DIGITS = 8
DECIMAL_PATTERN = rf"^-?[0-9]{{1,{INTEGER_DIGITS}}}(\.[0-9]{{1,{FRACTION_DIGITS}}})?$"
MONEY_PATTERN = rf"^[0-9]{{1,{INTEGER_DIGITS}}}(\.[0-9]{{1,{FRACTION_DIGITS}}})?$"
#: A percentage is a non-negative decimal string (its bound, 100, is stated in the schema).
PERCENT_PATTERN = MONEY_PATTERN
_DECIMAL = _full_match(DECIMAL_PATTERN)
_MAX_TEXT = 1 + INTEGER_DIGITS + 1 + FRACTION_DIGITS
_LIMIT = Decimal(10) ** INTEGER_DIGITS


def check_decimal(value: Any) -> Decimal:
    """A decimal string (see the module) as a :class:`Decimal`; a ``Decimal`` or ``int`` is
    accepted when its plain notation fits the same rule. Floats and booleans are refused."""
    if isinstance(value, (bool, float)):
        raise ValueError('a decimal value is a string such as "12.50", never a JSON number')
    if isinstance(value, int):
        if -_LIMIT < value < _LIMIT:
            return Decimal(value)
        raise ValueError(f"a decimal value has at most {INTEGER_DIGITS} integer digits")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a decimal value is a finite number")
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        if exponent < -FRACTION_DIGITS:
            raise ValueError(f"a decimal value has at most {FRACTION_DIGITS} decimal places")
        if value and value.adjusted() >= INTEGER_DIGITS:
            raise ValueError(f"a decimal value has at most {INTEGER_DIGITS} integer digits")
        value = format(value, "f")  # bounded by the two checks above
    if not isinstance(value, str):
        raise ValueError('a decimal value is a string such as "12.50"')
    if len(value) > _MAX_TEXT or not _DECIMAL.match(value):
        raise ValueError(
            f"a decimal value is written with ASCII digits, at most {INTEGER_DIGITS} before "
            f"and {FRACTION_DIGITS} after the point, an optional leading '-', nothing else "
            "(no exponent, '+', '_' or spaces)"
        )
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only decimals
        raise ValueError(f"{value!r} is not a decimal number") from exc


def check_money(value: Any) -> Decimal:
    """A non-negative decimal string (a price)."""
    amount = check_decimal(value)
    if amount < 0 or (amount == 0 and amount.is_signed()):
        raise ValueError("an amount of money here is not negative")
    return amount


def check_percent(value: Any) -> Decimal:
    """A decimal string from 0 to 100 inclusive (a tax rate in percent)."""
    rate = check_decimal(value)
    if not Decimal(0) <= rate <= Decimal(100) or rate.is_signed():
        raise ValueError("a percentage lies between 0 and 100")
    return rate


def _decimal_type(check: Any, pattern: str, description: str) -> Any:
    return Annotated[
        Decimal,
        BeforeValidator(check),
        PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": pattern,
                "maxLength": _MAX_TEXT,
                "description": description,
            }
        ),
    ]


#: A decimal string (may be negative).
DecimalText = _decimal_type(
    check_decimal,
    DECIMAL_PATTERN,
    f"decimal string, up to {INTEGER_DIGITS} integer and {FRACTION_DIGITS} fractional digits",
)
#: A non-negative decimal string (money).
Money = _decimal_type(
    check_money,
    MONEY_PATTERN,
    f"non-negative decimal string, up to {INTEGER_DIGITS} integer and "
    f"{FRACTION_DIGITS} fractional digits",
)
#: A percentage from 0 to 100 as a decimal string.
Percent = _decimal_type(
    check_percent,
    PERCENT_PATTERN,
    f"percent from 0 to 100 inclusive, up to {FRACTION_DIGITS} decimal places",
)

# --------------------------------------------------------------------------------------------
# Time zones.

_NON_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def time_zone_names() -> frozenset[str]:
    """The IANA zone names accepted: the zone database's, without its non-zones."""
    return frozenset(
        name
        for name in zoneinfo.available_timezones()
        if name not in _NON_ZONES and not name.startswith(("posix/", "right/"))
    )


def check_time_zone(value: str) -> str:
    """An IANA time zone name such as ``Europe/Berlin`` (see :func:`time_zone_names`)."""
    if not isinstance(value, str) or value not in time_zone_names():
        raise ValueError(f"{str(value)[:64]!r} is not an IANA time zone name")
    return value


TimeZoneName = Annotated[
    str,
    AfterValidator(check_time_zone),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 64,
            "description": "IANA time zone name, e.g. Europe/Berlin",
            "examples": ["Europe/Berlin"],
        }
    ),
]

# --------------------------------------------------------------------------------------------
# E-mail addresses.

MAX_EMAIL = 254


def check_email(value: str) -> str:
    """An e-mail address an SMTP sender delivers, in its normalized ASCII form."""
    if not isinstance(value, str) or not value or len(value) > MAX_EMAIL:
        raise ValueError(f"an e-mail address has 1 to {MAX_EMAIL} characters")
    try:
        checked = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_display_name=False,
            allow_domain_literal=False,
        )
    except EmailNotValidError as exc:
        raise ValueError(f"not a deliverable e-mail address: {exc}") from exc
    normalized = checked.ascii_email or checked.normalized
    if len(normalized) > MAX_EMAIL:
        raise ValueError(f"an e-mail address has 1 to {MAX_EMAIL} characters")
    return normalized


EmailAddress = Annotated[
    str,
    AfterValidator(check_email),
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "minLength": 3,
            "maxLength": MAX_EMAIL,
            "description": "an e-mail address deliverable without SMTPUTF8, stored normalized",
        }
    ),
]

# --------------------------------------------------------------------------------------------
# Identifiers, names, rights groups.

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._~@+|:=-]{0,199}$"
_IDENTIFIER = _full_match(IDENTIFIER_PATTERN)


def check_identifier(value: str) -> str:
    """A user or owner id: 1 to 200 of ``A-Z a-z 0-9 . _ ~ @ + | : = -``, first alphanumeric."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(
            "an id has 1 to 200 characters of A-Z a-z 0-9 . _ ~ @ + | : = - "
            "and starts with a letter or digit"
        )
    return value


Identifier = Annotated[
    str,
    AfterValidator(check_identifier),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": IDENTIFIER_PATTERN,
            "minLength": 1,
            "maxLength": 200,
            "description": "1-200 of A-Z a-z 0-9 . _ ~ @ + | : = -, starting alphanumeric",
        }
    ),
]

MAX_NAME = 200
#: Unicode categories never allowed in a name: controls, format characters, surrogates,
#: private use, unassigned, line and paragraph separators.
_NAME_FORBIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def check_name(value: str) -> str:
    """A display name: 1 to 200 printable characters, not blank."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME:
        raise ValueError(f"a name has 1 to {MAX_NAME} characters")
    if not value.strip():
        raise ValueError("a name is not blank")
    if any(unicodedata.category(ch) in _NAME_FORBIDDEN for ch in value):
        raise ValueError("a name has no control, format or separator characters")
    return value


Name = Annotated[
    str,
    AfterValidator(check_name),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_NAME,
            "description": "1-200 printable characters, not blank, no control characters",
        }
    ),
]

RIGHTS_GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_RIGHTS_GROUP = _full_match(RIGHTS_GROUP_PATTERN)


def check_rights_group(value: str) -> str:
    """A rights group: 1 to 100 of ``A-Z a-z 0-9 . _ -``, first alphanumeric."""
    if not isinstance(value, str) or not _RIGHTS_GROUP.match(value):
        raise ValueError(
            "a rights group has 1 to 100 characters of A-Z a-z 0-9 . _ - "
            "and starts with a letter or digit"
        )
    return value


RightsGroup = Annotated[
    str,
    AfterValidator(check_rights_group),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": RIGHTS_GROUP_PATTERN,
            "minLength": 1,
            "maxLength": 100,
            "description": "1-100 of A-Z a-z 0-9 . _ -, starting alphanumeric",
        }
    ),
]
