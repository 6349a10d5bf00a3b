"""`distill run` end to end through the real CLI on a tiny in-process model: every stage
does its real job (dataset teacher, curation, LoRA training, evaluation, GGUF conversion
and quantization, bundle) on a handful of real receipts, and on real FAQ queries whose
knowledge base the run enriches and ships."""

import json
import subprocess
import sys
from pathlib import Path

TINY = [
    "--set", "data.split.train_size=12", "--set", "data.split.eval_size=3",
    "--set", "student.training.max_steps=2", "--set", "student.training.batch_size=2",
    "--set", "student.training.max_seq_len=512",
    "--set", "eval.predictors=[teacher,student,gguf]", "--set", "eval.max_new_tokens=8",
    "--set", "eval.bootstrap_samples=50", "--set", "quantize.types=[q4_k_m,q8_0+lora]",
]


def _distill(*args, cwd):
    return subprocess.run([sys.executable, "-m", "distill.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_run_end_to_end_then_resume_skips_everything(tmp_path, tiny_gemma_dir, receipts_recipe):
    run_dir = tmp_path / "run"
    args = ["run", str(receipts_recipe), "--run-dir", str(run_dir), "--set", f"student.model={tiny_gemma_dir}", *TINY]
    first = _distill(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    for stage in ("teach", "curate", "train", "eval", "quantize", "pack"):
        record = json.loads((run_dir / stage / "record.json").read_text())
        assert record["stage"] == stage and record["fingerprint"]
    assert (run_dir / "train/merged/config.json").exists() and (run_dir / "train/adapter").is_dir()
    assert (run_dir / "quantize/model-q4_k_m.gguf").stat().st_size > 0
    # q8_0+lora: the base quantized alone, the LoRA kept as an F16 GGUF adapter (quantize/adapter.py)
    qrec = json.loads((run_dir / "quantize/record.json").read_text())["outputs"]
    assert Path(qrec["adapters"]["q8_0+lora"]).name == "adapter-f16.gguf"
    assert qrec["sizes"]["q8_0+lora"] == sum(Path(p).stat().st_size for p in
                                             (qrec["artifacts"]["q8_0+lora"], qrec["adapters"]["q8_0+lora"]))
    bundle = Path(json.loads((run_dir / "pack/record.json").read_text())["outputs"]["bundle"])
    assert (bundle / "manifest.json").exists() and not (bundle / "adapter.gguf").exists()  # the first type ships
    packed = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "pack", str(run_dir), "--type", "q8_0+lora",
                             "--out", str(tmp_path / "lora-bundle")], capture_output=True, text=True, timeout=300)
    assert packed.returncode == 0, packed.stderr[-3000:]
    manifest = json.loads((tmp_path / "lora-bundle/manifest.json").read_text())
    assert manifest["adapter"] == "adapter.gguf" and manifest["model"] == "base-q8_0.gguf"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) >= {"teacher", "student", "gguf-q4_k_m", "gguf-q8_0_lora"}
    assert summary["teacher"]["headline"] == 1.0  # the dataset teacher's answers are the gold labels
    # a random tiny model's answers are cut at 8 tokens: counted as invalid, never guessed
    assert summary["gguf-q4_k_m"]["n"] == 3 and summary["gguf-q4_k_m"]["json_validity"] == 0.0
    assert summary["gguf-q4_k_m"]["size_bytes"] < summary["student"]["size_bytes"]
    assert "predictor" in first.stdout + first.stderr  # the summary table was printed
    for noise in ("FutureWarning", "Loading weights", "Truncating train dataset"):  # libraries stay quiet
        assert noise not in first.stderr, first.stderr[-3000:]
    decoding = json.loads((bundle / "generation.json").read_text())["decoding"]
    assert decoding["forced_batch"] is True and "speculate" in decoding  # the runtime's settings travel

    again = _distill(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    out = again.stdout + again.stderr
    assert out.count("up to date") == 6, out[-3000:]


def test_faq_run_ships_the_knowledge_base_it_enriched(tmp_path, tiny_gemma_dir):
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "faq-support.yaml"
    run_dir = tmp_path / "run"
    args = ["run", str(recipe), "--run-dir", str(run_dir), "--set", f"student.model={tiny_gemma_dir}",
            "--set", "data.split.train_size=40", "--set", "data.split.eval_size=4",
            "--set", "student.training.max_steps=2", "--set", "student.training.batch_size=2",
            "--set", "eval.predictors=[teacher,gguf]", "--set", "eval.max_new_tokens=8",
            "--set", "eval.bootstrap_samples=50", "--set", "quantize.types=[q8_0+lora]"]
    done = _distill(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    curated = [json.loads(l) for l in (run_dir / "curate/train.jsonl").read_text().splitlines()]
    bundle = Path(json.loads((run_dir / "pack/record.json").read_text())["outputs"]["bundle"])
    task = json.loads((bundle / "task.json").read_text())
    assert task["knowledge_base"] == "knowledge_base.jsonl"  # inside the bundle, named relatively
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "knowledge_base.jsonl" in json.dumps(manifest)  # covered by the sha256 sums
    shipped = [json.loads(l) for l in (bundle / task["knowledge_base"]).read_text().splitlines()]
    phrasings = {q for e in shipped for q in e.get("queries", [])}
    assert phrasings == {r["query"].strip() for r in curated if r["answer"]["faq_id"] != "none"}
    evals = [json.loads(l) for l in (run_dir / "teach/eval.jsonl").read_text().splitlines()]
    assert not phrasings & {r["query"].strip() for r in evals}
    verified = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "verify", str(bundle)],
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # both evaluations retrieved from the enriched index the bundle ships, not the recipe's file
    for metrics in (run_dir / "eval/metrics.json", run_dir / "quantize/eval/metrics.json"):
        doc = json.loads(metrics.read_text())
        assert Path(doc["task"]["knowledge_base"]) == (run_dir / "curate/knowledge_base.jsonl").resolve()
        assert doc["n"] == 4
