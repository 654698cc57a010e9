"""What a model call costs: a price table per model, in US dollars per million tokens.

The defaults are OpenAI's list prices for standard processing as published at
https://platform.openai.com/docs/pricing (read 2026-11); prices change and other servers charge
differently, so `OPENAI_PRICES` (JSON) overrides or adds entries. A model is priced by the longest
entry its name starts with ("gpt-4o-mini-2024-07-18" is "gpt-4o-mini"), else by "*", which
defaults to a dear model's prices so an unknown model never looks free against a budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens: of the prompt (`input`) and of the answer (`output`)."""

    input: float
    output: float

    def __post_init__(self) -> None:
        if not (0 <= self.input < 10_000 and 0 <= self.output < 10_000):
            raise ValueError("a price is 0 to 10,000 dollars per million tokens")


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "o4-mini": Price(1.10, 4.40),
    "*": Price(2.50, 10.00),
}


class PriceTable:
    """Prices by model name (longest matching prefix, else "*")."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **(overrides or {})}
        # Longest first, so the most specific entry wins.
        self._names = sorted((n for n in self._prices if n != "*"), key=len, reverse=True)

    def price(self, model: str) -> Price:
        """The price of `model` (a name as the API reports it)."""
        for name in self._names:
            if model == name or model.startswith(name + "-") or model.startswith(name + ":"):
                return self._prices[name]
        return self._prices["*"]

    def cost_usd(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """US dollars for one call of `model` with these token counts, to a millionth."""
        price = self.price(model)
        dollars = (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000
        return round(dollars, 6)
