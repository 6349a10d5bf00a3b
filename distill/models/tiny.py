"""Tiny students built in-process from a config, with the real Gemma 3 tokenizer.

Tests and fast end-to-end runs use these: no download, seconds to build, and the same
architecture, tokenizer and file layout as the real 270M student, so every stage
(training, merging, GGUF conversion, llama.cpp loading) runs its real code path.
"""

from __future__ import annotations

from pathlib import Path

from distill.models.resolve import cache_dir, gemma_270m_gguf


def gemma_tokenizer_dir() -> Path:
    """The Gemma 3 tokenizer, extracted from the bundled GGUF once and cached."""
    out = cache_dir() / "models" / "gemma-3-270m-tokenizer"
    if (out / "tokenizer.json").exists():
        return out
    from transformers import AutoTokenizer

    gguf = gemma_270m_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tmp = out.with_suffix(".partial")
    tok.save_pretrained(tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def build_tiny_gemma(out_dir: str | Path, hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised tiny Gemma 3 text model with the real tokenizer."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    tok_dir = gemma_tokenizer_dir()
    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=4096,
        sliding_window=512,
        # What llama.cpp assumes for Gemma 3 (it has no GGUF keys for them), so the GGUF of
        # a tiny model runs exactly like transformers: attention scaled by 1/sqrt(head_dim),
        # and layer i global only when i % 6 == 5.
        query_pre_attn_scalar=32,
        layer_types=["sliding_attention" if i % 6 < 5 else "full_attention" for i in range(layers)],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
