"""FAQ retrieval recall: the knowledge base as shipped vs. with the training split's labelled queries.

The StackFAQ student mostly takes BM25's first candidate, so retrieval sets its accuracy. With
`curate.index_queries` the curate stage attaches the training split's labelled queries to their
FAQ entries as known phrasings (distill/data/faq_index.py). This measures recall@k on the dev
split (never indexed), on data/unseen/stackfaq.jsonl (written by us, not in StackFAQ), and on the
training split itself with each query left out of its own retrieval, the condition the training
prompts are built in: close to dev means the student trains on what it will be served.

    python benchmarks/faq_retrieval.py [recipes/faq-support.yaml]
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from distill.pipeline.stages import load_splits
from distill.recipe import load_recipe
from edge_runtime.retrieval import KnowledgeBase, load_knowledge_base
from edge_runtime.task import NO_ANSWER

ROOT = Path(__file__).resolve().parents[1]


def recall(kb: KnowledgeBase, task, rows: list[dict], answer_field: str, ks=(1, 3, 5), held_out=False) -> dict[int, float]:
    rows = [r for r in rows if r[answer_field] != NO_ANSWER]
    hits = {k: 0 for k in ks}
    for r in rows:
        ranked = [i for i, _ in kb.top_k(task.input_text(r), max(ks), held_out=held_out)]
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
            phrasings[r[field]].append(task.input_text(r).strip())
    enriched = plain.with_queries(dict(phrasings))
    unseen_path = ROOT / "data" / "unseen" / "stackfaq.jsonl"
    unseen = [json.loads(line) for line in unseen_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(f"{len(plain)} FAQ entries; {sum(map(len, phrasings.values()))} training queries attached; "
          f"dev {len(dev)} queries; unseen {sum(r[field] != NO_ANSWER for r in unseen)} answerable queries")
    print(f"{'index':<38} {'split':<22} {'R@1':>6} {'R@3':>6} {'R@5':>6}")
    for name, kb in (("questions + answers (as shipped)", plain), ("+ training split's labelled queries", enriched)):
        for split, rows in (("dev", dev), ("unseen", unseen)):
            r = recall(kb, task, rows, field)
            print(f"{name:<38} {split:<22} {r[1]:>6.3f} {r[3]:>6.3f} {r[5]:>6.3f}")
    t0 = time.perf_counter()
    r = recall(enriched, task, train, field, held_out=True)
    per_query_ms = (time.perf_counter() - t0) / len(train) * 1000
    print(f"{'+ training split, each left out':<38} {'train (leave-one-out)':<22} {r[1]:>6.3f} {r[3]:>6.3f} {r[5]:>6.3f}")
    print(f"leave-one-out retrieval: {per_query_ms:.2f} ms per training query")


if __name__ == "__main__":
    main(*sys.argv[1:])
