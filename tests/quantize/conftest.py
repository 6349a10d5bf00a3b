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


@pytest.fixture(scope="session")
def adapter_and_merged(tiny_llamacpp_gemma, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(str(tiny_llamacpp_gemma), dtype=torch.float32)
    torch.manual_seed(1)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, cfg)
    out = tmp_path_factory.mktemp("lora")
    adapter = out / "adapter"
    peft_model.save_pretrained(adapter)
    merged = out / "merged"
    peft_model.merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(str(tiny_llamacpp_gemma)).save_pretrained(merged)
    return adapter, merged
