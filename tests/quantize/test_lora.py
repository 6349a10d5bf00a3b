"""A PEFT LoRA adapter as a GGUF adapter: llama.cpp loads base + adapter and computes what
the merged HF model computes."""

import pytest

from quantize.gguf import OutputExists, convert_lora_to_gguf


def test_lora_gguf_loads_with_base_and_matches_merged(adapter_and_merged, tiny_f16_gguf, tiny_llamacpp_gemma, tmp_path):
    import numpy as np
    from llama_cpp import Llama

    from quantize.check import PROBES, compare_logits

    adapter, merged = adapter_and_merged
    lora = convert_lora_to_gguf(adapter, tiny_llamacpp_gemma, tmp_path / "adapter.gguf")
    assert lora.read_bytes()[:4] == b"GGUF"
    with pytest.raises(OutputExists):
        convert_lora_to_gguf(adapter, tiny_llamacpp_gemma, lora)

    llm = Llama(model_path=str(tiny_f16_gguf), lora_path=str(lora), logits_all=True, n_ctx=64, verbose=False)
    plain = Llama(model_path=str(tiny_f16_gguf), logits_all=True, n_ctx=64, verbose=False)
    ids = plain.tokenize(PROBES[0].encode(), add_bos=True)
    llm.eval(ids)
    plain.eval(ids)
    with_adapter = np.array(llm.scores[: len(ids)])
    without = np.array(plain.scores[: len(ids)])
    llm.close()
    plain.close()
    assert np.abs(with_adapter - without).max() > 0.05  # the adapter changes the model

    # ...and changes it into the merged HF model: compare against transformers on the merged weights
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(ref - with_adapter).max() < 0.02
