"""Drift: the reference profile a bundle carries (packed from a real run directory, listed in
the manifest) and PSI of live traffic against it, with the flag in /metrics."""

from __future__ import annotations

import json
import random

import pytest

from edge_runtime.drift import (REFERENCE_FILE, DriftMonitor, build_reference, char_classes, check_reference, psi,
                                reference_for_run)
from tests.edge_runtime.conftest import SENTIMENT, make_run_dir

WORDS = "the film was great awful boring lovely plot acting long short music ending".split()


def _reviews(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 20))) + "." for _ in range(n)]


def test_char_classes_and_psi():
    assert char_classes("ab 12,中文!é") == [2, 3, 2, 1, 2, 0]
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.9, 0.1], [0.1, 0.9]) > 1.0
    assert psi([1.0, 0.0], [0.5, 0.5]) < 10  # an empty reference bin stays finite


def test_same_traffic_is_stable_and_shifted_traffic_raises_the_flag():
    conf = random.Random(2)
    ref = build_reference(_reviews(2000, 1), confidences=[conf.uniform(0.6, 1) for _ in range(2000)],
                          labels=["positive", "negative"] * 1000, label_set=["positive", "negative"])
    mon = DriftMonitor(ref, threshold=0.2, window=300, min_samples=50)
    rng = random.Random(3)
    for text in _reviews(300, 4):
        mon.observe(text, confidence=rng.uniform(0.6, 1), label=rng.choice(["positive", "negative"]))
    stable = mon.scores()
    assert set(stable) == {"chars", "char_class", "confidence", "label"}
    assert max(stable.values()) < 0.1 and not mon.drifted(stable)
    for i in range(300):  # Chinese order numbers, unsure and all one label
        mon.observe(f"订单号 {1000 + i} 金额 {i * 7} 元，请尽快发货，谢谢", confidence=0.3, label="negative")
    shifted = mon.scores()
    assert shifted["char_class"] > 0.2 and shifted["confidence"] > 0.2 and mon.drifted(shifted)


def test_no_score_before_min_samples_and_metrics_names():
    from prometheus_client import CollectorRegistry, generate_latest

    mon = DriftMonitor(build_reference(_reviews(100, 1)), threshold=0.2, window=50, min_samples=10)
    reg = CollectorRegistry()
    reg.register(mon)
    for _ in range(9):
        mon.observe("12345")
    assert mon.scores() == {} and "edge_drift_flag 0.0" in generate_latest(reg).decode()
    mon.observe("12345")
    text = generate_latest(reg).decode()
    assert 'edge_drift_psi{feature="char_class"}' in text and "edge_drift_flag 1.0" in text
    assert "edge_drift_threshold 0.2" in text and "edge_drift_window_requests 10.0" in text


def test_many_labels_wait_for_enough_requests_and_a_thin_reference_is_not_scored():
    """31 labels in the same proportions as the reference: over 50 requests sampling noise alone
    is PSI ~0.6 (a false flag); the label is scored only from 10 requests per label on, and then
    stays under the threshold. A label reference from 40 dev answers is never scored."""
    labels = [f"l{i}" for i in range(31)]
    rng = random.Random(5)
    ref = build_reference(_reviews(3100, 1), labels=labels * 100, label_set=labels)
    mon = DriftMonitor(ref, threshold=0.2, window=500, min_samples=50)
    assert mon.needed["label"] == 310 and mon.needed["char_class"] == 50 and not mon.unscored
    for i, text in enumerate(_reviews(500, 6)):
        mon.observe(text, label=rng.choice(labels))
        if i + 1 == 50:
            early = mon.scores()
            assert "label" not in early and "chars" in early and not mon.drifted(early)
            noisy = DriftMonitor(ref, window=50, min_samples=50)  # the same 50 scored anyway: the false flag
            for o in list(mon._window):
                noisy.observe_values(chars=o["chars"], char_counts=o["char_class"], label=o["label"])
            assert noisy.scores()["label"] > 0.2
    late = mon.scores()
    assert late["label"] < 0.2 and not mon.drifted(late)
    thin = build_reference(_reviews(100, 1), labels=labels[:20] * 2, label_set=labels)
    mon = DriftMonitor(thin, window=500)
    assert set(mon.unscored) == {"label"} and "reference from 40 rows" in mon.unscored["label"]
    for text in _reviews(300, 7):
        mon.observe(text, label="l30")  # a label the thin reference never saw: not scored, no flag
    assert "label" not in mon.scores()


