"""`student.head: classifier` end to end through the real CLI on a tiny in-process model:
teach -> curate -> train (LoRA + head, temperature fitted on validation) -> eval -> quantize
-> pack -> serve on loopback; the device (llama.cpp hidden state + numpy head) agrees with the
HF body + head; a tampered head is refused."""

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from edge_runtime.server_settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "banking-intents.yaml"
MESSAGES = ["I still have not received my new card, why?", "How do I top up with Apple Pay?",
            "My transfer was declined", "What is the exchange rate for euros?"]


@pytest.fixture(scope="module")
def head_run(head_student_run):
    return head_student_run(RECIPE, "classifier")


def test_the_run_trains_a_calibrated_head_and_ships_it(head_run):
    metrics = json.loads((head_run / "train/train_metrics.json").read_text())
    assert metrics["student_head"] == "classifier" and metrics["val_rows"] == 12 and metrics["train_rows"] == 48
    assert metrics["temperature"] > 0 and "val_ece_after" in metrics  # fitted on the validation rows only
    assert (head_run / "train/merged/config.json").is_file()  # an ordinary causal-LM checkpoint for GGUF
    summary = json.loads((head_run / "summary.json").read_text())
    assert summary["student"]["json_validity"] == 1.0 and summary["gguf-f16"]["json_validity"] == 1.0
    assert summary["gguf-f16"]["n"] == 6
    assert summary["gguf-f16"]["generation_tokens_per_s"] is None  # a head generates no tokens: no rate in the report
    bundle = Path(json.loads((head_run / "pack/record.json").read_text())["outputs"]["bundle"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["head"] == "head.npz" and "head.npz" in manifest["files"]


def test_device_answers_match_the_hf_head(head_run):
    from distill.eval.hf_head_predictor import HFHeadPredictor
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines import bundle_predictor

    bundle = load_bundle(Path(json.loads((head_run / "pack/record.json").read_text())["outputs"]["bundle"]))
    device = bundle_predictor(bundle, n_threads=2)
    hf = HFHeadPredictor(head_run / "train/merged", head_run / "train/head.npz", bundle.task)
    try:
        for text in MESSAGES:
            a, b = device.predict({"text": text}), hf.predict({"text": text})
            pa = device.head.probs(device.hidden(text)[0])
            pb = hf.head.probs(hf.hidden(text)[0])
            assert np.abs(pa - pb).max() < 1e-3, (text, np.abs(pa - pb).max())  # F16 GGUF vs fp32 HF
            tokens = device.llm.tokenize(text.encode(), add_bos=True, special=False)
            pc = device.head.probs(device.reader.hidden_by_embedding(tokens))  # the fallback pass
            assert np.abs(pc - pb).max() < 1e-2, (text, np.abs(pc - pb).max())
            assert a.answer == b.answer and a.confidence == pytest.approx(b.confidence, abs=1e-3)
            assert a.completion_tokens == 0 and len(a.extra["alternatives"]) == 3
    finally:
        device.close()


def test_served_head_answers_labels_and_refuses_free_text(head_run):
    from openai import BadRequestError, OpenAI

    from edge_runtime.server import create_app
    from tests.edge_runtime.conftest import LiveServer

    bundle = Path(json.loads((head_run / "pack/record.json").read_text())["outputs"]["bundle"])
    labels = set(json.loads((bundle / "task.json").read_text())["labels"])
    with LiveServer(create_app(bundle, ServerSettings(n_threads=2))) as live:
        r = httpx.post(live.url + "/v1/tasks/banking-intents", json={"input": MESSAGES[0]}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"]["label"] in labels and 0 < body["confidence"] <= 1
        assert [a["label"] in labels for a in body["alternatives"]] == [True] * 3
        client = OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0, timeout=60)
        with pytest.raises(BadRequestError) as refused:
            client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert "classifier head" in refused.value.response.text and "/v1/tasks/banking-intents" in refused.value.response.text
        assert httpx.get(live.url + "/healthz", timeout=10).status_code == 200  # still serving


def test_a_tampered_or_foreign_head_is_refused(head_run, tmp_path):
    from edge_runtime.bundle import BundleError, load_bundle, pack
    from edge_runtime.heads import ClassifierHead
    from edge_runtime.task import TaskSpec
    from tests.distill.conftest import tampered_copy

    bundle = Path(json.loads((head_run / "pack/record.json").read_text())["outputs"]["bundle"])
    with pytest.raises(BundleError, match="head.npz"):
        load_bundle(tampered_copy(bundle, "head.npz", tmp_path / "b"))
    # a head trained for other labels is not packed with this task
    foreign = ClassifierHead(np.zeros((2, 64), np.float32), ["a", "b"]).save(tmp_path / "foreign.npz")
    task = TaskSpec.model_validate_json((bundle / "task.json").read_text())
    with pytest.raises(ValueError, match="labels differ"):
        pack(bundle / "model-f16.gguf", task, tmp_path / "out", head=foreign)


def test_eval_of_a_body_gguf_by_path_answers_through_the_head_and_keeps_same_named_files_apart(head_run, tmp_path, tiny_gemma_dir):
    """`gguf:<path>` in a head recipe is the body: it answers through the run's head (before, it
    generated, as a base model would); two files of one name get two result folders."""
    from distill.cli import main
    from tests.distill.conftest import TINY_RUN

    shipped = head_run / "quantize" / "model-f16.gguf"
    copy = tmp_path / "rebuilt" / "model-f16.gguf"
    copy.parent.mkdir()
    shutil.copy(shipped, copy)
    settings = [f"student.model={tiny_gemma_dir}", "student.head=classifier", *TINY_RUN]
    out = tmp_path / "eval"
    args = ["eval", str(RECIPE), "--run-dir", str(head_run), *[a for s in settings for a in ("--set", s)],
            "--predictor", f"gguf:{shipped}", "--predictor", f"gguf:{copy}", "--out", str(out)]
    assert main(args) == 0
    results = json.loads((out / "metrics.json").read_text())["predictors"]
    assert sorted(results) == ["gguf-model-f16", "gguf-model-f16-rebuilt"]
    stage = json.loads((head_run / "summary.json").read_text())["gguf-f16"]
    for result in results.values():
        assert result["generation_tokens_per_s"] is None and result["mean_completion_tokens"] == 0  # the head answered
        assert result["headline"] == stage["headline"]  # as the run's own eval of the same file


def test_validation_rows_are_the_ones_the_train_stage_held_out(head_run, tmp_path):
    """scripts/validation_rows.py writes back the rows the trainer validated on: as many as it
    recorded, every one a curated training row, and refused for a run whose counts disagree."""
    import csv
    import subprocess
    import sys

    from edge_runtime.layout import read_jsonl

    out = tmp_path / "val.csv"
    script = ROOT / "scripts" / "validation_rows.py"
    done = subprocess.run([sys.executable, str(script), str(head_run), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = list(csv.DictReader(out.open(encoding="utf-8")))
    trained = json.loads((head_run / "train/record.json").read_text())["outputs"]
    assert len(written) == trained["val_rows"] == 12
    curated = {(r["text"], r["answer"]["label"]) for r in read_jsonl(head_run / "curate/train.jsonl")}
    assert {(r["text"], r["category"]) for r in written} <= curated
    from transformers import AutoTokenizer

    from distill.train.classifier import encode
    from edge_runtime.heads import head_input
    from edge_runtime.task import TaskSpec

    recipe = json.loads((head_run / "recipe.resolved.json").read_text())
    tr, task = recipe["student"]["training"], TaskSpec.model_validate(recipe["task"])
    tok = AutoTokenizer.from_pretrained(head_run / "train/merged")
    _, val, _ = encode(tok, task, read_jsonl(head_run / "curate/train.jsonl"), tr["max_seq_len"], tr["val_fraction"], tr["seed"])
    assert [v["input_ids"] for v in val] == [tok(head_input(task, r))["input_ids"] for r in written]  # the trainer's rows, in its order
    other = tmp_path / "other"
    shutil.copytree(head_run, other, ignore=shutil.ignore_patterns("*.gguf", "merged", "checkpoints", "pack"))
    record = json.loads((other / "train/record.json").read_text())
    record["outputs"]["val_rows"] += 1  # a run split some other way
    (other / "train/record.json").write_text(json.dumps(record))
    refused = subprocess.run([sys.executable, str(script), str(other), str(out)], capture_output=True, text=True)
    assert refused.returncode != 0 and "the run recorded 13/" in refused.stderr
