"""Where the toolkit keeps what it builds or fetches once (model checkpoints, llama.cpp's
converter sources): one rule for every package, overridable with EDGE_DISTILL_CACHE."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("EDGE_DISTILL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "edge-distill"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
