"""bitsandbytes NF4 / INT8 on the tiny Gemma 3, on this CPU (bitsandbytes 0.50's CPU backend runs
both): they load as bnb layers, stay close to fp32, take less memory, answer greedily through
the eval predictor, and a saved pre-quantized checkpoint reloads to the same logits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edge_runtime.task import TaskSpec
from quantize.bnb import bnb_config, check_bnb_device, load_bnb, save_bnb, saved_kind
from quantize.gguf import OutputExists

PROMPT = "Receipt 12/03/2018 TOTAL: RM 45.60"
# Relative L2 error of the logits against fp32 and their correlation. The tiny model's random
# 64-wide weights are the worst case for 4-bit (measured: nf4 0.25, int8 0.03).
REL_TOL = {"nf4": 0.4, "int8": 0.1}
MIN_CORR = {"nf4": 0.9, "int8": 0.99}
# Share of the linear layers' fp32 bytes that must be saved in memory (nf4 ~0.53 B/weight
# with double quantisation, int8 1 B/weight; the unquantized embedding is the rest).
MIN_SAVED = {"nf4": 0.8, "int8": 0.7}
ROUNDTRIP_TOL = 1e-5  # saved before any forward, the reloaded checkpoint is the same weights


def _logits(model, tok) -> torch.Tensor:
    ids = tok(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits[0].float()


@pytest.fixture(scope="module")
def fp32(tiny_llamacpp_gemma):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llamacpp_gemma), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_llamacpp_gemma))
    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and n != "lm_head")
    return {"logits": _logits(model, tok), "footprint": model.get_memory_footprint(), "linear_bytes": 4 * linear}


@pytest.fixture(scope="module", params=["nf4", "int8"])
def quantized(request, tiny_llamacpp_gemma):
    """(kind, model, tokenizer): the tiny Gemma quantized while loading, once per kind."""
    return (request.param, *load_bnb(tiny_llamacpp_gemma, request.param))


def test_config_and_device():
    nf4, int8 = bnb_config("nf4"), bnb_config("int8")
    assert nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4" and nf4.bnb_4bit_use_double_quant
    assert nf4.bnb_4bit_compute_dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    assert int8.load_in_8bit and not int8.load_in_4bit
    assert check_bnb_device("nf4") in ("cuda", "cpu") and check_bnb_device("INT8") in ("cuda", "cpu")
    with pytest.raises(ValueError, match="nf4, int8"):
        bnb_config("fp8")


def test_loads_close_to_fp32_and_smaller(quantized, fp32):
    import bitsandbytes as bnb

    kind, model, tok = quantized
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit if kind == "nf4" else bnb.nn.Linear8bitLt)
    logits, ref = _logits(model, tok), fp32["logits"]
    rel = float((logits - ref).norm() / ref.norm())
    corr = float(torch.corrcoef(torch.stack([logits.flatten(), ref.flatten()]))[0, 1])
    assert rel < REL_TOL[kind] and corr > MIN_CORR[kind], (rel, corr)
    saved = fp32["footprint"] - model.get_memory_footprint()
    assert saved > MIN_SAVED[kind] * fp32["linear_bytes"], (saved, fp32["linear_bytes"])


def test_save_reload_roundtrip(tiny_llamacpp_gemma, tmp_path, quantized):
    kind, fresh, tok = quantized
    out = save_bnb(tiny_llamacpp_gemma, kind, tmp_path / f"student-{kind}")
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "bitsandbytes" and saved_kind(out) == kind
    assert (out / "tokenizer.json").is_file() and not list(tmp_path.glob("*.partial"))
    reloaded, _ = load_bnb(out, kind)
    assert float((_logits(reloaded, tok) - _logits(fresh, tok)).abs().max()) < ROUNDTRIP_TOL
    assert reloaded.get_memory_footprint() == fresh.get_memory_footprint()
    with pytest.raises(OutputExists, match="--overwrite"):
        save_bnb(tiny_llamacpp_gemma, kind, out)
    other = "int8" if kind == "nf4" else "nf4"
    with pytest.raises(ValueError, match=f"already a bitsandbytes {kind} checkpoint"):
        load_bnb(out, other)


def test_cli_and_eval_spec(tiny_gemma_dir, tmp_path, fp32):
    """Through the CLI and the eval predictor spec (on the tiny Gemma without a chat template,
    as a base-model student is trained)."""
    from distill.eval.predictors import PredictorUnavailable, build_predictor, predictor_name
    from quantize.cli import main

    out = tmp_path / "nf4"
    assert main(["bnb", str(tiny_gemma_dir), "--kind", "nf4", "--out", str(out)]) == 0
    assert main(["bnb", str(tiny_gemma_dir), "--kind", "nf4", "--out", str(out)]) == 2  # exists, not overwritten

    class Recipe:  # the two recipe sections build_predictor reads
        task = TaskSpec(name="t", kind="classification", instructions="Label it.", labels=["a", "b"])
        eval = type("E", (), {"max_new_tokens": 6})()

    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "train" / "merged").symlink_to(tiny_gemma_dir)
    built = build_predictor("bnb:int8", Recipe, run)  # the run's merged student, quantized while loading
    assert built.facts["engine"] == "transformers+bitsandbytes" and built.facts["kind"] == "int8"
    assert 0 < built.size_bytes < fp32["footprint"] and built.size_bytes == built.predictor.model.get_memory_footprint()
    first = built.predictor.predict({"text": PROMPT})
    assert 0 < first.completion_tokens <= 6 and built.predictor.predict({"text": PROMPT}).raw == first.raw  # greedy
    saved = build_predictor(f"bnb:nf4:{out}", Recipe, run)  # a pre-quantized checkpoint
    assert saved.name == predictor_name(f"bnb:nf4:{out}") == "bnb-nf4-nf4" and saved.facts["kind"] == "nf4"
    assert saved.predictor.predict({"text": PROMPT}).completion_tokens > 0
    with pytest.raises(PredictorUnavailable, match="bnb:nf4 or bnb:int8"):
        build_predictor("bnb:fp8", Recipe, run)
    with pytest.raises(PredictorUnavailable, match="bitsandbytes nf4 checkpoint; use bnb:nf4"):
        build_predictor(f"bnb:int8:{out}", Recipe, run)


def test_clear_error_without_bitsandbytes():
    """A machine without bitsandbytes (and no GPU) is told what is missing and what to use instead."""
    code = ("import sys; sys.modules['bitsandbytes'] = None\n"
            "from quantize.bnb import BnbUnavailable, check_bnb_device\n"
            "try:\n    check_bnb_device('nf4')\nexcept BnbUnavailable as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert "bitsandbytes is not installed" in out.stdout and "pip install bitsandbytes" in out.stdout
    assert "quantize gguf" in out.stdout and "llama.cpp" in out.stdout
