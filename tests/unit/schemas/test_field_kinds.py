"""The field kinds: every valid value is accepted and round-trips, every class of invalid value
is refused, by the check function and by the pydantic type alike."""

from __future__ import annotations

import string
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas.fields import (
    MAX_YEAR,
    MIN_YEAR,
    BusinessDate,
    DecimalText,
    EmailAddress,
    Identifier,
    Instant,
    Money,
    Name,
    Percent,
    RightsGroup,
    TimeZoneName,
    check_business_date,
    check_decimal,
    check_email,
    check_identifier,
    check_instant,
    check_money,
    check_name,
    check_percent,
    check_rights_group,
    check_time_zone,
    time_zone_names,
)
from schemas.ledger import QuoteHonoured
from seatledger.billing import BillingPeriod, period_at


class Fields(BaseModel):
    day: BusinessDate | None = None
    instant: Instant | None = None
    amount: DecimalText | None = None
    price: Money | None = None
    rate: Percent | None = None
    zone: TimeZoneName | None = None
    email: EmailAddress | None = None
    ident: Identifier | None = None
    name: Name | None = None
    group: RightsGroup | None = None


def refused(check: Any, field: str, value: Any) -> None:
    """Refused by the check function (a ValueError saying the rule) and by the type."""
    with pytest.raises(ValueError, match=r"\w") as refusal:
        check(value)
    assert not isinstance(refusal.value, ValidationError)
    if value is not None:  # the model's fields are optional
        with pytest.raises(ValidationError):
            Fields.model_validate({field: value})


# --------------------------------------------------------------------------------------------
# Business dates and instants.

business_dates = st.dates(min_value=date(MIN_YEAR, 1, 1), max_value=date(MAX_YEAR, 12, 31))


@given(business_dates)
def test_a_business_date_in_range_is_accepted_and_round_trips(day: date) -> None:
    assert check_business_date(day) == day
    assert check_business_date(day.isoformat()) == day
    model = Fields.model_validate_json(f'{{"day": "{day.isoformat()}"}}')
    assert model.day == day
    assert Fields.model_validate_json(model.model_dump_json()).day == day


@given(business_dates, st.integers(min_value=0, max_value=12))
def test_every_period_of_a_term_starting_on_a_business_date_is_representable(
    day: date, extra_years: int
) -> None:
    # Twelve years of monthly periods beyond the last business year are still dates.
    months = (MAX_YEAR - day.year + extra_years) * 12
    for kind in BillingPeriod:
        period_at(day, kind, months // kind.months)


@given(
    st.one_of(
        st.dates(max_value=date(MIN_YEAR - 1, 12, 31)),
        st.dates(min_value=date(MAX_YEAR + 1, 1, 1)),
    )
)
def test_a_date_outside_the_business_years_is_refused(day: date) -> None:
    refused(check_business_date, "day", day.isoformat())


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-16",
        "1999-12-31",
        "2200-01-01",
        "2026-02-30",
        "20260101",
        "2026-1-1",
        "2026-01-01T00:00:00",
        "١٢٣٤-٠١-٠١",
        " 2026-01-01",
        1700000000,
        None,
    ],
)
def test_business_date_refusals(text: Any) -> None:
    refused(check_business_date, "day", text)


@given(
    st.datetimes(
        min_value=datetime(MIN_YEAR, 1, 2),
        max_value=datetime(MAX_YEAR, 12, 30),
        timezones=st.just(UTC),
    )
)
def test_an_instant_in_range_is_accepted(moment: datetime) -> None:
    assert check_instant(moment) == moment
    assert Fields.model_validate({"instant": moment.isoformat()}).instant == moment


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "1999-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "2026-01-01T00:00:00",
    ],
)
def test_instant_refusals(text: str) -> None:
    with pytest.raises(ValidationError):
        Fields.model_validate({"instant": text})


def test_an_instant_without_offset_is_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        check_instant(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="years"):
        check_instant(datetime(9999, 12, 31, 23, 0, tzinfo=UTC) + timedelta(minutes=59))


# --------------------------------------------------------------------------------------------
# Decimal strings.

plain_decimals = st.from_regex(r"\A-?[0-9]{1,15}(\.[0-9]{1,8})?\Z")


@given(plain_decimals)
def test_a_plain_decimal_string_is_accepted_and_round_trips(text: str) -> None:
    value = check_decimal(text)
    assert value == Decimal(text)
    model = Fields.model_validate({"amount": text})
    assert model.amount == value
    dumped = model.model_dump(mode="json")["amount"]
    assert isinstance(dumped, str)
    assert Decimal(dumped) == value
    assert check_decimal(dumped) == value


