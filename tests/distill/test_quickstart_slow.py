"""The quickstart path on the real Gemma 3 270M, with very few steps and examples: the
offline model resolves, trains, converts to GGUF, quantizes, evaluates and packs."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quickstart_on_the_real_270m(tmp_path, quickstart_recipe):
    run_dir = tmp_path / "qs"
    args = [
        sys.executable, "-m", "distill.cli", "run", str(quickstart_recipe), "--run-dir", str(run_dir),
        "--set", "data.split.train_size=8", "--set", "data.split.eval_size=3",
        "--set", "student.training.max_steps=2", "--set", "eval.max_new_tokens=96", "--set", "eval.bootstrap_samples=50",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) >= {"teacher", "base", "student", "gguf-q4_k_m"}
    for name in ("base", "gguf-q4_k_m"):  # llama.cpp with the task grammar: always valid JSON
        assert summary[name]["json_validity"] == 1.0
    sizes = json.loads((run_dir / "quantize/record.json").read_text())["outputs"]["sizes"]
    assert sizes["q4_k_m"] < 0.6 * sizes["f16"]
