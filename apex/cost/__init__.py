"""What requests cost: the built-in price table, the config's prices, and the arithmetic.

Built once per Snapshot (``PriceBook``), asked once per finished request (``cost``) and
once per budgeted request up front (``price`` for the reservation). Pure: no I/O.
"""

from apex.cost.prices import BUILTIN_PRICES, PRICES_DATE
from apex.cost.pricing import PriceBook, UnitPrice, cost_of

__all__ = ["BUILTIN_PRICES", "PRICES_DATE", "PriceBook", "UnitPrice", "cost_of"]
