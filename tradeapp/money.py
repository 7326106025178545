"""Money as integer minor units with an ISO 4217 code from a frozen table; never a float.

Arithmetic happens only between equal currencies: `Money.__add__` raises `CurrencyMismatch`
for our own code paths, while the ledger's command handlers check `same_currency` first and
refuse with `CURRENCY_MISMATCH`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

#: ISO 4217 code -> number of minor-unit digits. Frozen: adding a currency changes the ledger's
#: rules, so it is a code change that every replica makes at the same version.
CURRENCIES: MappingProxyType[str, int] = MappingProxyType(
    {
        "AED": 2, "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "DKK": 2,
        "EUR": 2, "GBP": 2, "HKD": 2, "IDR": 2, "INR": 2, "JPY": 0, "KRW": 0, "KWD": 3,
        "MYR": 2, "NOK": 2, "NZD": 2, "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TWD": 2,
        "USD": 2, "VND": 0, "ZAR": 2,
    }
)  # fmt: skip

#: The largest amount a single command may carry: 10^15 minor units keeps every sum the ledger
#: forms far below 2^63, the largest integer msgpack encodes as a signed int.
AMOUNT_MINOR_MAX = 10**15


class CurrencyMismatch(ValueError):
    """Arithmetic between two different currencies was attempted (a bug in the caller)."""


def is_currency(code: object) -> bool:
    """True iff `code` is a str in the frozen ISO 4217 table."""
    return isinstance(code, str) and code in CURRENCIES


def is_amount(amount_minor: object) -> bool:
    """True iff `amount_minor` is an int (not a bool) with 0 < amount <= AMOUNT_MINOR_MAX."""
    return (
        isinstance(amount_minor, int)
        and not isinstance(amount_minor, bool)
        and 0 < amount_minor <= AMOUNT_MINOR_MAX
    )


def same_currency(*codes: str) -> bool:
    """True iff all the given currency codes are equal (vacuously true for none)."""
    return len(set(codes)) <= 1


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount in minor units of one currency (`Money("USD", 12_345)` is USD 123.45).

    Raises ValueError for an unknown currency or a non-int amount; negative amounts are allowed
    (a difference), floats never are.
    """

    currency: str
    minor: int

    def __post_init__(self) -> None:
        if not is_currency(self.currency):
            raise ValueError(f"unknown currency {self.currency!r}")
        if not isinstance(self.minor, int) or isinstance(self.minor, bool):
            raise ValueError(f"minor units must be an int, got {type(self.minor).__name__}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.currency, self.minor + other.minor)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.currency, self.minor - other.minor)

    def _check(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency} and {other.currency}")

    def __str__(self) -> str:
        digits = CURRENCIES[self.currency]
        sign = "-" if self.minor < 0 else ""
        units, fraction = divmod(abs(self.minor), 10**digits)
        if digits == 0:
            return f"{self.currency} {sign}{units:,}"
        return f"{self.currency} {sign}{units:,}.{fraction:0{digits}d}"
