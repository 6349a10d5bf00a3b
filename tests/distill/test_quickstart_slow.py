"""The quickstart recipe as shipped (README command 1), on the real Gemma 3 270M with two training
steps and 20 develop rows: the classifier student trains, its Q8_0 body + head is evaluated
against the teacher with a cost per request, and the packed bundle verifies and answers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"


@pytest.mark.slow
def test_quickstart_on_the_real_270m(tmp_path):
    run_dir = tmp_path / "qs"
    args = [sys.executable, "-m", "distill.cli", "run", str(QUICKSTART), "--run-dir", str(run_dir),
            "--set", "student.training.max_steps=2", "--set", "data.split.eval_size=20", "--set", "eval.bootstrap_samples=50"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for noise in ("FutureWarning", "pooling_type", "Loading checkpoint shards"):  # the terminal carries our output only
        assert noise not in proc.stderr + proc.stdout, (proc.stderr + proc.stdout)[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) == {"teacher", "gguf-f16", "gguf-q8_0"}  # no slow predictor; F16 body + head is the reference
    check = json.loads((run_dir / "quantize/record.json").read_text())["outputs"]["f16_check"]["q8_0"]
    assert check["f16_headline"] == summary["gguf-f16"]["headline"] and isinstance(check["keeps_floor"], bool)
    device, teacher = summary["gguf-q8_0"], summary["teacher"]
    assert device["n"] == 20 and device["json_validity"] == 1.0 and device["p50_latency_s"] > 0
    assert 0 < device["cost_per_1k_usd"] and 0 < teacher["cost_per_1k_usd"]
    assert device["generation_tokens_per_s"] is None  # one pass, no generated tokens to rate
    assert device["peak_rss_bytes"] < 2 * 1024**3  # the predictor's own memory, not the eval process's
    metrics = json.loads((run_dir / "train/train_metrics.json").read_text())
    assert metrics["student_head"] == "classifier" and metrics["steps"] == 2 and metrics["val_rows"] > 0
    bundle = json.loads((run_dir / "pack/record.json").read_text())["outputs"]["bundle"]
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    assert manifest["head"] == "head.npz"
    verify = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "verify", bundle], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
