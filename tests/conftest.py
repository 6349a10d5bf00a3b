"""Shared fixtures: real models built or unpacked offline, never downloaded: the tiny Gemma 3
that llama.cpp runs exactly like transformers, and its F16 GGUF, built once per session."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECEIPTS = ROOT / "recipes" / "receipts-small.yaml"


@pytest.fixture(scope="session")
def tiny_gemma_dir() -> Path:
    """A tiny random Gemma 3 (2 layers, hidden 64) with the real tokenizer, cached across runs."""
    from distill.models.resolve import cache_dir
    from distill.models.tiny import build_tiny_gemma

    return build_tiny_gemma(cache_dir() / "models" / "tiny-gemma-test-v2")


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF from the PyPI package."""
    from distill.models.resolve import gemma_270m_gguf

    return gemma_270m_gguf()


@pytest.fixture(scope="session")
def receipts_recipe() -> Path:
    return RECEIPTS


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_llamacpp_gemma(tmp_path_factory) -> Path:
    """build_tiny_gemma's model (built with the config facts llama.cpp assumes for Gemma 3),
    given a chat template so the tests can see it carried into the GGUF."""
    from distill.models.tiny import build_tiny_gemma

    out = build_tiny_gemma(tmp_path_factory.mktemp("tiny") / "gemma")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["query_pre_attn_scalar"] == cfg["head_dim"], "build_tiny_gemma must match llama.cpp's Gemma 3"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    tok.chat_template = CHAT_TEMPLATE  # so the test can see it carried into the GGUF
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_f16_gguf(tiny_llamacpp_gemma, tmp_path_factory) -> Path:
    from quantize.gguf import convert_to_gguf

    return convert_to_gguf(tiny_llamacpp_gemma, tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf", "f16")
