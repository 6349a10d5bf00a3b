"""Training prompts for FAQ tasks: candidates in varied order, and "none" when the answer is missing.

A faq prompt lists the retriever's top-k entries as candidates. Trained on them in the
retriever's order, a small student learns "take the first" (the StackFAQ student picked BM25's
first candidate for 112 of 125 dev queries and scored below BM25 alone). So training prompts
list the same candidates in shuffled orders, optionally several views per row, and the student
has to read them. Eval and the runtime keep the retriever's order.

A training row whose labelled entry is not among its candidates is trained to answer "none":
given those candidates that is the right answer, and it is what the runtime should say for an
off-topic query. Without it the student never learns to abstain.
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
    hits = kb.top_k(task.input_text(row), task.top_k)
    answer = row.get("answer")
    if cfg.none_when_missing and isinstance(answer, dict):
        gold = answer.get("faq_id")
        if gold and gold != NO_ANSWER and gold not in {h for h, _ in hits}:
            row = {**row, "answer": {**answer, "faq_id": NO_ANSWER}}
    if not train:
        return [(row, render_candidates(kb, hits))]
    rng = random.Random(zlib.crc32(f"{seed}:{row.get('id', '')}".encode()))
    views = []
    for _ in range(cfg.views):
        order = list(hits)
        if cfg.shuffle:
            rng.shuffle(order)
        views.append((row, render_candidates(kb, order)))
    return views


def relabelled_none(rows: list[dict[str, Any]], task: TaskSpec, cfg) -> int:
    """How many of `rows` the "none" rule relabels (for the training record)."""
    if cfg is None or not cfg.none_when_missing or not applies(task):
        return 0
    from edge_runtime.retrieval import load_knowledge_base

    kb = load_knowledge_base(task.knowledge_base)
    n = 0
    for r in rows:
        gold = (r.get("answer") or {}).get("faq_id")
        if gold and gold != NO_ANSWER and gold not in {h for h, _ in kb.top_k(task.input_text(r), task.top_k)}:
            n += 1
    return n
