"""The money and time rules of the product, as pure functions.

One implementation serves the ledger's quotes and the invoicer's invoices, so a quote and the
invoice of the purchase made with it agree to the cent.
"""

from seatledger.billing.money import (
    UnknownCurrencyError,
    minor_units,
    quantize,
    round_half_up,
    tax_amount,
)
from seatledger.billing.periods import (
    BillingPeriod,
    Period,
    PeriodError,
    add_months,
    local_date,
    period_at,
    period_containing,
    period_index_containing,
    period_number,
)
from seatledger.billing.proration import Proration, prorate, renewal_net

__all__ = [
    "BillingPeriod",
    "Period",
    "PeriodError",
    "Proration",
    "UnknownCurrencyError",
    "add_months",
    "local_date",
    "minor_units",
    "period_at",
    "period_containing",
    "period_index_containing",
    "period_number",
    "prorate",
    "quantize",
    "renewal_net",
    "round_half_up",
    "tax_amount",
]
