"""The task spec: prompts, schema, parsing and normalisation shared by every stage."""

import json

import pytest
from pydantic import ValidationError

from edge_runtime.task import TaskSpec, extract_json_object

RECEIPTS = TaskSpec(
    name="receipts", kind="extraction", instructions="Extract.", input_field="ocr_lines",
    fields={"company": {}, "date": {"type": "date"}, "total": {"type": "amount"}},
)
INTENTS = TaskSpec(name="intents", kind="classification", instructions="Classify.", labels=["a", "b"])


def test_prompt_joins_lines_and_answer_is_canonical():
    prompt = RECEIPTS.render_prompt({"ocr_lines": ["SHOP", "TOTAL 9.00"]})
    assert prompt.endswith("### Input:\nSHOP\nTOTAL 9.00\n\n### Output (JSON):\n")
    assert RECEIPTS.render_answer({"total": "9.00", "company": "SHOP", "date": "1/1/2019"}) == (
        '{"company": "SHOP", "date": "1/1/2019", "total": "9.00"}'
    )


def test_missing_input_field_names_the_fix():
    with pytest.raises(KeyError, match="set task.input_field"):
        RECEIPTS.render_prompt({"text": "x"})


def test_parse_valid_invalid_and_reasoning():
    assert RECEIPTS.parse('{"company": "A", "date": "", "total": "1"}')[0] == {"company": "A", "date": "", "total": "1"}
    assert RECEIPTS.parse("not json") == (None, ["no JSON object in the output"])
    answer, problems = RECEIPTS.parse('{"company": "A"}')
    assert answer is None and "missing key 'date'" in problems
    # a JSON object inside the reasoning is never taken as the answer
    text = '<think>maybe {"label": "b"}</think> {"label": "a"}'
    assert INTENTS.parse(text)[0] == {"label": "a"}
    assert INTENTS.parse('{"label": "c"}')[1] == ["label 'c' is not one of the 2 labels"]
    assert extract_json_object("```json\n{\"x\": 1}\n```") == {"x": 1}


def test_schema_matches_kind():
    assert INTENTS.json_schema()["properties"]["label"]["enum"] == ["a", "b"]
    assert RECEIPTS.json_schema()["required"] == ["company", "date", "total"]


def test_normalisation_by_field_type():
    assert RECEIPTS.normalise("date", "25/12/2018") == RECEIPTS.normalise("date", "2018-12-25")
    assert RECEIPTS.normalise("date", "12-01-19") == "2019-01-12"
    assert RECEIPTS.normalise("total", "RM 1,234.5") == "1234.50"
    assert RECEIPTS.normalise("company", " shop  sdn bhd ") == "SHOP SDN BHD"
    assert RECEIPTS.normalise("total", None) == ""


def test_kind_requirements():
    with pytest.raises(ValidationError, match="needs `fields`"):
        TaskSpec(name="x", kind="extraction", instructions="i")
    with pytest.raises(ValidationError, match="duplicates"):
        TaskSpec(name="x", kind="classification", instructions="i", labels=["a", "a"])


def test_short_student_prompt_is_a_tag_and_the_input_while_the_teacher_keeps_the_full_one():
    from distill.teachers.prompting import build_messages

    shots = [{"input": {"ocr_lines": ["A SHOP"]}, "output": {"company": "A SHOP", "date": "", "total": ""}}]
    full = TaskSpec.model_validate({**RECEIPTS.model_dump(), "few_shot": shots, "student_prompt": "full"})
    short = TaskSpec.model_validate({**full.model_dump(), "student_prompt": "short"})
    row = {"ocr_lines": ["SHOP", "TOTAL 9.00"]}
    assert short.render_prompt(row) == "[receipts]\n\n### Input:\nSHOP\nTOTAL 9.00\n\n### Output (JSON):\n"
    assert full.render_prompt(row) == full.render_teacher_prompt(row) == short.render_teacher_prompt(row)
    assert "Extract." in full.render_prompt(row) and "A SHOP" in full.render_prompt(row)
    assert build_messages(short, row)[1]["content"] == full.render_prompt(row)  # the teacher reads the full prompt
    zh = TaskSpec(name="intents", kind="classification", instructions="判断领域。", labels=["a", "b"],
                  language="zh", student_prompt="short")
    assert zh.render_prompt({"text": "放首歌"}) == "[intents]\n\n### 输入：\n放首歌\n\n### 输出（JSON）：\n"


def test_the_default_student_prompt_is_the_kinds_measured_better_one_and_is_stored_resolved():
    """auto: short for extraction and classification, full for faq (docs/results.md, "Short student
    prompts"); resolved on load, so a bundle's task.json says what the student was trained on."""
    from edge_runtime.task import STUDENT_PROMPT_BY_KIND

    tasks = {"extraction": {"fields": {"total": {}}}, "classification": {"labels": ["a", "b"]}, "faq": {"faq_ids": ["q1"]}}
    for kind, extra in tasks.items():
        task = TaskSpec(name="t", kind=kind, instructions="Do it.", **extra)
        assert task.student_prompt == STUDENT_PROMPT_BY_KIND[kind] != "auto"
        assert json.loads(task.to_json())["student_prompt"] == task.student_prompt
        assert ("Do it." in task.render_prompt({"text": "x"})) == (kind == "faq")
        pinned = TaskSpec(name="t", kind=kind, instructions="Do it.", student_prompt="full", **extra)
        assert "Do it." in pinned.render_prompt({"text": "x"})  # a recipe's own choice is kept


def test_short_prompt_keeps_faq_candidates_and_is_stored_with_the_task():
    faq = TaskSpec(name="faq", kind="faq", instructions="Pick the entry.", faq_ids=["q1"], student_prompt="short")
    prompt = faq.render_prompt({"text": "how do I reset"}, context="Candidate FAQ entries:\n[q1] Reset")
    assert prompt.startswith("[faq]\n") and prompt.endswith("how do I reset\n\nCandidate FAQ entries:\n[q1] Reset\n\n### Output (JSON):\n")
    assert TaskSpec.from_stored(faq.to_json()).student_prompt == "short"
    old = faq.model_dump(mode="json")
    del old["student_prompt"]  # a bundle from before the setting: trained on the full prompt
    import json

    assert TaskSpec.from_stored(json.dumps(old)).student_prompt == "full"
