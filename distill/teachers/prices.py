"""Default prices for well-known teacher models, as data.

USD per million tokens: (input, cached input, output). These are LIST PRICES AT THE TIME
OF WRITING (late 2025, standard tier, no discounts or off-peak rates); providers change
them. A recipe's `teacher.price_input_per_m` / `price_output_per_m` always win over this
table. Matching is by the model name the recipe sends, case-insensitive, longest key first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input_per_m: float
    cached_input_per_m: float
    output_per_m: float
    source: str = "list price at time of writing"

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * self.input_per_m
            + cached * self.cached_input_per_m
            + completion_tokens * self.output_per_m
        ) / 1_000_000


# name fragment -> (input, cached input, output) USD per million tokens
DEFAULT_PRICES: dict[str, tuple[float, float, float]] = {
    # DeepSeek API (deepseek-chat = V3.x, deepseek-reasoner = R1 line)
    "deepseek-chat": (0.27, 0.07, 1.10),
    "deepseek-v3": (0.27, 0.07, 1.10),
    "deepseek-reasoner": (0.55, 0.14, 2.19),
    "deepseek-r1": (0.55, 0.14, 2.19),
    # OpenAI
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4.1": (2.00, 0.50, 8.00),
    # Qwen (Alibaba Cloud Model Studio, international)
    "qwen-max": (1.60, 1.60, 6.40),
    "qwen-plus": (0.40, 0.40, 1.20),
    "qwen-turbo": (0.05, 0.05, 0.20),
    "qwen2.5-72b-instruct": (1.40, 1.40, 5.60),
    "qwen3-235b-a22b": (0.70, 0.70, 2.80),
}


def price_for(model: str, input_per_m: float | None = None, output_per_m: float | None = None) -> Price | None:
    """The recipe's prices if given, else the table's entry for `model`, else None (unknown)."""
    if input_per_m is not None or output_per_m is not None:
        if input_per_m is None or output_per_m is None:
            raise ValueError(
                "teacher.price_input_per_m and teacher.price_output_per_m must be given together "
                f"(got input={input_per_m}, output={output_per_m})"
            )
        return Price(input_per_m, input_per_m, output_per_m, source="recipe")
    name = model.lower()
    for key in sorted(DEFAULT_PRICES, key=len, reverse=True):
        if key in name:
            i, c, o = DEFAULT_PRICES[key]
            return Price(i, c, o, source=f"default table entry {key!r} (list price at time of writing)")
    return None
