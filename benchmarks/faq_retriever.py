"""A retriever bundle (`student.head: retriever`) against BM25 alone, side by side in one run:
each query is embedded once by the bundle's GGUF and scored three ways over the bundle's own
knowledge base: BM25 alone, the dense embedding alone, and the shipped fusion; then the shipped
answer with abstention ("none" below the calibrated probability).

    python benchmarks/faq_retriever.py BUNDLE --data runs/faq-support/teach/eval.jsonl \
        --data data/unseen/stackfaq.jsonl
    python benchmarks/faq_retriever.py --run runs/faq-support --data ...   (the fp32 HF student)

Per file: recall@1 of each ranking on the answerable queries, the shipped answer's accuracy
(abstaining on an answerable query counts wrong), false abstentions on answerable queries,
abstentions on the unanswerable ("none") ones, and the answer's p50 latency on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from edge_runtime.bundle import load_bundle
from edge_runtime.engines import bundle_predictor
from edge_runtime.layout import read_jsonl
from edge_runtime.retriever import bm25_scores, fuse
from edge_runtime.task import NO_ANSWER


def score_file(pred, path: str) -> dict:
    head, task = pred.head, pred.task
    rows = read_jsonl(path)
    hits = {"bm25": 0, "dense": 0, "fused": 0}
    right = false_abstain = answerable = unanswerable = abstained_none = 0
    latencies = []
    for row in rows:
        query, gold = task.input_text(row), str(row.get("faq_id") or (row.get("answer") or {}).get("faq_id"))
        start = time.perf_counter()
        p = pred.predict(row)
        latencies.append(time.perf_counter() - start)
        dense = head.dense_scores(pred.embed(head.query_text(query))[0])
        bm25 = bm25_scores(pred.kb, query, head.ids)
        said = p.answer["faq_id"]
        if gold == NO_ANSWER:
            unanswerable += 1
            abstained_none += said == NO_ANSWER
            continue
        answerable += 1
        target = head.ids.index(gold)
        hits["bm25"] += bool(bm25.max() > 0 and int(np.argmax(bm25)) == target)
        hits["dense"] += int(np.argmax(dense)) == target
        hits["fused"] += int(np.argmax(fuse(dense, bm25, head.dense_weight, head.rrf_k))) == target
        right += said == gold
        false_abstain += said == NO_ANSWER
    n = max(1, answerable)
    return {"file": path, "answerable": answerable, "unanswerable": unanswerable,
            **{f"recall@1 {k}": round(v / n, 3) for k, v in hits.items()},
            "answer accuracy (with abstention)": round(right / n, 3), "false abstentions": f"{false_abstain}/{answerable}",
            "abstained on unanswerable": f"{abstained_none}/{unanswerable}",
            "p50 answer ms": round(1000 * statistics.median(latencies), 1) if latencies else None}


def hf_predictor(run_dir: str):
    """The run's fp32 student with training's retriever file, over the run's knowledge base."""
    from distill.eval.hf_retriever_predictor import HFRetrieverPredictor
    from edge_runtime.layout import RunLayout
    from edge_runtime.retrieval import task_for_run
    from edge_runtime.task import TaskSpec

    run = RunLayout(run_dir)
    task = task_for_run(TaskSpec.model_validate(run.read_recipe().task), run_dir)
    task.attach_knowledge_base(run_dir)
    return HFRetrieverPredictor(run.merged_dir, run.root / "train" / "retriever.npz", task)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="?", help="a bundle packed from a student.head: retriever run")
    ap.add_argument("--run", help="instead of a bundle: a run directory whose train stage wrote the retriever "
                    "(its fp32 merged body and training's entry embeddings, before quantization)")
    ap.add_argument("--data", action="append", required=True, help="JSONL of {query, faq_id} (repeatable)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.run:
        pred = hf_predictor(args.run)
    else:
        bundle = load_bundle(args.bundle)
        if bundle.manifest.get("answers_with") != "retriever":
            raise SystemExit(f"{args.bundle} has no retriever head; give a bundle packed from a student.head: retriever run")
        pred = bundle_predictor(bundle, n_threads=args.threads)
    try:
        print(f"dense weight {pred.head.dense_weight} (chosen on validation), rrf_k {pred.head.rrf_k}")
        for path in args.data:
            print(json.dumps(score_file(pred, path), ensure_ascii=False))
    finally:
        getattr(pred, "close", lambda: None)()


if __name__ == "__main__":
    main()
