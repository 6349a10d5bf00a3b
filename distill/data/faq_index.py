"""Known phrasings: the labelled training queries of a faq task, indexed with their FAQ entries.

BM25 over the FAQ's own question and answers misses how users actually ask (StackFAQ: the
right entry is first for 0.696 of the dev queries). Every query the teacher labelled is a
phrasing of its entry, so the curate stage attaches the kept ones to the knowledge base as
`queries` (`curate.index_queries`); the enriched copy is what training, evaluation and the
bundle then retrieve from. The eval split is never indexed. Training prompts leave each query
out of its own retrieval (`KnowledgeBase.top_k(held_out=True)`), so the student trains on the
condition it is served in: a new query whose own words are not in the index.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from edge_runtime.task import NO_ANSWER

KB_NAME = "knowledge_base.jsonl"


def build_known_phrasings(recipe, kept: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """Write `out_dir/knowledge_base.jsonl`: the task's knowledge base with each kept row's query
    attached to the entry its answer names ("none" answers attach nothing). Returns facts for
    the curate record; the path is relative to the run directory, so a moved run still works."""
    from edge_runtime.retrieval import load_knowledge_base

    task = recipe.task
    kb = load_knowledge_base(task.knowledge_base)
    phrasings: dict[str, list[str]] = defaultdict(list)
    for row in kept:
        faq_id = (row.get("answer") or {}).get("faq_id")
        if faq_id and faq_id != NO_ANSWER:
            phrasings[faq_id].append(task.input_text(row).strip())
    enriched = kb.with_queries(dict(phrasings))
    enriched.write(Path(out_dir) / KB_NAME)
    added = sum(len(new.queries) - len(old.queries) for new, old in zip(enriched.entries, kb.entries))
    return {"knowledge_base": f"{Path(out_dir).name}/{KB_NAME}", "known_phrasings_added": added,
            "entries_with_phrasings": sum(bool(e.queries) for e in enriched.entries)}
