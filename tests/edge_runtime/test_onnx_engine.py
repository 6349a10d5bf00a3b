"""OnnxPredictor: the runtime's onnxruntime engine answers a task exactly like the HF student
(same prompt ids, same greedy tokens, same stop rules), and refuses bad folders by name."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.engines.onnx import OnnxPredictor
from edge_runtime.task import TaskSpec

RECEIPTS = TaskSpec.model_validate({
    "name": "receipts", "kind": "extraction",
    "instructions": "Extract the company name and the total amount from this receipt. Answer with JSON only.",
    "input_field": "ocr_lines", "fields": {"company": {}, "total": {"type": "amount"}},
})
EXAMPLE = {"id": "r1", "ocr_lines": ["ABC SDN BHD", "12/03/2018", "TOTAL: RM 45.60"]}


@pytest.fixture(scope="module")
def onnx_dir(tiny_gemma_dir, tmp_path_factory) -> Path:
    from quantize.onnx_export import export_onnx

    return export_onnx(tiny_gemma_dir, tmp_path_factory.mktemp("engine") / "onnx-fp32")


def test_predict_matches_hf_predictor(onnx_dir, tiny_gemma_dir):
    from distill.eval.hf_predictor import HFPredictor

    hf = HFPredictor(tiny_gemma_dir, RECEIPTS, max_new_tokens=10).predict(EXAMPLE)
    pred = OnnxPredictor(onnx_dir, RECEIPTS, max_new_tokens=10, n_threads=1)
    got = pred.predict(EXAMPLE)
    assert got.prompt_tokens == hf.prompt_tokens
    assert pred.prompt_ids(RECEIPTS.render_prompt(EXAMPLE))[0] == 2  # BOS, as in training
    assert got.raw == hf.raw and got.completion_tokens == hf.completion_tokens
    assert got.valid == hf.valid and got.problems == hf.problems
    assert got.latency_s > 0 and got.extra["prefill_s"] > 0
    assert got.confidence is not None and 0.0 <= got.confidence <= 1.0
    assert pred.size_bytes == (onnx_dir / "model.onnx").stat().st_size


def test_greedy_ids_stop_at_eos(onnx_dir):
    """Make EOS the argmax after one token by pointing the export's eos list at that token."""
    pred = OnnxPredictor(onnx_dir, RECEIPTS, n_threads=1)
    ids = pred.prompt_ids("hello")
    first = pred.greedy_ids(ids, 3)
    assert len(first) == 3
    pred.eos_ids = {first[1]}
    assert pred.greedy_ids(ids, 3) == first[:1]


def test_parses_answer_and_confidence_with_template(onnx_dir, tmp_path):
    """A template.json whose stop string is the model's second greedy token: generation
    stops there and the text before it is parsed with the task (here: not JSON, so a problem)."""
    d = tmp_path / "m"
    shutil.copytree(onnx_dir, d)
    pred = OnnxPredictor(d, RECEIPTS, max_new_tokens=8, n_threads=1)
    toks = pred.greedy_ids(pred.prompt_ids(RECEIPTS.render_prompt(EXAMPLE)), 8)
    stop = pred.tokenizer.decode(toks[1:2])
    if not stop.strip():
        pytest.skip("second token decodes to whitespace")
    (d / "template.json").write_text(json.dumps({"kind": "plain", "stop": [stop], "eos_token": "<eos>"}))
    out = OnnxPredictor(d, RECEIPTS, max_new_tokens=8, n_threads=1).predict(EXAMPLE)
    assert out.extra["finish"] == "stop" and stop not in out.raw
    assert out.answer is None and out.problems


def test_missing_and_corrupt_model_named(onnx_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        OnnxPredictor(tmp_path, RECEIPTS)
    d = tmp_path / "corrupt"
    shutil.copytree(onnx_dir, d)
    (d / "model.onnx").write_bytes(b"not an onnx model at all")
    with pytest.raises(ValueError, match=re.escape(str(d / "model.onnx"))):
        OnnxPredictor(d, RECEIPTS)


def test_engine_imports_no_torch():
    code = ("import sys, edge_runtime.engines.onnx\n"
            "print([m for m in ('torch', 'transformers', 'peft', 'trl', 'datasets') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_eval_spec_builds_onnx_predictor(onnx_dir, tmp_path):
    from distill.eval.predictors import PredictorUnavailable, build_predictor, predictor_name

    class Recipe:  # the two recipe sections build_predictor reads for an ONNX spec
        task = RECEIPTS
        eval = type("E", (), {"max_new_tokens": 4})()

    run = tmp_path / "run"
    (run / "quantize").mkdir(parents=True)
    shutil.copytree(onnx_dir, run / "quantize" / "onnx-fp32")
    built = build_predictor("onnx:fp32", Recipe, run)
    assert built.facts["engine"] == "onnxruntime" and built.size_bytes > 0 and predictor_name("onnx:fp32") == "onnx-fp32"
    assert build_predictor(f"onnx:{onnx_dir}", Recipe, run).predictor.predict(EXAMPLE).completion_tokens <= 4
    with pytest.raises(PredictorUnavailable, match="onnx-int4"):
        build_predictor("onnx:int4", Recipe, run)
