"""`student.head: retriever` end to end through the real CLI on a tiny in-process model:
teach -> curate -> train (LoRA embedder, fusion weight and abstention fitted on validation) ->
eval -> quantize -> pack (entries re-embedded by the shipped GGUF) -> predict and serve; the
device (llama.cpp embeddings + numpy) agrees with the HF body; a tampered file is refused."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from edge_runtime.server_settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "faq-support.yaml"
QUERIES = ["how do I strike through words on github", "delete my facebook account for good",
           "what is the capital of peru"]


@pytest.fixture(scope="module")
def run(head_student_run):
    return head_student_run(RECIPE, "retriever", also_quiet=("UserWarning",))


def _bundle(run_dir: Path) -> Path:
    return Path(json.loads((run_dir / "pack/record.json").read_text())["outputs"]["bundle"])


def test_the_run_trains_a_retriever_and_ships_it(run):
    from edge_runtime.retriever import RetrieverHead

    metrics = json.loads((run / "train/train_metrics.json").read_text())
    assert metrics["student_head"] == "retriever" and (metrics["train_rows"], metrics["val_rows"]) == (48, 12)
    assert metrics["steps"] == 3 and metrics["dense_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert metrics["val_recall1_fused"] == max(metrics["val_recall1_by_dense_weight"].values())  # chosen on validation
    assert (run / "train/merged/config.json").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["student"]["json_validity"] == 1.0 and summary["gguf-f16"]["n"] == 6
    bundle = _bundle(run)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (manifest["head"], manifest["answers_with"]) == ("retriever.npz", "retriever")
    trained, shipped = RetrieverHead.load(run / "train/retriever.npz"), RetrieverHead.load(bundle / "retriever.npz")
    assert len(shipped.ids) == 125 and shipped.ids == trained.ids
    assert not np.array_equal(shipped.entries, trained.entries)  # re-embedded by the F16 GGUF at pack time...
    assert np.abs(shipped.entries - trained.entries).max() < 1e-2  # ...and close to the fp32 body's


def test_device_answers_match_the_hf_body(run):
    from distill.eval.hf_retriever_predictor import HFRetrieverPredictor
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines import bundle_predictor

    bundle = load_bundle(_bundle(run))
    device = bundle_predictor(bundle, n_threads=2)
    hf = HFRetrieverPredictor(run / "train/merged", run / "train/retriever.npz", bundle.task)
    try:
        for text in QUERIES:
            query = device.head.query_text(text)
            da, db = device.head.dense_scores(device.embed(query)[0]), hf.head.dense_scores(hf.embed(query)[0])
            assert np.abs(da - db).max() < 5e-3, (text, np.abs(da - db).max())  # F16 GGUF vs fp32 HF
            a, b = device.predict({"query": text}), hf.predict({"query": text})
            assert a.answer == b.answer and a.confidence == pytest.approx(b.confidence, abs=2e-2)
            assert a.completion_tokens == 0 and len(a.extra["alternatives"]) == 3
    finally:
        device.close()


def test_predict_cli_and_the_task_endpoint_answer_faq_ids(run):
    from openai import BadRequestError, OpenAI

    from edge_runtime.server import create_app
    from tests.edge_runtime.conftest import LiveServer

    bundle = _bundle(run)
    ids = {json.loads(line)["id"] for line in (bundle / "knowledge_base.jsonl").read_text().splitlines()} | {"none"}
    done = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "predict", str(bundle), "--input", QUERIES[0],
                           "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    body = json.loads(done.stdout)
    assert body["answer"]["faq_id"] in ids and len(body["alternatives"]) == 3
    with LiveServer(create_app(bundle, ServerSettings(n_threads=2))) as live:
        r = httpx.post(live.url + "/v1/tasks/faq-support", json={"input": QUERIES[1]}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"]["faq_id"] in ids and 0 < body["confidence"] <= 1
        assert all(a["faq_id"] in ids for a in body["alternatives"])
        client = OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0, timeout=60)
        with pytest.raises(BadRequestError) as refused:
            client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert "retriever head" in refused.value.response.text and "/v1/tasks/faq-support" in refused.value.response.text


def test_a_tampered_or_misplaced_retriever_is_refused(run, tmp_path):
    from edge_runtime.bundle import BundleError, load_bundle, pack
    from edge_runtime.task import TaskSpec
    from tests.distill.conftest import tampered_copy

    bundle = _bundle(run)
    with pytest.raises(BundleError, match="retriever.npz"):
        load_bundle(tampered_copy(bundle, "retriever.npz", tmp_path / "b"))
    other = TaskSpec(name="intents", kind="classification", instructions="x", input_field="text", labels=["a", "b"])
    with pytest.raises(ValueError, match="retriever head is for faq tasks"):
        pack(bundle / "model-f16.gguf", other, tmp_path / "out", head=run / "train/retriever.npz")
