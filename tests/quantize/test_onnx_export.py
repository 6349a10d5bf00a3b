"""ONNX export of the tiny Gemma 3: fp32 logits and greedy tokens match transformers (prefill and
a decode step through the KV cache), INT8/INT4 load, generate and are smaller, outputs are atomic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from quantize.gguf import OutputExists
from quantize.onnx_export import META_FILE, MODEL_FILE, export_onnx, model_bytes, quantize_onnx

PROMPTS = ["Receipt 12/03/2018 TOTAL: RM 45.60", "Extract the company name from this receipt:\nABC SDN BHD"]
TOL = 1e-4  # absolute, on logits of magnitude ~1 (the tiny model); fp32 against fp32


@pytest.fixture(scope="module")
def onnx_dirs(tiny_gemma_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onnx")
    fp32 = export_onnx(tiny_gemma_dir, root / "onnx-fp32")
    return {"fp32": fp32, "int8": quantize_onnx(fp32, root / "onnx-int8", "int8"),
            "int4": quantize_onnx(fp32, root / "onnx-int4", "int4")}


@pytest.fixture(scope="module")
def hf(tiny_gemma_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(str(tiny_gemma_dir), dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(str(tiny_gemma_dir)))


def _session(d: Path):
    from edge_runtime.engines.onnx import load_session

    return load_session(d / MODEL_FILE, n_threads=1)


def _feeds(ids, start, past, meta, names):
    feeds = {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, start + len(ids)), dtype=np.int64),
             "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None]}
    if past is None:
        past = [np.zeros((1, meta["num_kv_heads"], 0, meta["head_dim"]), np.float32)] * len(names)
    feeds.update(zip(names, past))
    return feeds


def test_layout_and_sidecars(onnx_dirs, tiny_gemma_dir):
    d = onnx_dirs["fp32"]
    meta = json.loads((d / META_FILE).read_text())
    cfg = json.loads((tiny_gemma_dir / "config.json").read_text())
    assert (meta["num_layers"], meta["num_kv_heads"], meta["head_dim"]) == (
        cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["head_dim"])
    assert meta["eos_token_ids"] == [cfg["eos_token_id"]] and meta["dtype"] == "float32"
    assert (d / "tokenizer.json").is_file() and (d / "tokenizer_config.json").is_file()
    sess = _session(d)
    names_in = [i.name for i in sess.get_inputs()]
    assert names_in[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert names_in[3:5] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert [o.name for o in sess.get_outputs()][:3] == ["logits", "present.0.key", "present.0.value"]
    # the tied embedding is stored once: the ONNX file is about the size of the safetensors
    st = sum(f.stat().st_size for f in tiny_gemma_dir.glob("*.safetensors"))
    assert model_bytes(d) < 1.1 * st


def test_fp32_logits_match_hf_prefill_and_decode(onnx_dirs, hf):
    import torch

    model, tok = hf
    d = onnx_dirs["fp32"]
    meta = json.loads((d / META_FILE).read_text())
    sess = _session(d)
    names = [i.name for i in sess.get_inputs()][3:]
    ids = tok(PROMPTS[0]).input_ids
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    logits, *past = sess.run(None, _feeds(ids[:-1], 0, None, meta, names))
    assert np.abs(logits[0] - ref[-2]).max() < TOL
    assert past[0].shape == (1, meta["num_kv_heads"], len(ids) - 1, meta["head_dim"])
    logits, *past = sess.run(None, _feeds(ids[-1:], len(ids) - 1, past, meta, names))  # one step with the past
    assert np.abs(logits[0] - ref[-1]).max() < TOL
    assert past[0].shape[2] == len(ids)


def test_sliding_window_mask_is_dynamic(tmp_path):
    """Gemma 3's local layers see only the last `sliding_window` keys; the export must apply that
    for prompts longer than the window (mask built at run time, not frozen by tracing)."""
    import torch
    from transformers import AutoModelForCausalLM

    from distill.models.tiny import build_tiny_gemma

    hf_dir = build_tiny_gemma(tmp_path / "hf", hidden_size=32, layers=2, seed=1)
    cfg = json.loads((hf_dir / "config.json").read_text())
    cfg["sliding_window"] = 4  # tiny window so an 11-token prompt crosses it
    (hf_dir / "config.json").write_text(json.dumps(cfg))
    d = export_onnx(hf_dir, tmp_path / "onnx")
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    ids = [2, 651, 6037, 563, 1234, 99, 7, 818, 1000, 42, 17]
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    meta = json.loads((d / META_FILE).read_text())
    sess = _session(d)
    names = [i.name for i in sess.get_inputs()][3:]
    logits, *past = sess.run(None, _feeds(ids[:6], 0, None, meta, names))
    assert np.abs(logits[0] - ref[5]).max() < TOL
    for i in range(6, len(ids)):
        logits, *past = sess.run(None, _feeds([ids[i]], i, past, meta, names))
        assert np.abs(logits[0] - ref[i]).max() < TOL, f"step {i}"


def test_fp32_greedy_equals_hf_and_check_report(onnx_dirs, tiny_gemma_dir):
    from quantize.onnx_check import FP32_REL_TOL, check_onnx_against_hf, hf_reference

    ref = hf_reference(tiny_gemma_dir, PROMPTS, 12)
    assert all(len(r) == 12 for r in ref["ids"])  # a random model rarely says EOS: the whole length compared
    fp32 = check_onnx_against_hf(tiny_gemma_dir, onnx_dirs["fp32"], PROMPTS, 12, reference=ref)
    assert fp32["exact"] == len(PROMPTS) and fp32["tokenization_mismatches"] == 0
    assert fp32["first_step"]["max_rel_diff"] < FP32_REL_TOL and fp32["first_step"]["argmax_agreement"] == 1.0
    int4 = check_onnx_against_hf(tiny_gemma_dir, onnx_dirs["int4"], PROMPTS, 12, reference=ref)
    assert int4["n"] == len(PROMPTS) and 0.0 <= int4["rate"] <= 1.0
    assert int4["first_step"]["max_abs_diff"] > fp32["first_step"]["max_abs_diff"]  # it really is quantized


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quantized_load_generate_and_are_smaller(onnx_dirs, kind):
    from edge_runtime.engines.onnx import OnnxPredictor
    from edge_runtime.task import TaskSpec

    import onnx

    d = onnx_dirs[kind]
    nodes = onnx.load(str(d / MODEL_FILE), load_external_data=False).graph.node
    ops = {n.op_type for n in nodes}
    assert ({"MatMulInteger"} if kind == "int8" else {"MatMulNBits", "GatherBlockQuantized"}) <= ops
    if kind == "int4":  # asymmetric blocks by default: every 4-bit node has a zero-point input
        blocked = [n for n in nodes if n.op_type in ("MatMulNBits", "GatherBlockQuantized")]
        assert all(len(n.input) > 3 and n.input[3] for n in blocked)
        assert json.loads((d / META_FILE).read_text())["symmetric"] is False
    assert json.loads((d / META_FILE).read_text())["quantization"] == kind
    assert model_bytes(d) < 0.6 * model_bytes(onnx_dirs["fp32"])
    task = TaskSpec(name="t", kind="classification", instructions="Label it.", labels=["a", "b"])
    pred = OnnxPredictor(d, task, max_new_tokens=6, n_threads=1)
    out = pred.greedy_ids(pred.prompt_ids("hello there"), 6)
    assert len(out) == 6 and all(0 <= t < json.loads((d / META_FILE).read_text())["vocab_size"] for t in out)


def test_refuses_existing_output(onnx_dirs, tiny_gemma_dir):
    with pytest.raises(OutputExists, match="overwrite"):
        export_onnx(tiny_gemma_dir, onnx_dirs["fp32"])
    with pytest.raises(OutputExists, match="overwrite"):
        quantize_onnx(onnx_dirs["fp32"], onnx_dirs["int4"], "int4")
    assert (onnx_dirs["int4"] / MODEL_FILE).is_file()  # left as it was


def test_bad_inputs_named(onnx_dirs, tmp_path):
    with pytest.raises(ValueError, match="not one of"):
        quantize_onnx(onnx_dirs["fp32"], tmp_path / "x", "int3")
    with pytest.raises(ValueError, match="already quantized"):
        quantize_onnx(onnx_dirs["int4"], tmp_path / "y", "int8")
    with pytest.raises(FileNotFoundError, match="onnx_meta.json"):
        quantize_onnx(tmp_path, tmp_path / "z", "int8")
    with pytest.raises(FileNotFoundError, match="config.json"):
        export_onnx(tmp_path, tmp_path / "w")
    assert not (tmp_path / "x").exists() and not (tmp_path / "w").exists()


def test_failed_quantization_leaves_no_output(onnx_dirs, tmp_path):
    import shutil

    src = tmp_path / "broken"
    shutil.copytree(onnx_dirs["fp32"], src)
    (src / MODEL_FILE).write_bytes(b"\x08\x07garbage, not a model")
    with pytest.raises(ValueError, match=re.escape(str(src / MODEL_FILE))):
        quantize_onnx(src, tmp_path / "out", "int4")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_cli_onnx_types(onnx_dirs, tiny_gemma_dir, tmp_path, capsys):
    import shutil

    from quantize.cli import main

    shutil.copytree(onnx_dirs["fp32"], tmp_path / "onnx-fp32")
    assert main(["onnx", str(tiny_gemma_dir), "--out", str(tmp_path), "--types", "int4"]) == 0
    out = capsys.readouterr().out
    assert "int4" in out and "MiB" in out and (tmp_path / "onnx-int4" / MODEL_FILE).is_file()
    assert main(["onnx", str(tiny_gemma_dir), "--out", str(tmp_path), "--types", "int4"]) == 2  # exists
    assert "overwrite" in capsys.readouterr().err
