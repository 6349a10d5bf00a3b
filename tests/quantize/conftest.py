"""Fixtures for quantize tests: a tiny Gemma 3 that llama.cpp runs exactly like transformers,
and its F16 GGUF, built once per session."""

import json
from pathlib import Path

import pytest

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_llamacpp_gemma(tmp_path_factory) -> Path:
    """build_tiny_gemma's model with the two config facts llama.cpp assumes for Gemma 3
    (attention scale 1/sqrt(head_dim); layer i global only when i % 6 == 5). Weights unchanged."""
    from distill.models.tiny import build_tiny_gemma

    out = build_tiny_gemma(tmp_path_factory.mktemp("tiny") / "gemma")
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["query_pre_attn_scalar"] = cfg["head_dim"]
    cfg["layer_types"] = ["sliding_attention" if i % 6 < 5 else "full_attention" for i in range(cfg["num_hidden_layers"])]
    cfg_path.write_text(json.dumps(cfg, indent=2))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    tok.chat_template = CHAT_TEMPLATE  # so the test can see it carried into the GGUF
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_f16_gguf(tiny_llamacpp_gemma, tmp_path_factory) -> Path:
    from quantize.gguf import convert_to_gguf

    return convert_to_gguf(tiny_llamacpp_gemma, tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf", "f16")
