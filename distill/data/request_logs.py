"""Runtime request logs as teacher data (issue #18, "from the log back to training").

`edge-runtime serve --log-dir DIR` writes the `edge-request-log` format
(`edge_runtime/request_log.py` defines it and reads it). A recipe lists such directories under
`data.logs`; the teach stage adds one labelled row per distinct input the TEACHER answered:
an escalation (`teacher_answer`) or a shadow sample (`shadow.teacher_answer`). The student's
own answers are never used: training on them would only teach the student its own mistakes.
The rows then go through curation like any teacher data (schema, dedup, decontamination
against the eval split), so a logged input that is also an eval row is dropped there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from edge_runtime.request_log import log_files, read_log, teacher_answer

ROW_PREFIX = "log-"  # ids of rows taken from a log: `log-<first 16 hex of the input's sha256>`


def rows_from_logs(task, directories: list[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Labelled rows (`id`, the task's input field, `answer`, `agreement`, `source`) from the
    logs, oldest first, one per distinct input (the first teacher answer kept); and counts of
    what was skipped and why."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    counts = {"records": 0, "rows": 0, "student_only": 0, "other_task": 0, "hash_only": 0, "repeated_input": 0}
    for directory in directories:
        for rec in read_log(directory):
            counts["records"] += 1
            answer = teacher_answer(rec)
            if rec.get("task") != task.name:
                counts["other_task"] += 1
            elif answer is None:
                counts["student_only"] += 1
            elif "input" not in rec:  # `--log-inputs hash`: nothing to train on
                counts["hash_only"] += 1
            elif rec["input_sha256"] in seen:
                counts["repeated_input"] += 1
            else:
                seen.add(rec["input_sha256"])
                rows.append({"id": ROW_PREFIX + rec["input_sha256"][:16], task.input_field: rec["input"],
                             "answer": answer, "agreement": 1.0, "source": "log",
                             **({"input_mode": rec["input_mode"]} if rec.get("input_mode") != "full" else {})})
    counts["rows"] = len(rows)
    return rows, counts


def logs_digest(directories: list[Path]) -> str:
    """sha256 over the log files' names and contents: the teach stage's fingerprint input, so
    new traffic re-runs teach (and what follows) while a report.html written there does not."""
    digest = hashlib.sha256()
    for directory in directories:
        digest.update(f"{directory}\0".encode())
        for path in log_files(directory):
            digest.update(f"{path.name}\0".encode())
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