def test_a_bad_reference_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="re-pack"):
        check_reference({"format": "edge-drift-reference", "version": 7})
    ref = build_reference(["a"])
    ref["features"]["chars"]["shares"] = [1.0]
    with pytest.raises(ValueError, match="'chars'.*re-pack"):
        check_reference(ref)


def _run_with_inputs(tmp_path, gemma_gguf):
    run = make_run_dir(tmp_path, gemma_gguf, SENTIMENT, threshold=0.0)
    (run / "curate").mkdir()
    rows = [{"id": str(i), "text": t, "answer": {"label": "positive" if i % 3 else "negative"}}
            for i, t in enumerate(_reviews(120, 5))]
    (run / "curate" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = run / "quantize" / "eval" / "gguf-model-q4_k_m"
    preds.mkdir(parents=True)
    (preds / "predictions.jsonl").write_text("".join(
        json.dumps({"id": str(i), "answer": {"label": "positive"}, "confidence": 0.5 + i / 100}) + "\n" for i in range(40)))
    return run


def test_pack_puts_the_reference_in_the_manifest(tmp_path, gemma_gguf):
    from edge_runtime.bundle import load_bundle, pack_run
    from edge_runtime.task import TaskSpec

    run = _run_with_inputs(tmp_path, gemma_gguf)
    ref = reference_for_run(run, TaskSpec.model_validate(SENTIMENT), gemma_gguf, "q4_k_m")
    assert ref["source"] == {"inputs": "curate/train.jsonl", "rows": 120,
                             "dev_predictions": "quantize/eval/gguf-model-q4_k_m/predictions.jsonl"}
    feats = ref["features"]
    assert set(feats) == {"chars", "prompt_tokens", "char_class", "confidence", "label"}
    assert feats["label"]["categories"] == ["positive", "negative", "(invalid)"] and feats["label"]["shares"][0] == 1.0
    assert feats["confidence"]["n"] == 40 and abs(sum(feats["chars"]["shares"]) - 1) < 1e-4
    bundle = load_bundle(pack_run(run, "router-8gb", tmp_path / "bundle"))
    assert REFERENCE_FILE in bundle.manifest["files"] and bundle.read_json(REFERENCE_FILE) == json.loads(json.dumps(ref))
    # a run without inputs packs as before, without a reference
    bare = make_run_dir(tmp_path / "bare", gemma_gguf, SENTIMENT)
    assert REFERENCE_FILE not in load_bundle(pack_run(bare, "router-8gb", tmp_path / "b2")).manifest["files"]


def test_a_head_runs_reference_counts_the_tokens_the_head_reads(tmp_path, gemma_gguf):
    """A classifier head reads the input alone, not the generative prompt: the reference's
    prompt_tokens must count the same tokens the served head reports, or in-distribution
    traffic is flagged (it was: PSI 18 on the intents-zh bundle's own develop rows)."""
    import numpy as np

    from edge_runtime.bundle import load_bundle, pack_run
    from edge_runtime.engines import bundle_predictor
    from edge_runtime.heads import ClassifierHead
    from edge_runtime.task import TaskSpec

    run = _run_with_inputs(tmp_path, gemma_gguf)
    (run / "train").mkdir()
    head = ClassifierHead(np.zeros((2, 640), np.float32), ["positive", "negative"]).save(run / "train" / "head.npz")
    (run / "train" / "record.json").write_text(json.dumps({"stage": "train", "outputs": {"head": str(head)}}))
    task = TaskSpec.model_validate(SENTIMENT)
    bundle = load_bundle(pack_run(run, "router-8gb", tmp_path / "bundle"))
    pred = bundle_predictor(bundle, n_threads=2)
    try:
        live = [(t, pred.predict({"text": t}).prompt_tokens) for t in _reviews(30, 9)]
    finally:
        pred.close()
    mon = DriftMonitor(bundle.read_json(REFERENCE_FILE), window=30, min_samples=30)
    for text, n in live:
        mon.observe(text, prompt_tokens=n)
    assert mon.scores()["prompt_tokens"] < 0.1
    rendered = [len(task.render_prompt({"text": t})) for t, _ in live]
    assert min(rendered) > max(n for _, n in live)  # the generative prompt would have been far longer
