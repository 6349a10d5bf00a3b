"""HF -> GGUF with llama.cpp's converter, quantized types, and the guards around writing them."""

import json
import shutil
from pathlib import Path

import pytest

from quantize.gguf import (
    OutputExists,
    UnsupportedArchitecture,
    ConversionFailed,
    convert_to_gguf,
    quantize_gguf,
)

# F16 weights against float32 HF on the tiny model: logits have a std of about 0.16; measured
# max |diff| about 0.001 (all positions, all 262k logits). Tolerance: 0.01, about 6% of one std.
F16_LOGIT_TOL = 0.01
# Quantized types are judged against the same HF logits with a looser bound.
Q_LOGIT_TOL = {"q8_0": 0.03, "q4_k_m": 0.25}


def test_f16_logits_match_hf(tiny_f16_gguf, tiny_llamacpp_gemma):
    from quantize.check import compare_logits

    r = compare_logits(tiny_f16_gguf, tiny_llamacpp_gemma)
    assert r["tokens"] > 5
    assert r["max_abs_diff"] < F16_LOGIT_TOL, r
    assert r["argmax_agreement"] >= 0.85, r


def test_f16_metadata_carries_tokenizer_facts(tiny_f16_gguf, tiny_llamacpp_gemma):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from quantize.check import check_metadata

    assert check_metadata(tiny_f16_gguf, tiny_llamacpp_gemma) == []
    tok = AutoTokenizer.from_pretrained(str(tiny_llamacpp_gemma))
    llm = Llama(model_path=str(tiny_f16_gguf), vocab_only=True, verbose=False)
    assert llm.token_eos() == tok.eos_token_id and llm.token_bos() == tok.bos_token_id
    llm.close()


@pytest.mark.parametrize("qtype", ["q8_0", "q4_k_m"])
def test_quantized_types_load_and_answer(qtype, tiny_f16_gguf, tiny_llamacpp_gemma, tmp_path):
    from edge_runtime.engines.llamacpp import LlamaCppPredictor
    from edge_runtime.task import TaskSpec
    from quantize.check import compare_logits

    out = quantize_gguf(tiny_f16_gguf, tmp_path / f"tiny-{qtype}.gguf", qtype)
    assert out.stat().st_size < tiny_f16_gguf.stat().st_size
    r = compare_logits(out, tiny_llamacpp_gemma)
    assert r["max_abs_diff"] < Q_LOGIT_TOL[qtype], r
    task = TaskSpec(name="t", kind="classification", instructions="Classify.", labels=["yes", "no"])
    pred = LlamaCppPredictor(out, task, n_ctx=256, max_new_tokens=16)
    try:
        p = pred.predict({"text": "Is this a receipt?"})
    finally:
        pred.close()
    assert p.completion_tokens > 0
    assert p.answer in ({"label": "yes"}, {"label": "no"}), (p.raw, p.problems)


def test_refuses_existing_output_unless_overwrite(tiny_f16_gguf, tmp_path):
    dst = tmp_path / "q.gguf"
    dst.write_bytes(b"keep me")
    with pytest.raises(OutputExists, match="overwrite"):
        quantize_gguf(tiny_f16_gguf, dst, "q8_0")
    assert dst.read_bytes() == b"keep me"
    quantize_gguf(tiny_f16_gguf, dst, "q8_0", overwrite=True)
    assert dst.read_bytes()[:4] == b"GGUF"


def test_unknown_type_and_bad_source(tiny_f16_gguf, tmp_path):
    with pytest.raises(ValueError, match="q4_k_m"):
        quantize_gguf(tiny_f16_gguf, tmp_path / "x.gguf", "q3_weird")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(ValueError, match="not a GGUF"):
        quantize_gguf(bad, tmp_path / "y.gguf", "q8_0")


def test_failed_conversion_leaves_no_file(tiny_llamacpp_gemma, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llamacpp_gemma, broken)
    st = broken / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])  # truncated weights: the converter fails midway
    out = tmp_path / "out.gguf"
    with pytest.raises(ConversionFailed):
        convert_to_gguf(broken, out, "f16", check=False)
    assert not out.exists()
    assert not list(tmp_path.glob("out.gguf*")), list(tmp_path.iterdir())


def test_unsupported_architecture_names_supported_ones(tiny_llamacpp_gemma, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(tiny_llamacpp_gemma, odd)
    cfg = json.loads((odd / "config.json").read_text())
    cfg["architectures"] = ["MyHomeMadeForCausalLM"]
    (odd / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedArchitecture, match="Gemma3ForCausalLM") as err:
        convert_to_gguf(odd, tmp_path / "o.gguf")
    assert "MyHomeMadeForCausalLM" in str(err.value)


def test_refuses_gemma3_config_llamacpp_would_run_differently(tiny_llamacpp_gemma, tmp_path):
    odd = tmp_path / "scaled"
    shutil.copytree(tiny_llamacpp_gemma, odd)
    cfg = json.loads((odd / "config.json").read_text())
    cfg["query_pre_attn_scalar"] = 256  # transformers' default; llama.cpp would use head_dim (32)
    (odd / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedArchitecture, match="query_pre_attn_scalar"):
        convert_to_gguf(odd, tmp_path / "o.gguf")


def test_not_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        convert_to_gguf(tmp_path, tmp_path / "o.gguf")


def test_disk_too_small_is_refused_before_writing(tiny_f16_gguf, tmp_path, monkeypatch):
    import shutil as real_shutil

    from quantize import gguf as g

    usage = real_shutil.disk_usage(tmp_path)
    monkeypatch.setattr(g.shutil, "disk_usage", lambda p: usage._replace(free=1024 * 1024))  # a 1 MiB disk
    with pytest.raises(g.DiskTooSmall, match="MiB free"):
        quantize_gguf(tiny_f16_gguf, tmp_path / "big.gguf", "q8_0")
    assert not list(tmp_path.glob("big.gguf*"))
