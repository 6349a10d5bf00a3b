"""A bundle of the untrained base GGUF with a recipe's task, for latency studies where the
answer's shape (prompt length, label set, schema), not its quality, sets the cost.

    python benchmarks/base_bundle.py recipes/banking-intents.yaml runs/bank-base-bundle
    python benchmarks/device_latency.py runs/bank-base-bundle --data data/banking77/train.csv --n 20
"""

from __future__ import annotations

import sys
from pathlib import Path

from distill.models.resolve import gemma_270m_gguf
from distill.recipe import load_recipe
from edge_runtime.bundle import ServeSettings, pack


def main(recipe_path: str, out: str) -> None:
    recipe = load_recipe(recipe_path)
    bundle = pack(gemma_270m_gguf(), recipe.task, Path(out), recipe.target.profile, overwrite=True,
                  serve=ServeSettings(n_ctx=recipe.target.n_ctx, max_new_tokens=recipe.eval.max_new_tokens))
    print(bundle)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
