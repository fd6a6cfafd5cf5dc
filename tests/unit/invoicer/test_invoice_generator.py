"""The pure invoice generator: ledger event + contract terms -> invoice lines and totals."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.ledger import BillingPeriodRange, QuoteHonoured
from seatledger.billing import Period, prorate
from services.invoicer.domain import (
    InvalidBillingEventError,
    generate_invoice,
    rederive_invoices,
    renewal_invoice,
    seat_purchase_invoice,
)
from tests.unit.invoicer.ledger_events import (
    license_assigned,
    period_renewed,
    seats_increased,
    terms,
)


def test_a_seat_purchase_is_one_line_prorated_by_remaining_over_period_days():
    # Term anchored on Jan 31: the period containing Nov 28 is [Oct 31, Nov 30), D = 30.
    event = seats_increased(date(2026, 11, 28), added=2)
    event_id = uuid.uuid4()
    draft = seat_purchase_invoice(event, event_id)
    (line,) = draft.lines
    assert line.kind == "seat_purchase"
    assert line.quantity == 2
    assert line.unit_price == Decimal("30.00")
    assert (line.period_start, line.period_end) == (date(2026, 10, 31), date(2026, 11, 30))
    assert line.charge_date == date(2026, 11, 28)
    assert (line.remaining_days, line.period_days) == (2, 30)
    assert line.unrounded_amount == Decimal("4")  # 2 x 30.00 x 2 / 30
    assert line.amount == Decimal("4.00")
    assert line.description == "2 zusätzliche Plätze"
    assert (draft.net, draft.tax, draft.gross) == (
        Decimal("4.00"),
        Decimal("0.76"),
        Decimal("4.76"),
    )
    assert draft.caused_by.event_id == event_id
    assert draft.caused_by.event_type == "seatledger.ledger.SeatsIncreased.v1"
    assert draft.customer.name == "Müller & Söhne GmbH"
    assert draft.quote_id is None


def test_the_line_shows_the_unrounded_amount_and_rounds_it_once_half_up():
    event = seats_increased(
        date(2026, 11, 14),
        added=1,
        contract=terms(seat_price=Decimal("10.01"), tax_rate=Decimal("0")),
    )
    (line,) = seat_purchase_invoice(event, uuid.uuid4()).lines
    # [Oct 31, Nov 30): R = 16, D = 30; 10.01 x 16 / 30 = 5.338666...
    assert (line.remaining_days, line.period_days) == (16, 30)
    assert str(line.unrounded_amount).startswith("5.338666")
    assert line.amount == Decimal("5.34")


def test_a_purchase_with_a_quote_is_charged_exactly_the_quoted_net():
    event = seats_increased(date(2026, 11, 20), added=3)
    # The quote is computed by the ledger with the same prorate call on the pinned date.
    period = Period(event.period.start, event.period.end)
    quoted = prorate(3, event.terms.seat_price, period, date(2026, 11, 20), "EUR")
    quote = QuoteHonoured(quote_id=uuid.uuid4(), charge_date=date(2026, 11, 20), net=quoted.net)
    draft = seat_purchase_invoice(event.model_copy(update={"quote": quote}), uuid.uuid4())
    assert draft.net == quote.net == Decimal("30.00")  # 3 x 30 x 10/30
    assert draft.quote_id == quote.quote_id
    assert draft.quote_deviation is None
    assert str(quote.quote_id) in draft.lines[0].description


@given(
    price=st.decimals(min_value=0, max_value=100_000, places=2),
    added=st.integers(min_value=1, max_value=500),
    day=st.integers(min_value=0, max_value=29),
)
def test_the_invoice_and_the_quote_of_a_purchase_agree_to_the_cent(price, added, day):
    contract = terms(seat_price=price)
    charge_date = date(2026, 10, 31).fromordinal(date(2026, 10, 31).toordinal() + day)
    event = seats_increased(charge_date, added=added, contract=contract)
    period = Period(event.period.start, event.period.end)
    quote_net = prorate(added, price, period, charge_date, "EUR").net
    quote = QuoteHonoured(quote_id=uuid.uuid4(), charge_date=charge_date, net=quote_net)
    with_quote = seat_purchase_invoice(event.model_copy(update={"quote": quote}), uuid.uuid4())
    without_quote = seat_purchase_invoice(event, uuid.uuid4())
    assert with_quote.net == quote_net == without_quote.net
    assert with_quote.lines[0].amount == quote_net


def test_a_quote_that_differs_from_the_terms_is_still_honoured_and_the_deviation_reported():
    event = seats_increased(date(2026, 11, 20), added=3)
    quote = QuoteHonoured(
        quote_id=uuid.uuid4(), charge_date=date(2026, 11, 20), net=Decimal("29.99")
    )
    draft = seat_purchase_invoice(event.model_copy(update={"quote": quote}), uuid.uuid4())
    assert draft.net == Decimal("29.99")
    assert draft.lines[0].amount == Decimal("29.99")
    assert draft.quote_deviation == Decimal("-0.01")
    assert draft.tax == Decimal("5.70")  # 29.99 x 19% = 5.6981


def test_the_quotes_pinned_charge_date_decides_the_days():
    # Confirmed just after local midnight, but quoted the day before: the quote's date counts.
    event = seats_increased(date(2026, 11, 21), added=1)
    quote = QuoteHonoured(
        quote_id=uuid.uuid4(), charge_date=date(2026, 11, 20), net=Decimal("10.00")
    )
    (line,) = seat_purchase_invoice(event.model_copy(update={"quote": quote}), uuid.uuid4()).lines
    assert line.charge_date == date(2026, 11, 20)
    assert line.remaining_days == 10


def test_a_renewal_invoices_every_seat_for_the_full_period():
    event = period_renewed(1, seats=5)  # [Feb 28, Mar 31) of a term anchored on Jan 31
    draft = renewal_invoice(event, uuid.uuid4())
    (line,) = draft.lines
    assert line.kind == "renewal"
    assert (line.period_start, line.period_end) == (date(2026, 2, 28), date(2026, 3, 31))
    assert line.charge_date == date(2026, 2, 28)
    assert (line.remaining_days, line.period_days) == (31, 31)
    assert line.quantity == 5
    assert line.amount == Decimal("150.00")
    assert (draft.net, draft.tax, draft.gross) == (
        Decimal("150.00"),
        Decimal("28.50"),
        Decimal("178.50"),
    )
    assert line.description == "Verlängerung, 5 Plätze"


def test_renewal_invoices_of_one_period_share_one_id_whatever_event_announced_them():
    cloud = uuid.uuid4()
    first = renewal_invoice(period_renewed(3, cloud_id=cloud), uuid.uuid4())
    again = renewal_invoice(period_renewed(3, cloud_id=cloud), uuid.uuid4())
    following = renewal_invoice(period_renewed(4, cloud_id=cloud), uuid.uuid4())
    assert first.invoice_id == again.invoice_id != following.invoice_id


def test_a_zero_amount_purchase_still_gives_an_invoice():
    contract = terms(seat_price=Decimal("0.10"))
    draft = seat_purchase_invoice(
        seats_increased(date(2026, 11, 29), added=1, contract=contract), uuid.uuid4()
    )
    assert draft.lines[0].remaining_days == 1
    assert (draft.net, draft.tax, draft.gross) == (Decimal("0.00"),) * 3


@pytest.mark.parametrize(
    ("currency", "price", "expected_net", "expected_tax"),
    [
        ("JPY", Decimal("1000"), Decimal("67"), Decimal("13")),  # 1000 x 2/30 = 66.67; tax 12.73
        ("KWD", Decimal("10.000"), Decimal("0.667"), Decimal("0.127")),  # 0.6666..; 0.12673
    ],
)
def test_zero_and_three_decimal_currencies(currency, price, expected_net, expected_tax):
    contract = terms(currency=currency, seat_price=price)
    draft = seat_purchase_invoice(
        seats_increased(date(2026, 11, 28), added=1, contract=contract), uuid.uuid4()
    )
    assert (draft.net, draft.tax) == (expected_net, expected_tax)
    assert str(draft.gross) == str(expected_net + expected_tax)


def test_a_purchase_against_the_wrong_period_is_refused():
    event = seats_increased(date(2026, 11, 28))
    wrong = event.model_copy(
        update={"period": BillingPeriodRange(start=date(2026, 11, 1), end=date(2026, 12, 1))}
    )
    with pytest.raises(InvalidBillingEventError, match="falls in the period"):
        seat_purchase_invoice(wrong, uuid.uuid4())


def test_inconsistent_seat_counts_are_refused():
    event = seats_increased(date(2026, 11, 28)).model_copy(update={"seats_after": 9})
    with pytest.raises(InvalidBillingEventError, match="seats_after"):
        seat_purchase_invoice(event, uuid.uuid4())


def test_a_renewal_of_another_period_than_its_index_is_refused():
    event = period_renewed(2).model_copy(update={"period_index": 3})
    with pytest.raises(InvalidBillingEventError, match="period 3"):
        renewal_invoice(event, uuid.uuid4())


def test_an_unknown_time_zone_or_currency_is_refused():
    with pytest.raises(InvalidBillingEventError, match="time zone"):
        seat_purchase_invoice(
            seats_increased(date(2026, 11, 28), contract=terms(time_zone="Mars/Olympus")),
            uuid.uuid4(),
        )
    with pytest.raises(InvalidBillingEventError, match="ISO 4217"):
        seat_purchase_invoice(
            seats_increased(date(2026, 11, 28), contract=terms(currency="XXY")), uuid.uuid4()
        )


def test_other_ledger_events_cause_no_invoice():
    assert generate_invoice(license_assigned(), uuid.uuid4()) is None


def test_rederiving_from_the_ledger_history_gives_one_invoice_per_purchase_and_period():
    cloud = uuid.uuid4()
    purchase_id, renewal_id = uuid.uuid4(), uuid.uuid4()
    purchase = seats_increased(date(2026, 11, 28), cloud_id=cloud)
    renewal = period_renewed(10, cloud_id=cloud)
    history = [
        (uuid.uuid4(), license_assigned(cloud)),
        (purchase_id, purchase),
        (purchase_id, purchase),  # re-published: same event id
        (renewal_id, renewal),
        (uuid.uuid4(), renewal),  # the same period renewed again: still one invoice
    ]
    drafts = rederive_invoices(history)
    assert [d.kind for d in drafts] == ["seat_purchase", "renewal"]
    assert drafts[0] == seat_purchase_invoice(purchase, purchase_id)
    assert drafts[1] == renewal_invoice(renewal, renewal_id)


def test_a_quoted_net_keeps_the_currencys_scale_and_a_fraction_of_a_cent_is_refused():
    event = seats_increased(date(2026, 11, 20), added=3)
    short = QuoteHonoured(
        quote_id=uuid.uuid4(), charge_date=date(2026, 11, 20), net=Decimal("29.9")
    )
    draft = seat_purchase_invoice(event.model_copy(update={"quote": short}), uuid.uuid4())
    assert str(draft.net) == "29.90"
    broken = QuoteHonoured(
        quote_id=uuid.uuid4(), charge_date=date(2026, 11, 20), net=Decimal("29.995")
    )
    with pytest.raises(InvalidBillingEventError, match="minor units"):
        seat_purchase_invoice(event.model_copy(update={"quote": broken}), uuid.uuid4())


@given(
    currency=st.sampled_from(["EUR", "JPY", "KWD", "CHF"]),
    price_units=st.integers(min_value=0, max_value=10**9),
    tax_rate=st.decimals(min_value=0, max_value=30, places=1),
    added=st.integers(min_value=1, max_value=1000),
    term_start=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
    billing_period=st.sampled_from(["monthly", "annual"]),
    offset_days=st.integers(min_value=0, max_value=2000),
)
def test_every_purchase_invoice_adds_up(
    currency, price_units, tax_rate, added, term_start, billing_period, offset_days
):
    from datetime import timedelta

    from seatledger.billing import minor_units, round_half_up, tax_amount

    price = Decimal(price_units).scaleb(-minor_units(currency))
    contract = terms(
        currency=currency,
        seat_price=price,
        tax_rate=tax_rate,
        term_start=term_start,
        billing_period=billing_period,
    )
    event = seats_increased(
        term_start + timedelta(days=offset_days), added=added, contract=contract
    )
    draft = seat_purchase_invoice(event, uuid.uuid4())
    (line,) = draft.lines
    assert line.amount == round_half_up(line.unrounded_amount, currency)
    assert 1 <= line.remaining_days <= line.period_days
    assert line.amount <= round_half_up(added * price, currency)
    assert draft.net == line.amount
    assert draft.tax == tax_amount(draft.net, tax_rate, currency)
    assert draft.gross == draft.net + draft.tax
    for amount in (draft.net, draft.tax, draft.gross):
        assert -amount.as_tuple().exponent == minor_units(currency)  # type: ignore[operator]
