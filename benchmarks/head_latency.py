"""Classifier-head latency on the device: one pass over the input (the last token in embedding
mode) plus the numpy head, against prompt evaluation of the same input tokens alone, and
(optionally) against a generative bundle of the same task answering the same inputs, all in
one run on this machine.

    python benchmarks/head_latency.py HEAD_BUNDLE [--generative BUNDLE] [--data FILE] [--n N]

The last line reads `classification/prompt: X.XXx` (the head answer's p50 over prompt
evaluation's p50; issue #14's target is at most 1.2x).
"""

from __future__ import annotations

import argparse
import json
import statistics

from edge_runtime.bench import _percentile, bench_inputs, run_head_bench
from edge_runtime.bundle import load_bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="a bundle with a classifier head (student.head: classifier)")
    ap.add_argument("--generative", help="a generative bundle of the same task, answering the same inputs")
    ap.add_argument("--data", help="CSV or JSONL of task inputs")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    bundle = load_bundle(args.bundle)
    if not bundle.manifest.get("head"):
        raise SystemExit(f"{args.bundle} has no classifier head; give a bundle packed from a student.head: classifier run")
    report = run_head_bench(bundle, args.n, args.threads, args.data)
    lat = report["latency"]
    print(f"inputs: {report['requests']} (median {lat['input_tokens_p50']} tokens)")
    print(f"prompt evaluation alone: p50 {lat['prompt_eval_p50_s'] * 1000:.1f} ms, p95 {lat['prompt_eval_p95_s'] * 1000:.1f} ms")
    print(f"classifier head answer:  p50 {lat['answer_p50_s'] * 1000:.1f} ms, p95 {lat['answer_p95_s'] * 1000:.1f} ms")
    if args.generative:
        from edge_runtime.engines.llamacpp import LlamaCppPredictor

        gen_bundle = load_bundle(args.generative)
        gen = LlamaCppPredictor.from_bundle(gen_bundle, n_threads=args.threads)
        inputs = bench_inputs(bundle.task, args.n, args.data)
        gen.predict(inputs[0])
        times = [gen.predict(ex).latency_s for ex in inputs]
        gen.close()
        report["generative"] = {"bundle": str(gen_bundle.root), "answer_p50_s": round(statistics.median(times), 4),
                                "answer_p95_s": round(_percentile(times, 0.95), 4)}
        print(f"generative student (served, prefix reuse): p50 {statistics.median(times) * 1000:.1f} ms, "
              f"p95 {_percentile(times, 0.95) * 1000:.1f} ms "
              f"({statistics.median(times) / lat['answer_p50_s']:.1f}x the head)")
    print(json.dumps(report))
    print(f"classification/prompt: {lat['answer_over_prompt']:.2f}x")


if __name__ == "__main__":
    main()
