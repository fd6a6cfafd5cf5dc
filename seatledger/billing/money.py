"""Money: ``Decimal`` only, rounded once, half-up, to the currency's ISO 4217 minor units.

Rounding rules (the product's promise):

- A prorated charge is computed exactly and rounded once, half up, to the currency's minor
  units (EUR 2, JPY 0, KWD 3): ``round_half_up(Decimal("0.125"), "EUR") == Decimal("0.13")``.
- Tax is computed at invoice level: ``tax = round_half_up(net * rate / 100)``;
  ``gross = net + tax``.
- Amounts are never ``float``; they travel as decimal strings.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

# ISO 4217 minor units that are not 2. Every other active code has 2.
_MINOR_UNITS_EXCEPTIONS: dict[str, int] = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}

# Active ISO 4217 currency codes (funds and precious metals excluded).
_ACTIVE_CODES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS
    KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD
    TZS UAH UGX USD UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)

# Enough digits for any seat price times any seat count times any day ratio, exactly.
_PRECISION = 60


class UnknownCurrencyError(ValueError):
    """Not an active ISO 4217 currency code."""


def minor_units(currency: str) -> int:
    """Digits after the decimal point of ``currency`` (ISO 4217)."""
    if currency not in _ACTIVE_CODES:
        raise UnknownCurrencyError(f"{currency!r} is not an active ISO 4217 currency code")
    return _MINOR_UNITS_EXCEPTIONS.get(currency, 2)


def quantize(currency: str) -> Decimal:
    """The smallest unit of ``currency`` as an exponent: ``Decimal("0.01")`` for EUR."""
    return Decimal(1).scaleb(-minor_units(currency))


def round_half_up(amount: Decimal, currency: str) -> Decimal:
    """Round once, half away from zero, to the minor units of ``currency``."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return amount.quantize(quantize(currency), rounding=ROUND_HALF_UP)


def tax_amount(net: Decimal, rate_percent: Decimal, currency: str) -> Decimal:
    """Invoice-level tax: ``round_half_up(net * rate / 100)``."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return round_half_up(net * rate_percent / Decimal(100), currency)
