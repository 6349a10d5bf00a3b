"""Synthesis through a loopback endpoint that plays the teacher: topics, personas and
target labels reach the prompts, classes stay balanced, repeats are discarded, the new
rows are labelled, and a re-run pays nothing."""

import json
import re

import yaml

from distill.recipe import load_recipe
from distill.teachers import run_teach
from distill.teachers.loopback import _response, _Server, chat_completion
from distill.teachers.synthesize import plan
from edge_runtime.task import TaskSpec


class ScriptedTeacher(_Server):
    """Writes inputs that echo what it was asked for; labels by the word in the input."""

    def __init__(self):
        super().__init__()
        self.bodies = []

    async def handle(self, req, writer):
        body = json.loads(req[3])
        self.bodies.append(body)
        user = body["messages"][-1]["content"]
        if '"inputs"' in body["messages"][0]["content"]:
            n = int(re.search(r"Write (\d+) new", user).group(1))
            topic = re.search(r"about: (.*?)\.", user).group(1)
            label = re.search(r"the label '(\w+)'", user).group(1)
            texts = [f"{topic} thing {body['seed']}.{k} is {label}" for k in range(n)]
            texts[-1] = "Seed one."  # a repeat of a seed: discarded
            content = json.dumps({"inputs": texts})
        else:
            text = user.rsplit("### Input:", 1)[1]
            content = json.dumps({"label": "negative" if "negative" in text else "positive"})
        writer.write(_response(200, json.dumps(chat_completion(content, 20, 10)).encode()))
        return True


def test_synthesized_rows_are_spread_balanced_and_labelled(tmp_path):
    data = tmp_path / "seeds.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(
        ["Seed one.", "Seed two.", "Seed three.", "Seed four."])))
    with ScriptedTeacher() as srv:
        raw = {"task": {"name": "s", "kind": "classification", "instructions": "Classify the review.",
                        "labels": ["positive", "negative"]},
               "data": {"path": str(data)},
               "teacher": {"kind": "openai", "base_url": srv.url, "model": "m", "price_input_per_m": 1.0,
                           "price_output_per_m": 1.0,
                           "synthesize": {"count": 12, "per_request": 5, "topics": ["phones", "shoes"],
                                          "personas": ["a teenager"], "seeds_per_request": 2}}}
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
        recipe = load_recipe(tmp_path / "r.yaml")
        rows = [json.loads(l) for l in data.read_text().splitlines()]
        summary = run_teach(recipe, rows, tmp_path / "run" / "teach")
        synth_asks = [b for b in srv.bodies if '"inputs"' in b["messages"][0]["content"]]
        assert len(synth_asks) == 3 and all("a teenager" in b["messages"][1]["content"] for b in synth_asks)
        assert summary["synthesized"]["written"] == 12 - 3 and summary["synthesized"]["duplicates"] == 3
        assert summary["labelled"] == 4 + 9 and summary["requests"] == 3 + 4 + 9  # 3 to write, 4 seeds and 9 new rows to label
        made = [json.loads(l) for l in (tmp_path / "run/teach/synthesized.jsonl").read_text().splitlines()]
        assert [r["synth"]["topic"] for r in made] == ["phones"] * 4 + ["shoes"] * 4 + ["phones"]
        assert {r["synth"]["label"] for r in made} == {"positive", "negative"}
        assert summary["label_counts"] == {"positive": 4 + 4 + 1, "negative": 4}
        before = len(srv.bodies)
        again = run_teach(recipe, rows, tmp_path / "run" / "teach")
        assert len(srv.bodies) == before and again["requests"] == 0 and again["labelled"] == 13


def test_plan_cycles_labels_and_needs_seeds():
    task = TaskSpec(name="t", kind="classification", instructions="x", labels=["a", "b", "c"])

    class Cfg:
        count, per_request, seeds_per_request, topics, personas, balance_labels, seed = 7, 2, 1, [], [], True, 0

    entries = plan(Cfg, task, [{"text": "s"}])
    assert [e["label"] for e in entries] == ["a", "b", "c", "a"] and [e["count"] for e in entries] == [2, 2, 2, 1]
    try:
        plan(Cfg, task, [])
    except ValueError as exc:
        assert "seed rows" in str(exc)
    else:
        raise AssertionError("no error without seeds")
