"""Importance matrix collected through llama.cpp's eval callback and used by the quantizer."""

import numpy as np

from quantize.gguf import quantize_gguf
from quantize.imatrix import compute_imatrix, read_imatrix

TEXTS = [f"Receipt {i}: SHOP {i} SDN BHD, Jalan {i}, Kuala Lumpur. TOTAL RM {i * 3}.50, date 0{i % 9 + 1}/03/2018" for i in range(6)]


def test_imatrix_collects_every_block_weight_and_changes_quantization(tiny_f16_gguf, tmp_path):
    from llama_cpp import Llama

    path = compute_imatrix(tiny_f16_gguf, TEXTS, tmp_path / "imatrix.gguf")
    data = read_imatrix(path)
    expected = {f"blk.{b}.{w}.weight" for b in range(2)
                for w in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")}
    assert set(data) == expected
    assert data["blk.0.attn_q.weight"].shape == (64,) and data["blk.0.ffn_down.weight"].shape == (128,)
    assert all(np.all(v > 0) and np.all(np.isfinite(v)) for v in data.values())

    plain = quantize_gguf(tiny_f16_gguf, tmp_path / "plain.gguf", "q4_k_m")
    weighted = quantize_gguf(tiny_f16_gguf, tmp_path / "weighted.gguf", "q4_k_m", imatrix=path)
    assert plain.read_bytes() != weighted.read_bytes()  # the quantizer used the importance weights
    llm = Llama(model_path=str(weighted), n_ctx=128, verbose=False)
    assert llm("Receipt", max_tokens=4, temperature=0.0)["usage"]["completion_tokens"] > 0
    llm.close()
