"""The small receipts recipe (generative extraction) on the real Gemma 3 270M, with very few steps
and examples: the offline model resolves, trains, converts to GGUF, quantizes, evaluates and packs."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_receipts_small_on_the_real_270m(tmp_path, receipts_recipe):
    run_dir = tmp_path / "qs"
    args = [
        sys.executable, "-m", "distill.cli", "run", str(receipts_recipe), "--run-dir", str(run_dir),
        "--set", "data.split.train_size=8", "--set", "data.split.eval_size=3",
        "--set", "student.training.max_steps=2", "--set", "eval.max_new_tokens=96", "--set", "eval.bootstrap_samples=50",
        "--set", "eval.predictors=[teacher,base,student,gguf]",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) >= {"teacher", "base", "student", "gguf-q8_0"}
    assert summary["teacher"]["headline"] == 1.0  # the dataset teacher's answers are the gold labels
    for name in ("base", "student", "gguf-q8_0"):
        assert summary[name]["n"] == 3 and summary[name]["p50_latency_s"] > 0
    sizes = json.loads((run_dir / "quantize/record.json").read_text())["outputs"]["sizes"]
    assert sizes["q8_0"] < 0.6 * sizes["f16"]
    bundle = json.loads((run_dir / "pack/record.json").read_text())["outputs"]["bundle"]
    verify = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "verify", bundle], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
