"""Self-consistency votes become the teacher's label distribution, which a classifier
student trains on (soft labels): through the real teach stage and a loopback teacher that
answers differently across samples."""

import json

from distill.teachers import run_teach
from distill.teachers.loopback import FixedLatencyServer, _response, chat_completion
from distill.teachers.vote import label_distribution
from distill.train.classifier import targets_for
from edge_runtime.task import TaskSpec


class Alternating(FixedLatencyServer):
    """Answers positive, positive, negative, positive, positive, negative, ..."""

    async def handle(self, req, writer) -> bool:
        self.requests += 1
        label = "negative" if self.requests % 3 == 0 else "positive"
        writer.write(_response(200, json.dumps(chat_completion(json.dumps({"label": label}), 10, 5)).encode()))
        return True


def test_votes_are_kept_as_the_label_distribution_and_become_training_targets(make_recipe, tmp_path):
    with Alternating(0.0) as srv:
        recipe, rows, _ = make_recipe({"kind": "openai", "base_url": srv.url, "model": "m", "max_tokens": 16,
                                       "samples": 3, "temperature": 0.7, "concurrency": 1}, texts=2)
        run_teach(recipe, rows, tmp_path / "teach")
    out = [json.loads(l) for l in (tmp_path / "teach/labelled.jsonl").read_text().splitlines()]
    assert len(out) == 2
    for row in out:
        assert row["answer"] == {"label": "positive"}
        assert row["label_distribution"] == {"positive": round(2 / 3, 6), "negative": round(1 / 3, 6)}
        targets = targets_for(recipe.task, row)
        labels = recipe.task.labels
        assert abs(targets[labels.index("positive")] - 2 / 3) < 1e-5 and abs(sum(targets) - 1) < 1e-9


def test_label_distribution_is_only_for_classification_votes():
    cls = TaskSpec(name="t", kind="classification", instructions="x", labels=["a", "b"])
    ext = TaskSpec(name="e", kind="extraction", instructions="x", fields={"f": {}})
    assert label_distribution(cls, [{"label": "a"}]) is None  # one sample: no distribution
    assert label_distribution(cls, [{"label": "a"}, None, {"label": "b"}, {"label": "a"}]) == {"a": 0.666667, "b": 0.333333}
    assert label_distribution(ext, [{"f": "1"}, {"f": "2"}]) is None
    assert targets_for(cls, {"answer": {"label": "b"}}) == [0.0, 1.0]
