"""The `dataset` teacher: answers that already exist, in the data (`data.answer_field`)
or in a JSONL log of a teacher's responses (`teacher.responses`: rows with `id` or
`prompt`, and `response`). Distilling from production logs is this case."""

from __future__ import annotations

from typing import Any

from distill.data.io import as_answer
from edge_runtime.layout import iter_jsonl


def _load_log(recipe) -> tuple[dict[str, str], dict[str, str]]:
    by_id, by_prompt = {}, {}
    for n, entry in iter_jsonl(recipe.teacher.responses):
        if "response" not in entry:
            raise ValueError(f"{recipe.teacher.responses}:{n}: no `response` key")
        if "id" in entry:
            by_id[str(entry["id"])] = entry["response"]
        if "prompt" in entry:
            by_prompt[entry["prompt"]] = entry["response"]
    return by_id, by_prompt


def label_from_dataset(recipe, rows: list[dict[str, Any]]):
    task = recipe.task
    log = _load_log(recipe) if recipe.teacher.responses else None
    labelled, failed = [], []
    for row in rows:
        if log is not None:
            raw = log[0].get(row["id"]) or log[1].get(task.render_teacher_prompt(row))
            if raw is None:
                failed.append({"id": row["id"], "reason": "no logged response for this row"})
                continue
            answer, problems = task.parse(raw) if isinstance(raw, str) else (raw, task.validate_answer(raw))
        else:
            answer = as_answer(task, row.get(recipe.data.answer_field))
            problems = ["no answer in the data"] if answer is None else task.validate_answer(answer)
        if problems or answer is None:
            failed.append({"id": row["id"], "reason": "; ".join(problems)})
            continue
        labelled.append({**row, "answer": answer, "agreement": 1.0})
    return labelled, failed
