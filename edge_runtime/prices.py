"""Teacher list prices as data (`prices.yaml` beside this file), the single table the
training side (`distill.teachers.prices`) and the runtime's escalation costing read."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

SHIPPED = Path(__file__).with_name("prices.yaml")


@lru_cache(maxsize=1)
def price_table() -> dict[str, tuple[float, float, float]]:
    """name fragment -> (input, cached input, output) USD per million tokens."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8")) or {}
    return {str(k).lower(): (float(v[0]), float(v[1]), float(v[2])) for k, v in data.items()}


def lookup(model: str) -> tuple[str, tuple[float, float, float]] | None:
    """(matched key, prices) for `model`, longest key first; None for a model not listed."""
    name = model.lower()
    table = price_table()
    for key in sorted(table, key=len, reverse=True):
        if key in name:
            return key, table[key]
    return None
