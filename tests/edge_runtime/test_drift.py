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
    assert max(stable.values()) < 0.1 and not mon.drifted()
    for i in range(300):  # Chinese order numbers, unsure and all one label
        mon.observe(f"订单号 {1000 + i} 金额 {i * 7} 元，请尽快发货，谢谢", confidence=0.3, label="negative")
    shifted = mon.scores()
    assert shifted["char_class"] > 0.2 and shifted["confidence"] > 0.2 and mon.drifted()


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


def test_many_labels_are_scored_against_their_noise_bound_and_a_thin_reference_is_not_scored():
    """31 labels in the same proportions as the reference: over 50 requests sampling noise alone
    reads PSI ~0.5, past the 0.2 threshold; the noise bound for 31 bins at 50 requests (~1.2)
    keeps it down, and a real shift of the labels still passes it. A label reference from 40
    dev answers is never scored."""
    labels = [f"l{i}" for i in range(31)]
    rng = random.Random(5)
    ref = build_reference(_reviews(3100, 1), labels=labels * 100, label_set=labels)
    mon = DriftMonitor(ref, threshold=0.2, window=500, min_samples=50)
    assert not mon.unscored
    for i, text in enumerate(_reviews(500, 6)):
        mon.observe(text, label=rng.choice(labels))
        if i + 1 == 50:
            early = mon.evaluate()["label"]
            assert early["n"] == 50 and early["psi"] > 0.2 and early["noise"] > early["psi"] and not early["flag"]
            assert not mon.drifted()
    late = mon.evaluate()["label"]
    assert late["psi"] < 0.2 and late["noise"] < 0.2 and not mon.drifted()
    for text in _reviews(100, 8):  # half of the next 100 requests one label: flagged
        mon.observe(text, label="l0" if rng.random() < 0.5 else rng.choice(labels))
    short = DriftMonitor(ref, window=100)
    for o in list(mon._window)[-100:]:
        short.observe_values(chars=o["chars"], char_counts=o["char_class"], label=o["label"])
    assert short.evaluate()["label"]["flag"] and short.drifted()
    thin = build_reference(_reviews(100, 1), labels=labels[:20] * 2, label_set=labels)
    mon = DriftMonitor(thin, window=500)
    assert set(mon.unscored) == {"label"} and "reference from 40 rows" in mon.unscored["label"]
    for text in _reviews(300, 7):
        mon.observe(text, label="l30")  # a label the thin reference never saw: not scored, no flag
    assert "label" not in mon.scores()


# Short Chinese requests shaped like SMP2017 (the intents-zh bundle's traffic): 96% under 16
# characters, 4% 16-31, a few longer. At 50 requests the old rule (PSI past 0.2, shares floored at
# 1e-4) flagged such traffic in ~8% of windows: no 16-31 character input in the window, or one
# 65-character one, reads PSI 0.2-0.4 from noise alone.
_CJK = "打开帮我查一下明天北京的天气播放周杰伦歌曲到上海火车票今天新闻讲个笑话翻译英文"