@given(
    st.decimals(
        min_value=Decimal("-999999999999999.99999999"),
        max_value=Decimal("999999999999999.99999999"),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_a_python_decimal_within_the_rule_is_accepted(value: Decimal) -> None:
    assert check_decimal(value) == value


@given(st.integers(min_value=16, max_value=10_000))
def test_more_than_15_integer_digits_are_refused(digits: int) -> None:
    refused(check_decimal, "amount", "1" * digits)
    with pytest.raises(ValueError, match="integer digits"):
        check_decimal(Decimal("1" * digits))
    with pytest.raises(ValueError, match="integer digits"):
        check_decimal(10**digits)


@given(st.integers(min_value=9, max_value=10_000_000))
def test_more_than_8_decimal_places_are_refused_without_expanding_them(places: int) -> None:
    refused(check_decimal, "amount", f"0E-{places}")
    with pytest.raises(ValueError, match="decimal places"):
        check_decimal(Decimal(f"0E-{places}"))  # never formatted: bounded work


@given(
    plain_decimals,
    st.sampled_from(["+", " ", "_", "e3", "E-2", "\n", "\u00a0"]),
    st.sampled_from(["prefix", "suffix", "inside"]),
)
def test_any_other_spelling_of_a_decimal_is_refused(text: str, extra: str, where: str) -> None:
    if where == "prefix":
        spelled = extra + text
    elif where == "suffix":
        spelled = text + extra
    else:
        spelled = text[:1] + extra + text[1:]
    refused(check_decimal, "amount", spelled)


@pytest.mark.parametrize(
    "value",
    [
        "1_000",
        "١٢",
        "١٢.٥",
        " 12 ",
        "1e3",
        "+12",
        "0E-5000000",
        "1" * 21,
        "NaN",
        "Infinity",
        "",
        ".5",
        "5.",
        "--1",
        12.5,
        True,
        None,
        Decimal("NaN"),
        Decimal("Infinity"),
    ],
)
def test_an_amount_that_is_not_a_plain_bounded_decimal_string_is_refused(value: Any) -> None:
    refused(check_decimal, "amount", value)


@given(plain_decimals.filter(lambda t: t.startswith("-") and Decimal(t) != 0))
def test_money_is_never_negative(text: str) -> None:
    refused(check_money, "price", text)


@given(st.from_regex(r"\A[0-9]{1,15}(\.[0-9]{1,8})?\Z"))
def test_a_non_negative_decimal_is_money(text: str) -> None:
    assert check_money(text) == Decimal(text)
    assert Fields.model_validate({"price": text}).price == Decimal(text)


@given(st.decimals(min_value=0, max_value=100, places=8))
def test_a_percentage_from_0_to_100_is_accepted(rate: Decimal) -> None:
    text = format(rate, "f")
    assert check_percent(text) == rate
    assert Fields.model_validate({"rate": text}).rate == rate


@given(
    st.one_of(
        st.decimals(min_value=Decimal("100.00000001"), max_value=Decimal("1e14"), places=8),
        st.decimals(min_value=Decimal("-1e14"), max_value=Decimal("-0.00000001"), places=8),
    )
)
def test_a_percentage_outside_0_to_100_is_refused(rate: Decimal) -> None:
    refused(check_percent, "rate", format(rate, "f"))


# --------------------------------------------------------------------------------------------
# Time zones.


@given(st.sampled_from(sorted(time_zone_names())))
def test_every_listed_zone_is_accepted(zone: str) -> None:
    assert check_time_zone(zone) == zone
    assert Fields.model_validate({"zone": zone}).zone == zone


@pytest.mark.parametrize(
    "zone",
    [
        "localtime",
        "posixrules",
        "Factory",
        "right/UTC",
        "posix/Europe/Berlin",
        "Mars/Base",
        "europe/berlin",
        "../etc/passwd",
        "",
        "Europe/Berlin ",
        5,
    ],
)
def test_non_zones_are_refused(zone: Any) -> None:
    refused(check_time_zone, "zone", zone)


def test_the_usual_zones_are_listed() -> None:
    assert {"Europe/Berlin", "UTC", "America/New_York", "Asia/Kolkata"} <= time_zone_names()


# --------------------------------------------------------------------------------------------
# E-mail addresses.

local_parts = st.text(
    alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=30
).filter(lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
labels = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=20)


@given(local_parts, labels, st.sampled_from(["com", "de", "example", "org"]))
def test_a_plain_address_is_accepted_and_kept(local: str, label: str, tld: str) -> None:
    address = f"{local}@{label}.{tld}"
    assert check_email(address) == address
    assert Fields.model_validate({"email": address}).email == address


def test_an_address_is_stored_normalized_in_ascii() -> None:
    assert check_email("Billing@ACME.Example") == "Billing@acme.example"
    assert check_email("billing@bücher.example") == "billing@xn--bcher-kva.example"


@given(
    local_parts,
    st.sampled_from([",", "(", ")", "\x01", "\x7f", " ", "\n", '"', "<", ">", "[", "\\", ";"]),
)
def test_an_address_with_a_character_smtp_cannot_carry_is_refused(local: str, bad: str) -> None:
    refused(check_email, "email", f"{local}{bad}x@example.com")


@pytest.mark.parametrize(
    "address",
    [
        "a,b@example.com",
        "a\x01b@example.com",
        "a(b)@example.com",
        '"a b"@example.com',
        "Name <a@example.com>",
        "a@localhost",
        "a@b",
        "not-an-address",
        "a@[127.0.0.1]",
        "ü@example.com",
        "a@test.test",
        "a" * 250 + "@example.com",
        "",
        None,
    ],
)
def test_a_value_that_is_not_one_smtp_deliverable_address_is_refused(address: Any) -> None:
    refused(check_email, "email", address)


# --------------------------------------------------------------------------------------------
# Identifiers, names, rights groups.

identifiers = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._~@+|:=-]{0,199}\Z")


@given(identifiers)
def test_an_identifier_is_accepted_and_survives_a_path_segment(value: str) -> None:
    from urllib.parse import quote, unquote

    assert check_identifier(value) == value
    assert Fields.model_validate({"ident": value}).ident == value
    segment = quote(value, safe="")
    assert "/" not in segment
    assert unquote(segment) == value
    assert value not in (".", "..")


@pytest.mark.parametrize(
    "value",
    [
        "3f1c6b0e-8a52-4a8e-9a3e-0b6f2d1c9e77",
        "auth0|123",
        "someone@example.com",
        "owner-1",
        "google-oauth2|1234567890",
        "svc:user-admin",
        "a",
    ],
)
def test_token_subjects_are_identifiers(value: str) -> None:
    assert check_identifier(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "a/b",
        "../x",
        "..",
        ".",
        ".hidden",
        "-a",
        "a b",
        "a\x00b",
        "a\tb",
        " a",
        "a\n",
        "",
        "a" * 201,
        "ü",
        "a%2Fb",
        "a?b",
        "a#b",
        "a\\b",
        None,
        5,
    ],
)
def test_identifier_refusals(value: Any) -> None:
    refused(check_identifier, "ident", value)


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
        min_size=1,
        max_size=200,
    ).filter(lambda s: s.strip())
)
def test_a_printable_name_is_accepted(value: str) -> None:
    assert check_name(value) == value
    assert Fields.model_validate({"name": value}).name == value


