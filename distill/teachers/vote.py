"""Self-consistency: several sampled answers per input, a majority per field or label,
and the agreement kept as a confidence (curation drops rows below `curate.min_agreement`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from edge_runtime.task import TaskSpec

DISTRIBUTION_FIELD = "label_distribution"  # a labelled row's soft label: {label: share}


def majority(task: TaskSpec, answers: list[dict[str, Any] | None]) -> tuple[dict[str, Any] | None, float]:
    """(voted answer, agreement in 0..1). Invalid samples (None) count as disagreeing.

    Values are compared after the task's normalisation (`25/12/2018` = `2018-12-25`); the
    winning group's most frequent original spelling is kept. Ties go to the earliest sample.
    """
    valid = [a for a in answers if a is not None]
    if not valid:
        return None, 0.0
    voted: dict[str, Any] = {}
    shares = []
    for key in task.answer_keys():
        groups: dict[str, list[str]] = {}
        for a in valid:
            groups.setdefault(task.normalise(key, a[key]), []).append(a[key])
        best = max(groups.values(), key=len)  # max keeps the first of equals: earliest sample
        voted[key] = Counter(best).most_common(1)[0][0]
        shares.append(len(best) / len(answers))
    return voted, sum(shares) / len(shares)


def label_distribution(task: TaskSpec, answers: list[dict[str, Any] | None]) -> dict[str, float] | None:
    """A classification teacher's vote shares over its valid samples ({label: share}), the soft
    label a classifier student trains on (`distill.train.classifier`); None for other task
    kinds, a single sample, or no valid sample."""
    if task.kind != "classification" or len(answers) < 2:
        return None
    labels = [a.get("label") for a in answers if a is not None and a.get("label") in task.labels]
    if not labels:
        return None
    return {label: round(n / len(labels), 6) for label, n in Counter(labels).most_common()}
