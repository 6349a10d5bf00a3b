"""Facts about an HF config that llama.cpp's runtime does not read but assumes.

The converter copies what the GGUF format has keys for; for the rest llama.cpp hard-codes
an architecture's usual values. A config that departs from them converts without a word
and then answers differently on the device. These rules (from llama.cpp's
src/models/*.cpp of the pinned version) catch that before conversion.
"""

from __future__ import annotations

from typing import Any, Callable


def _gemma3(cfg: dict[str, Any]) -> list[str]:
    problems = []
    n_layer = int(cfg.get("num_hidden_layers", 0))
    head_dim = int(cfg.get("head_dim", 256))
    # llama.cpp: f_attention_scale = 1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the 62-layer 27B
    expected = cfg["hidden_size"] // cfg["num_attention_heads"] if n_layer == 62 else head_dim
    scalar = cfg.get("query_pre_attn_scalar", 256)
    if scalar is not None and int(scalar) != expected:
        problems.append(
            f"query_pre_attn_scalar={scalar} but llama.cpp scales attention by 1/sqrt({expected}) for this "
            f"Gemma 3 shape (it has no GGUF key for the scalar); set query_pre_attn_scalar to {expected} "
            f"before training, or the GGUF will answer differently"
        )
    # llama.cpp: with a sliding window, layer i is sliding unless i % 6 == 5 (no per-layer key is written)
    types = cfg.get("layer_types")
    if types and cfg.get("sliding_window"):
        assumed = ["sliding_attention" if i % 6 < 5 else "full_attention" for i in range(n_layer)]
        if list(types) != assumed:
            problems.append(
                f"layer_types={list(types)} but llama.cpp assumes {assumed} for Gemma 3 "
                f"(five sliding-window layers then one global layer); the converter cannot record another pattern"
            )
    return problems


RULES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "Gemma3ForCausalLM": _gemma3,
}


def llamacpp_mismatches(config: dict[str, Any]) -> list[str]:
    """Ways this HF config would run differently in llama.cpp than in transformers."""
    cfg = config.get("text_config", config) if "text_config" in config else config
    problems: list[str] = []
    for arch in config.get("architectures") or []:
        if arch in RULES:
            problems += RULES[arch](cfg)
    return problems
