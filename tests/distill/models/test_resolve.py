"""Student presets and offline model resolution."""

import pytest

from distill.models.resolve import ModelNotAvailable, hf_config_for, preset_for, presets, resolve

REQUIRED = {"hf_id", "architecture", "params", "layers", "hidden_size", "intermediate_size", "attention_heads",
            "kv_heads", "head_dim", "vocab_size", "tie_embeddings", "context_length", "license", "lora_r", "learning_rate"}


def test_presets_cover_the_common_students_with_their_facts():
    table = presets()
    for name in ("qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b",
                 "llama-3.2-1b", "llama-3.2-3b", "gemma-3-1b", "gemma-3-4b", "phi-4-mini", "gemma-3-270m"):
        assert REQUIRED <= set(table[name]), (name, REQUIRED - set(table[name]))
    assert preset_for("Qwen/Qwen2.5-7B-Instruct")["name"] == "qwen2.5-7b"


@pytest.mark.parametrize("name", ["qwen2.5-1.5b", "qwen2.5-7b", "qwen3-4b", "llama-3.2-3b", "gemma-3-270m"])
def test_preset_facts_give_the_stated_parameter_count(name):
    """A config built from the preset's facts has the parameter count the table states (±3%)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = hf_config_for(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == pytest.approx(preset_for(name)["params"], rel=0.03)


def test_uncached_hub_id_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable) as info:
        resolve("Qwen/Qwen2.5-1.5B-Instruct")
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message and "huggingface-cli download Qwen/Qwen2.5-1.5B-Instruct" in message
    assert "gemma-3-270m" in message


def test_local_paths_resolve_as_given(tiny_gemma_dir, gemma_gguf):
    assert resolve(str(tiny_gemma_dir)).hf_path == str(tiny_gemma_dir)
    gguf = resolve(str(gemma_gguf), need_hf=False)
    assert gguf.gguf_path == gemma_gguf and gguf.hf_path == ""


def test_gemma_270m_resolves_offline_to_its_gguf():
    model = resolve("gemma-3-270m", need_hf=False)
    assert model.gguf_path.read_bytes()[:4] == b"GGUF" and model.preset["vocab_size"] == 262144
