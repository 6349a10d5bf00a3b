"""Chinese FAQ retrieval recall on data/zh-faq (written by us; see its README).

Recall@k over the answerable paraphrase queries, and how many unanswerable queries retrieve no
entry at all (the rest reach the student, which must answer "none" itself). The set is small
(34 entries, 102 paraphrases, 8 unanswerable): read differences of a few points as noise.

    python benchmarks/zh_faq_retrieval.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_runtime.retrieval import load_knowledge_base
from edge_runtime.task import NO_ANSWER

DATA = Path(__file__).resolve().parents[1] / "data" / "zh-faq"


def main() -> None:
    kb = load_knowledge_base(DATA / "knowledge_base.jsonl")
    rows = [json.loads(line) for line in (DATA / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    answerable = [r for r in rows if r["faq_id"] != NO_ANSWER]
    unanswerable = [r for r in rows if r["faq_id"] == NO_ANSWER]
    t0 = time.perf_counter()
    ranked = [[i for i, _ in kb.top_k(r["query"], 5)] for r in answerable]
    ms = (time.perf_counter() - t0) / len(answerable) * 1000
    print(f"{len(kb)} FAQ entries; {len(answerable)} paraphrase queries; {len(unanswerable)} unanswerable queries")
    print(" ".join(f"R@{k} {sum(r['faq_id'] in ids[:k] for r, ids in zip(answerable, ranked)) / len(answerable):.3f}"
                   for k in (1, 3, 5)))
    empty = sum(not kb.top_k(r["query"], 5) for r in unanswerable)
    print(f"unanswerable queries that retrieve nothing: {empty}/{len(unanswerable)}")
    print(f"retrieval: {ms:.2f} ms per query (after jieba's first load)")


if __name__ == "__main__":
    main()
