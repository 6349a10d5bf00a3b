"""FAQ retrieval recall: the knowledge base as shipped vs. with the training split's labelled queries.

The StackFAQ student mostly takes BM25's first candidate, so retrieval sets its accuracy. Each
FAQ entry can carry `queries` (known phrasings, e.g. past queries a teacher labelled); this
measures what attaching the training split's labelled queries does to recall@k on the dev
split (never indexed) and on data/unseen/stackfaq.jsonl (written by us, not in StackFAQ).

    python benchmarks/faq_retrieval.py [recipes/faq-support.yaml]
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from distill.pipeline.stages import load_splits
from distill.recipe import load_recipe
from edge_runtime.retrieval import KnowledgeBase, load_knowledge_base
from edge_runtime.task import NO_ANSWER

ROOT = Path(__file__).resolve().parents[1]


def recall(kb: KnowledgeBase, task, rows: list[dict], answer_field: str, ks=(1, 3, 5)) -> dict[int, float]:
    rows = [r for r in rows if r[answer_field] != NO_ANSWER]
    hits = {k: 0 for k in ks}
    for r in rows:
        ranked = [i for i, _ in kb.top_k(task.input_text(r), max(ks))]
        for k in ks:
            hits[k] += r[answer_field] in ranked[:k]
    return {k: hits[k] / len(rows) for k in ks}


def main(recipe_path: str = str(ROOT / "recipes" / "faq-support.yaml")) -> None:
    recipe = load_recipe(recipe_path)
    task, field = recipe.task, recipe.data.answer_field
    train, dev = load_splits(recipe)
    plain = load_knowledge_base(task.knowledge_base)
    phrasings: dict[str, list[str]] = defaultdict(list)
    for r in train:  # the training split only: the dev queries are never indexed
        if r[field] != NO_ANSWER:
            phrasings[r[field]].append(task.input_text(r))
    enriched = KnowledgeBase([replace(e, queries=e.queries + tuple(phrasings[e.id])) for e in plain.entries])
    unseen_path = ROOT / "data" / "unseen" / "stackfaq.jsonl"
    unseen = [json.loads(line) for line in unseen_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(f"{len(plain)} FAQ entries; {sum(map(len, phrasings.values()))} training queries attached; "
          f"dev {len(dev)} queries; unseen {sum(r[field] != NO_ANSWER for r in unseen)} answerable queries")
    print(f"{'index':<38} {'split':<7} {'R@1':>6} {'R@3':>6} {'R@5':>6}")
    for name, kb in (("questions + answers (as shipped)", plain), ("+ training split's labelled queries", enriched)):
        for split, rows in (("dev", dev), ("unseen", unseen)):
            r = recall(kb, task, rows, field)
            print(f"{name:<38} {split:<7} {r[1]:>6.3f} {r[3]:>6.3f} {r[5]:>6.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