def _requests(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        u = rng.random()
        size = rng.randint(3, 15) if u < 0.96 else rng.randint(16, 31) if u < 0.999 else rng.randint(32, 80)
        text = "".join(rng.choice(_CJK) for _ in range(size))
        out.append(text if rng.random() < 0.9 else text[:-2] + "QQ")
    return out


def test_same_distribution_traffic_flags_in_under_one_percent_of_windows():
    import math

    from edge_runtime.drift import noise_bound

    ref = build_reference(_requests(2300, 1))
    rng = random.Random(2)
    pool = _requests(3000, 3)
    old_false = 0
    for n in (50, 100, 200, 500):
        flagged = 0
        for _ in range(100 if n < 500 else 40):
            mon = DriftMonitor(ref, window=500)
            for text in rng.sample(pool, n):
                mon.observe(text)
            flagged += mon.drifted()
            if n == 50:
                counts = [0] * len(ref["features"]["chars"]["edges"])
                for o in mon._window:
                    counts[min(len(counts) - 1, sum(o["chars"] >= e for e in ref["features"]["chars"]["edges"]) - 1)] += 1
                old_false += psi(ref["features"]["chars"]["shares"], [c / n for c in counts]) > 0.2
        assert flagged == 0, f"{flagged} same-distribution windows of {n} requests flagged"
    assert old_false >= 2  # the old rule's false flags at 50: the test would catch a return to it
    # the stated bound: (1/n + 1/N) * chi2(0.999, k - 1), with its mean (k - 1)(1/n + 1/N)
    assert math.isclose(noise_bound(50, 2300, 3), (1 / 50 + 1 / 2300) * 13.8, rel_tol=0.05)
    assert math.isclose(noise_bound(500, None, 32, alpha=0.5), 31 / 500, rel_tol=0.05)


@pytest.mark.parametrize("shift", ["long", "english"])
def test_shifted_traffic_flags_by_fifty_requests(shift):
    ref = build_reference(_requests(2300, 1))
    pool = _requests(400, 4)
    english = _reviews(50, 5)
    mon = DriftMonitor(ref, window=500)
    for i in range(49):
        mon.observe("，".join(pool[4 * i:4 * i + 4]) if shift == "long" else english[i])
    assert mon.scores() == {}  # nothing scored before min_samples
    mon.observe("，".join(pool[196:200]) if shift == "long" else english[49])
    ev = mon.evaluate()
    assert mon.drifted(ev) and ev["chars" if shift == "long" else "char_class"]["flag"]


def test_metrics_name_the_noise_bound_and_the_flag_per_feature():
    from prometheus_client import CollectorRegistry, generate_latest

    mon = DriftMonitor(build_reference(_requests(500, 1)), window=100)
    reg = CollectorRegistry()
    reg.register(mon)
    for text in _reviews(60, 2):
        mon.observe(text)
    text = generate_latest(reg).decode()
    assert 'edge_drift_psi_noise{feature="chars"}' in text and 'edge_drift_feature_flag{feature="char_class"} 1.0' in text
    assert "edge_drift_false_alarm_ratio 0.001" in text and "edge_drift_flag 1.0" in text


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
                             "dev_predictions": "quantize/eval/gguf-model-q4_k_m/predictions.jsonl",
                             "labels": {"from": "curate/train.jsonl answer", "rows": 120}}
    feats = ref["features"]
    assert set(feats) == {"chars", "prompt_tokens", "char_class", "confidence", "label"}
    # the labels of the 120 training rows, not the student's 40 dev answers (all "positive")
    assert feats["label"]["categories"] == ["positive", "negative", "(invalid)"]
    assert feats["label"]["shares"] == [0.666667, 0.333333, 0.0] and feats["label"]["n"] == 120
    assert feats["confidence"]["n"] == 40 and abs(sum(feats["chars"]["shares"]) - 1) < 1e-4
    bundle = load_bundle(pack_run(run, "router-8gb", tmp_path / "bundle"))
    assert REFERENCE_FILE in bundle.manifest["files"] and bundle.read_json(REFERENCE_FILE) == json.loads(json.dumps(ref))
    # a run without inputs packs as before, without a reference
    bare = make_run_dir(tmp_path / "bare", gemma_gguf, SENTIMENT)
    assert REFERENCE_FILE not in load_bundle(pack_run(bare, "router-8gb", tmp_path / "b2")).manifest["files"]


def test_the_label_reference_is_the_largest_labelled_set_and_a_label_shift_flags(tmp_path, gemma_gguf):
    """The 40-row eval answered only one label; the 120 training rows hold the task's label prior.
    Traffic like the training rows stays down; the same traffic resampled to half one label
    (1/3 of it before) raises the flag by 100 requests."""
    from edge_runtime.task import TaskSpec

    task = TaskSpec.model_validate(SENTIMENT)
    run = _run_with_inputs(tmp_path, gemma_gguf)
    (run / "teach").mkdir()
    (run / "teach" / "eval.jsonl").write_text("".join(json.dumps({"id": f"e{i}", "text": "fine.", "gold": {"label": "negative"}})
                                                      + "\n" for i in range(40)))
    ref = reference_for_run(run, task)
    assert ref["source"]["labels"] == {"from": "curate/train.jsonl answer", "rows": 120}
    (run / "curate" / "train.jsonl").unlink()  # then the eval split's gold labels, the larger set left
    assert reference_for_run(run, task)["source"]["labels"] == {"from": "teach/eval.jsonl gold", "rows": 40}

    rng = random.Random(11)
    same = shifted = 0
    for _ in range(50):
        texts = _reviews(100, rng.randrange(10**6))
        mon = DriftMonitor(ref, window=100)
        for t in texts:
            mon.observe(t, label="positive" if rng.random() < 2 / 3 else "negative")
        same += mon.drifted()
        mon = DriftMonitor(ref, window=100)
        for t in texts:
            mon.observe(t, label="negative" if rng.random() < 0.5 else ("positive" if rng.random() < 2 / 3 else "negative"))
        shifted += mon.evaluate()["label"]["flag"]
    assert same == 0 and shifted >= 45


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
