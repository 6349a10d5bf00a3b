"""Default prices for well-known teacher models, as data (edge_runtime/prices.yaml).

USD per million tokens: (input, cached input, output). These are LIST PRICES AT THE TIME
OF WRITING (late 2025, standard tier, no discounts or off-peak rates); providers change
them. A recipe's `teacher.price_input_per_m` / `price_output_per_m` always win over this
table. Matching is by the model name the recipe sends, case-insensitive, longest key first.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.prices import lookup, price_table


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


# name fragment -> (input, cached input, output) USD per million tokens: edge_runtime/prices.yaml,
# the one table the runtime's escalation costing reads too
DEFAULT_PRICES: dict[str, tuple[float, float, float]] = price_table()


def price_for(model: str, input_per_m: float | None = None, output_per_m: float | None = None) -> Price | None:
    """The recipe's prices if given, else the table's entry for `model`, else None (unknown)."""
    if input_per_m is not None or output_per_m is not None:
        if input_per_m is None or output_per_m is None:
            raise ValueError(
                "teacher.price_input_per_m and teacher.price_output_per_m must be given together "
                f"(got input={input_per_m}, output={output_per_m})"
            )
        return Price(input_per_m, input_per_m, output_per_m, source="recipe")
    found = lookup(model)
    if found is None:
        return None
    key, (i, c, o) = found
    return Price(i, c, o, source=f"default table entry {key!r} (list price at time of writing)")
