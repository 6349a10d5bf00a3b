"""Training prompts for FAQ tasks: candidate order, and "none" when the answer was not retrieved.

A faq prompt lists the retriever's top-k entries as candidates. Trained on them in the
retriever's order, a small student learns "take the first" (the StackFAQ student picked BM25's
first candidate for 112 of 125 dev queries). `shuffle` lists the same candidates in seeded
random orders, optionally several `views` per row, so the student must read them; eval and
the runtime keep the retriever's order. Measured on gemma-3-270m it then picked at chance
(0.192 top-1), so it is off by default: a student must be able to match query and candidate
for it to pay (docs/results.md).

A training row whose labelled entry is not among its candidates is trained to answer "none":
given those candidates that is the right answer, and the one the runtime should give.

When the knowledge base holds the training queries as known phrasings (`curate.index_queries`,
distill/data/faq_index.py), each row's candidates are retrieved with its own phrasing left
out, as for a new query at serving time; otherwise its gold would always rank first.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

from edge_runtime.task import NO_ANSWER, TaskSpec


def applies(task: TaskSpec) -> bool:
    """Whether the task builds its own candidates (a faq task with a knowledge base)."""
    return task.kind == "faq" and bool(task.knowledge_base)


def training_views(task: TaskSpec, row: dict[str, Any], cfg, seed: int, train: bool = True
                   ) -> list[tuple[dict[str, Any], str]]:
    """(row, context) pairs to encode for one training row; `context` "" means the task's own.

    `cfg` is the recipe's `student.training.faq` (None or a non-faq task: the row as it is).
    Validation rows (`train=False`) get one view in the retriever's order, as at inference,
    with the same "none" relabelling, so validation loss measures the served condition.
    Orders are seeded by the row id, so a rerun encodes the same prompts.
    """
    if cfg is None or not applies(task):
        return [(row, "")]
    from edge_runtime.retrieval import load_knowledge_base, render_candidates

    kb = load_knowledge_base(task.knowledge_base)
    hits = kb.top_k(task.input_text(row), task.top_k, held_out=True)  # its own phrasing left out, if indexed
    answer = row.get("answer")
    if cfg.none_when_missing and isinstance(answer, dict):
        gold = answer.get("faq_id")
        if gold and gold != NO_ANSWER and gold not in {h for h, _ in hits}:
            row = {**row, "answer": {**answer, "faq_id": NO_ANSWER}}
    if not train:
        return [(row, render_candidates(kb, hits, task.prompt_language))]
    rng = random.Random(zlib.crc32(f"{seed}:{row.get('id', '')}".encode()))
    views = []
    for _ in range(cfg.views):
        order = list(hits)
        if cfg.shuffle:
            rng.shuffle(order)
        views.append((row, render_candidates(kb, order, task.prompt_language)))
    return views


def relabelled_none(rows: list[dict[str, Any]], task: TaskSpec, cfg) -> int:
    """How many of `rows` the "none" rule relabels (for the training record)."""
    if cfg is None or not cfg.none_when_missing or not applies(task):
        return 0
    return sum(training_views(task, r, cfg, 0, train=False)[0][0].get("answer") != r.get("answer") for r in rows)
