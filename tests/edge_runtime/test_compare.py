"""`edge-runtime compare`: the paired statistics on known scores, and the real command on two
real bundles (a random tiny Gemma and the real Gemma 3 270M) with the right verdict and exit
code either way round."""

import json

import pytest

from edge_runtime.compare import labelled_rows, mcnemar_exact, verdict
from edge_runtime.task import TaskSpec
from tests.edge_runtime.conftest import SENTIMENT, make_run_dir

REVIEWS = [
    "Absolutely loved it, would buy again.", "Terrible quality, broke after a day.", "Great value and fast delivery.",
    "The worst purchase I have made this year.", "Works perfectly, very happy.", "Awful customer service, never again.",
    "Beautiful design and sturdy.", "It arrived damaged and smelled bad.", "Exceeded my expectations!",
    "Complete waste of money.", "My kids adore it.", "Stopped working within a week.", "Five stars, recommended.",
    "Do not buy this, it is a scam.", "Comfortable and well made.", "Cheap plastic, disappointing.",
    "Fantastic sound for the price.", "The battery dies in an hour.", "Lovely colours, fits well.",
    "Refund requested, very unhappy.", "Best coffee maker I have owned.", "Leaks everywhere, useless.",
    "Simple to set up and reliable.", "Rude seller and slow shipping.",
]


def test_verdict_promotes_only_a_significant_gain():
    old = [1.0] * 20 + [0.0] * 20
    better = [1.0] * 20 + [1.0] * 15 + [0.0] * 5
    v = verdict(old, better)
    assert v["promote"] and v["difference"] == pytest.approx(15 / 40) and v["ci"][0] > 0
    assert v["mcnemar"] == {"only_old_right": 0, "only_new_right": 15, "p": pytest.approx(2 / 2**15)}
    assert not verdict(old, old)["promote"] and verdict(old, old)["ci"] == [0.0, 0.0]
    assert not verdict(better, old)["promote"]  # worse is kept out
    slight = [1.0] * 20 + [1.0] + [0.0] * 19  # one row better in 40: within the noise
    assert not verdict(old, slight)["promote"]
    assert not verdict(old, better, min_gain=0.5)["promote"]  # a gain smaller than asked for
    extraction = verdict([0.5, 0.25, 1.0] * 10, [1.0, 0.75, 1.0] * 10)  # field shares: no McNemar
    assert extraction["promote"] and "mcnemar" not in extraction


def test_mcnemar_exact_values():
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024) and mcnemar_exact(10, 0) == mcnemar_exact(0, 10)


def test_labelled_rows_refuse_rows_without_a_reference(tmp_path):
    task = TaskSpec.model_validate(SENTIMENT)
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"text": "ok", "label": "positive"}) + "\n" + json.dumps({"text": "meh"}) + "\n")
    with pytest.raises(ValueError, match=r"rows.jsonl:2: no reference answer; give it as one of answer, gold, label"):
        labelled_rows(task, f)
    with pytest.raises(FileNotFoundError, match="no such file or log directory"):
        labelled_rows(task, tmp_path / "missing.jsonl")


def test_labelled_rows_from_a_request_log_are_the_teachers_answers(tmp_path):
    from edge_runtime.request_log import LogSettings, RequestLog

    task = TaskSpec.model_validate(SENTIMENT)
    log = RequestLog(LogSettings(tmp_path / "log", inputs="full", flush_interval_s=0.01, fsync=False))
    base = {"task": "sentiment", "student_answer": {"label": "positive"}, "answer": {"label": "positive"}}
    for rec in ({**base, "input": "escalated", "escalated": True, "teacher_answer": {"label": "negative"}},
                {**base, "input": "escalated", "cached": True, "teacher_answer": {"label": "negative"}},  # again
                {**base, "input": "student only", "teacher_answer": None},
                {**base, "input": "shadowed", "teacher_answer": {"label": "positive"}, "shadow": {"agree": True}},
                {**base, "task": "other", "input": "another task", "teacher_answer": {"label": "negative"}}):
        log.record(rec)
    log.close()
    rows = labelled_rows(task, tmp_path / "log")
    assert rows == [{"input": {"text": "escalated"}, "ref": {"label": "negative"}},
                    {"input": {"text": "shadowed"}, "ref": {"label": "positive"}}]


@pytest.fixture(scope="module")
def random_bundle(tmp_path_factory, tiny_f16_gguf):
    """A bundle of the random tiny Gemma: answers the sentiment task, but at random."""
    from edge_runtime.bundle import pack_run

    root = tmp_path_factory.mktemp("random")
    return pack_run(make_run_dir(root, tiny_f16_gguf, SENTIMENT, threshold=0.0), "router-8gb", root / "bundle")


def test_compare_two_real_bundles_gives_the_right_verdict(sentiment_bundle, random_bundle, tmp_path, capsys):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.cli import main
    from edge_runtime.compare import score_bundle

    # the labels: the real model's own answers, so it is right on every row and the random one is not
    good = load_bundle(sentiment_bundle)
    rows = [{"input": {"text": t}, "ref": {"label": "positive"}} for t in REVIEWS]
    labels = [r["answer"]["label"] for r in score_bundle(good, rows, n_threads=2)]
    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps({"text": t, "answer": {"label": lab}}) + "\n" for t, lab in zip(REVIEWS, labels)))

    assert main(["compare", str(random_bundle), str(sentiment_bundle), "--data", str(data), "--threads", "2", "--json"]) == 0
    up = json.loads(capsys.readouterr().out)
    assert up["promote"] and up["new"] == 1.0 and up["old"] < 0.8 and up["ci"][0] > 0
    assert up["mcnemar"]["only_old_right"] == 0 and up["mcnemar"]["p"] < 0.05

    assert main(["compare", str(sentiment_bundle), str(random_bundle), "--data", str(data), "--threads", "2"]) == 1
    out = capsys.readouterr().out
    assert "KEEP OLD" in out and "McNemar" in out and f"rows            {len(REVIEWS)}" in out
