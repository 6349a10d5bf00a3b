"""A runtime request log as teacher data: the real log writer, the real teach and curate stages
on the real receipts. Escalated and shadow-sampled inputs become training rows with the
TEACHER's answer; student-only, hash-only and repeated records do not; a logged input that is
an eval row is dropped by decontamination."""

import json
from pathlib import Path

import pytest

from distill.data.io import read_rows
from distill.pipeline.runner import read_record, run_pipeline
from distill.pipeline.stages import load_splits
from distill.recipe import RecipeError, load_recipe
from edge_runtime.request_log import LogSettings, RequestLog

RECEIPTS = Path(__file__).resolve().parents[3] / "recipes" / "receipts-small.yaml"
TEACHER = {"company": "TEACHER CO", "date": "01/01/2019", "address": "1 TEACHER ROAD", "total": "9.99"}
STUDENT = {"company": "STUDENT GUESS", "date": "", "address": "", "total": "0.00"}


def _record(lines, *, escalated=False, shadow=None, cached=False):
    rec = {"id": "task-x", "task": "receipts", "bundle": "0" * 64, "input": lines,
           "answer": TEACHER if (escalated or cached) else STUDENT, "source": "cache" if cached else
           ("teacher" if escalated else "student"), "confidence": 0.2, "valid": True,
           "escalated": escalated and not cached, "student_answer": STUDENT,
           "teacher_answer": TEACHER if (escalated or cached) else None, "cached": cached}
    if shadow:
        rec["shadow"] = {"agree": False, "teacher_answer": shadow}
    return rec


def _sha(lines):
    from edge_runtime.request_log import input_sha256

    return input_sha256("\n".join(lines))


def _write_log(directory: Path, records, inputs="full"):
    log = RequestLog(LogSettings(directory, inputs=inputs, flush_interval_s=0.01, fsync=False))
    for r in records:
        assert log.record(r)
    log.close()


def test_escalated_and_shadow_rows_become_training_rows_with_the_teachers_answer(tmp_path):
    recipe = load_recipe(RECEIPTS)
    train, evals = load_splits(recipe)
    used = {r["id"] for r in train + evals}
    fresh = [r for r in read_rows(recipe.data.path, recipe.data.id_field) if r["id"] not in used]
    assert len(fresh) >= 4
    shadow_answer = {**TEACHER, "company": "SHADOW TEACHER CO"}
    _write_log(tmp_path / "log", [
        _record(fresh[0]["ocr_lines"], escalated=True),                 # kept: the teacher's answer
        _record(fresh[0]["ocr_lines"], cached=True),                    # the same input again: once
        _record(fresh[1]["ocr_lines"]),                                 # the student's answer only: never
        _record(fresh[2]["ocr_lines"], shadow=shadow_answer),           # kept: the shadow teacher's answer
        _record(evals[0]["ocr_lines"], escalated=True),                 # an eval row: decontaminated
        {**_record(fresh[3]["ocr_lines"], escalated=True), "task": "other"},
    ])
    _write_log(tmp_path / "hashlog", [_record(fresh[3]["ocr_lines"], escalated=True)], inputs="hash")

    recipe = load_recipe(RECEIPTS, [f"data.logs=[{tmp_path / 'log'}, {tmp_path / 'hashlog'}]"])
    run_pipeline(recipe, tmp_path / "run", until="curate", log=lambda _: None)
    teach = read_record(tmp_path / "run", "teach")["outputs"]
    assert teach["logs"] == {"records": 7, "rows": 3, "student_only": 1, "other_task": 1, "hash_only": 1,
                             "repeated_input": 1}
    kept = [json.loads(l) for l in (tmp_path / "run/curate/train.jsonl").read_text().splitlines()]
    from_log = {r["id"]: r for r in kept if r.get("source") == "log"}
    assert len(from_log) == 2 and len(kept) > 60
    answers = {r["ocr_lines"][0] + r["ocr_lines"][1]: r["answer"] for r in from_log.values()}
    assert answers == {fresh[0]["ocr_lines"][0] + fresh[0]["ocr_lines"][1]: TEACHER,
                       fresh[2]["ocr_lines"][0] + fresh[2]["ocr_lines"][1]: shadow_answer}
    assert all(r["answer"] != STUDENT for r in kept)
    report = json.loads((tmp_path / "run/curate/report.json").read_text())
    contaminated = [e["id"] for e in report["dropped"]["overlaps the eval split"]["examples"]]
    assert [i for i in contaminated if i.startswith("log-")] == ["log-" + _sha(evals[0]["ocr_lines"])[:16]]

    # new traffic in the log re-runs teach; the same log does not
    logs: list[str] = []
    run_pipeline(recipe, tmp_path / "run", until="curate", log=logs.append)
    assert logs[0].startswith("[teach] up to date")
    _write_log(tmp_path / "log", [_record(fresh[1]["ocr_lines"], escalated=True)])
    logs.clear()
    run_pipeline(recipe, tmp_path / "run", until="curate", log=logs.append)
    assert logs[0].startswith("[teach] running")
    assert read_record(tmp_path / "run", "teach")["outputs"]["logs"]["rows"] == 4


def test_a_missing_log_directory_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match=r"data.logs\[0\]: no such log directory"):
        load_recipe(RECEIPTS, [f"data.logs=[{tmp_path / 'nope'}]"])
