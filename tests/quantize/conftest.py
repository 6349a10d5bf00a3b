"""Fixtures for quantize tests (the tiny Gemma 3 and its F16 GGUF live in tests/conftest.py)."""

import pytest


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
