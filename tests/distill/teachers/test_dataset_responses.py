"""The `dataset` teacher's response log (`teacher.responses`): read by id and by prompt, and a
bad line named by file and line."""

import json
from types import SimpleNamespace

import pytest

from distill.teachers.dataset import _load_log


def _recipe(path):
    return SimpleNamespace(teacher=SimpleNamespace(responses=path))


def test_responses_by_id_and_prompt(tmp_path):
    log = tmp_path / "responses.jsonl"
    log.write_text(json.dumps({"id": 7, "response": "A"}) + "\n\n" + json.dumps({"prompt": "p", "response": "B"}) + "\n")
    assert _load_log(_recipe(log)) == ({"7": "A"}, {"p": "B"})


@pytest.mark.parametrize("line, message", [
    ("{broken", r"responses.jsonl:2: not valid JSON"),
    ("[1]", r"responses.jsonl:2: expected a JSON object"),
    ('{"id": 1}', r"responses.jsonl:2: no `response` key"),
])
def test_a_bad_line_is_named(tmp_path, line, message):
    log = tmp_path / "responses.jsonl"
    log.write_text(json.dumps({"id": 0, "response": "ok"}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        _load_log(_recipe(log))
