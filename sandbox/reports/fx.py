"""The MRR report's fixed exchange rates and minor-unit exponents (`baseCurrency`).

Fixed on purpose: a test can compute the expected converted figures by hand, and a report never
changes between two calls. They are round figures near early-2026 rates, not market data.
"""

from __future__ import annotations

from fractions import Fraction

from sandbox.errors import ApiError

DEFAULT_BASE = "usd"
"""The sandbox account's base currency (baseCurrency when the query has none)."""

USD_PER_UNIT: dict[str, Fraction] = {
    "usd": Fraction(1),
    "eur": Fraction("1.10"),
    "gbp": Fraction("1.25"),
    "chf": Fraction("1.15"),
    "cad": Fraction("0.75"),
    "aud": Fraction("0.65"),
    "dkk": Fraction("0.15"),
    "sek": Fraction("0.10"),
    "nok": Fraction("0.10"),
    "jpy": Fraction("0.0065"),
}
"""US dollars one major unit of each currency is worth."""

EXPONENTS: dict[str, int] = {"jpy": 0}
"""Minor-unit exponents that are not 2 (amounts of jpy are whole yen)."""


def exponent(currency: str) -> int:
    """How many decimal places a currency's minor unit has (2 unless listed)."""
    return EXPONENTS.get(currency, 2)


def check_rates(currencies: set[str], base: str) -> None:
    """A 400 ApiError unless every currency converts to `base` (no FX needed when they are equal)."""
    needs = currencies - {base}
    missing = sorted(c for c in needs | {base} if c not in USD_PER_UNIT) if needs else []
    if missing:
        known = ", ".join(USD_PER_UNIT)
        raise ApiError(
            400,
            f"The sandbox has no exchange rate for {', '.join(missing)} (it knows {known}); "
            "filter currency=X&baseCurrency=X to report one currency without conversion",
        )


def convert(amount: int, source: str, base: str) -> int:
    """Minor units of `source` in minor units of `base`, rounded half away from zero."""
    if source == base:
        return amount
    value = (
        Fraction(amount, 10 ** exponent(source)) * USD_PER_UNIT[source] / USD_PER_UNIT[base]
    ) * 10 ** exponent(base)
    whole, rest = divmod(abs(value.numerator), value.denominator)
    if 2 * rest >= value.denominator:
        whole += 1
    return whole if value >= 0 else -whole
