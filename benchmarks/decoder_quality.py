"""Does the new decoder answer as well as the old one? Both decoders of one bundle on the same
labelled rows (a run's dev split: `runs/<recipe>/teach/eval.jsonl` holds `gold`), scored with
the eval's own per-example score and headline metric.

  schema         the runtime's decoder as the bundle ships it (llguidance masks, forced tokens)
  llama-grammar  llama.cpp's GBNF sampler, the runtime's path before it

    python benchmarks/decoder_quality.py BUNDLE --data runs/receipts-small/teach/eval.jsonl [--speculate]
"""

from __future__ import annotations

import argparse
import json
import statistics

from distill.eval.metrics import example_score, task_metrics
from edge_runtime.bundle import load_bundle
from edge_runtime.engines.llamacpp import LlamaCppPredictor, load_llama


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--data", required=True, help="JSONL rows with the task input and `gold` answers")
    ap.add_argument("--speculate", action="store_true", help="also score the decoder with speculation on")
    args = ap.parse_args()

    bundle = load_bundle(args.bundle)
    task = bundle.task
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    llm = load_llama(bundle.model_path, n_ctx=int(bundle.generation.get("n_ctx", 2048)),
                     **({"lora_path": str(bundle.adapter_path)} if bundle.adapter_path else {}))
    decoders = {"schema": LlamaCppPredictor.from_bundle(bundle, llm=llm),
                "llama-grammar": LlamaCppPredictor.from_bundle(bundle, llm=llm, decoder="llama-grammar")}
    if args.speculate:
        decoders["schema+speculation"] = LlamaCppPredictor.from_bundle(bundle, llm=llm, decoding={"speculate": True})
    refs = [r["gold"] for r in rows]
    inputs = [task.input_text(r) for r in rows]
    report = {}
    answers = {}
    for name, pred in decoders.items():
        preds = [pred.predict(r) for r in rows]
        answers[name] = [p.raw for p in preds]
        m = task_metrics(task, [p.answer for p in preds], refs, inputs)
        report[name] = {"headline": round(m["headline"], 4),
                        "mean_example_score": round(statistics.mean(example_score(task, p.answer, g) for p, g in zip(preds, refs)), 4),
                        "valid": sum(p.valid for p in preds), "rows": len(rows),
                        "p50_latency_s": round(statistics.median(p.latency_s for p in preds), 3)}
    report["same_answer_text"] = {n: sum(a == b for a, b in zip(answers[n], answers["llama-grammar"]))
                                  for n in answers if n != "llama-grammar"}
    print(json.dumps(report, indent=2))
    llm.close()


if __name__ == "__main__":
    main()