@given(
    st.text(min_size=0, max_size=50),
    st.sampled_from(["\x00", "\x1b", "\n", "\r", "\t", "\x7f", "\u200b", "\u2028", "\u202e"]),
)
def test_a_name_with_a_control_or_format_character_is_refused(text: str, bad: str) -> None:
    refused(check_name, "name", text + bad + "x")


@pytest.mark.parametrize("value", ["", " ", "\t", "a" * 201, None])
def test_name_refusals(value: Any) -> None:
    refused(check_name, "name", value)


@given(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z"))
def test_a_rights_group_is_accepted(value: str) -> None:
    assert check_rights_group(value) == value
    assert Fields.model_validate({"group": value}).group == value


@pytest.mark.parametrize("value", ["", " ", "a/b", "guest ", ".x", "a" * 101, "a b", "ü"])
def test_rights_group_refusals(value: str) -> None:
    refused(check_rights_group, "group", value)


def test_the_json_schema_states_each_rule() -> None:
    properties = Fields.model_json_schema()["properties"]

    def schema(name: str) -> dict[str, Any]:
        return next(s for s in properties[name]["anyOf"] if s.get("type") == "string")

    assert schema("amount")["pattern"] == r"^-?[0-9]{1,15}(\.[0-9]{1,8})?$"
    assert schema("price")["pattern"] == r"^[0-9]{1,15}(\.[0-9]{1,8})?$"
    assert "0 to 100" in schema("rate")["description"]
    assert "2000 to 2199" in schema("day")["description"]
    assert schema("ident")["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9._~@+|:=-]{0,199}$"
    assert schema("email")["maxLength"] == 254


@pytest.mark.parametrize("text", ["0E-5000000", "1e3", "+12", " 12", "1_000", "١٢", "NaN"])
def test_a_contract_decimal_string_keeps_to_its_published_pattern(text: str) -> None:
    with pytest.raises(ValidationError):
        QuoteHonoured.model_validate(
            {"quote_id": str(uuid.uuid4()), "charge_date": "2026-03-10", "net": text}
        )


@pytest.mark.parametrize("text", ["0", "-0", "119.00", "0.00000001", "123456789012345678901"])
def test_a_contract_decimal_string_of_the_published_pattern_is_read(text: str) -> None:
    honoured = QuoteHonoured.model_validate(
        {"quote_id": str(uuid.uuid4()), "charge_date": "2026-03-10", "net": text}
    )
    assert honoured.net == Decimal(text)
