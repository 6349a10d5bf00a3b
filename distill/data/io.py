"""Reading task rows from JSONL/CSV, writing them atomically, and drawing splits.

A row is a dict with at least `id` and the task's input field. Rows that carry an answer
have it under `answer` (training rows: the teacher's) or `gold` (eval rows: the human
label), always as an answer object the task validates.
"""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path
from typing import Any, Iterable

from edge_runtime.layout import iter_jsonl
from edge_runtime.task import TaskSpec


class DataError(ValueError):
    """A data file that cannot be read as task rows; the message names file and line."""


def read_rows(path: str | Path, id_field: str | None = None) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    rows: list[dict[str, Any]] = []
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        try:
            rows = [row for _, row in iter_jsonl(path)]
        except ValueError as exc:  # the message names file and line
            raise DataError(str(exc)) from None
    elif suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as fh:
            rows = [dict(r) for r in csv.DictReader(fh)]
    else:
        raise DataError(f"{path}: unsupported data format {suffix!r}; use .jsonl or .csv")
    if not rows:
        raise DataError(f"{path}: no rows")
    for n, row in enumerate(rows):
        rid = row.get(id_field) if id_field else row.get("id")
        row["id"] = str(rid) if rid not in (None, "") else f"row-{n:06d}"
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: id {dup!r} occurs more than once; ids must be unique (set data.id_field)")
    return rows


def input_sample(path: str | Path, task: TaskSpec, limit: int = 200) -> list[str]:
    """The task inputs of the first `limit` rows, read lazily; [] for what cannot be read (the
    data stage reports that with its own message). `task.language: auto` is decided on it."""
    path = Path(path)
    out: list[str] = []
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh) if path.suffix.lower() == ".csv" else (json.loads(l) for l in fh if l.strip())
            for row in reader:
                if isinstance(row, dict) and row.get(task.input_field) is not None:
                    out.append(task.input_text(row))
                if len(out) >= limit:
                    break
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
        pass
    return out


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows to `path` atomically (a temp file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return count


def as_answer(task: TaskSpec, value: Any) -> dict[str, Any] | None:
    """A gold value from the data as an answer object (a bare label or id is wrapped)."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if isinstance(value, dict):
        return {k: ("" if value.get(k) is None else str(value.get(k))) for k in task.answer_keys()}
    return {task.answer_keys()[0]: str(value)}


def sample_rows(rows: list[dict[str, Any]], size: int | None, seed: int) -> list[dict[str, Any]]:
    """`size` rows drawn at random with a fixed seed, kept in file order (all of them when `size`
    is None or not smaller): a prefix of a file sorted by label would hold only its first labels."""
    if not size or size >= len(rows):
        return list(rows)
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), size))]


def split_rows(rows: list[dict[str, Any]], eval_size: int, train_size: int | None, seed: int):
    """A fixed-seed shuffle into (train, eval); eval rows are never trained on."""
    if eval_size >= len(rows):
        raise DataError(f"data.split.eval_size={eval_size} leaves no training rows out of {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    eval_rows = [rows[i] for i in order[:eval_size]]
    train_rows = [rows[i] for i in order[eval_size:]]
    if train_size:
        train_rows = train_rows[:train_size]
    return train_rows, eval_rows
