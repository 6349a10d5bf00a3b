"""`edge-runtime bench`: what the runtime costs over llama-cpp-python, and what prefix reuse saves.

1. Generation tokens/s of the task path (schema-constrained decoding + confidence capture)
   against llama-cpp-python generating freely (no grammar) from the same prompt; both start
   from a cached prompt, so the time is generation. Target: at least 95%.
   (benchmarks/device_latency.py breaks the task path down further.)
2. p50/p95 latency of task requests with prefix reuse against the fair baseline, which
   calls `reset()` before each request. Target: at least 1.5x faster p50 with reuse.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from edge_runtime.layout import N_CTX


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q * (len(values) - 1))))
    return values[k]


def bench_inputs(task, n: int, data: str | Path | None = None) -> list[dict[str, Any]]:
    """Task inputs: rows of a JSONL or CSV file (default data/sroie/receipts.jsonl if present)."""
    import csv

    path = Path(data) if data else Path("data/sroie/receipts.jsonl")
    rows: list[dict[str, Any]] = []
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as fh:
            source = csv.DictReader(fh) if path.suffix == ".csv" else (json.loads(line) for line in fh if line.strip())
            for row in source:
                if task.input_field in row:
                    rows.append({task.input_field: row[task.input_field]})
                if len(rows) >= n:
                    break
    i = 0
    while len(rows) < n:  # no data: varied synthetic inputs of receipt length
        rows.append({task.input_field: [f"SHOP {i} SDN BHD", f"NO {i}, JALAN {i}", f"DATE: {i % 28 + 1:02d}/05/2019",
                                        f"ITEM {i} 1 x {i}.50", f"TOTAL: {i}.50", "THANK YOU"]})
        i += 1
    return rows


def run_bench(bundle_path: str | Path, n_requests: int = 10, gen_tokens: int = 64, n_threads: int | None = None,
              data: str | Path | None = None, gpu_layers: int | None = None) -> dict[str, Any]:
    """`gpu_layers`: layers offloaded to the GPU (default: the bundle's profile's)."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines.llamacpp import LlamaCppPredictor, load_llama
    from edge_runtime.profiles import gpu_layers_for

    bundle = load_bundle(bundle_path)
    gpu_layers = gpu_layers_for(bundle.manifest.get("profile"), gpu_layers)
    if bundle.manifest.get("head"):
        return run_head_bench(bundle, n_requests, n_threads, data, gpu_layers)
    task, gen = bundle.task, bundle.generation
    n_ctx = int(gen.get("n_ctx", N_CTX))
    llm = load_llama(bundle.model_path, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=gpu_layers,
                     **({"lora_path": str(bundle.adapter_path)} if bundle.adapter_path else {}))
    inputs = bench_inputs(task, n_requests, data)
    ours = LlamaCppPredictor(bundle.model_path, task, llm=llm, max_new_tokens=gen_tokens, grammar_text=bundle.grammar)
    report: dict[str, Any] = {"bundle": str(bundle.root), "model": bundle.manifest["model"], "requests": n_requests}

    # 1. generation throughput on one cached prompt, alternating raw and ours
    example = inputs[0]
    prompt = task.render_prompt(example)
    raw_rates, our_rates = [], []
    ours.predict(example)  # warm: the whole prompt is now cached
    for _ in range(3):
        t = time.perf_counter()
        out = llm(prompt, max_tokens=gen_tokens, temperature=0.0)
        raw_rates.append(out["usage"]["completion_tokens"] / (time.perf_counter() - t))
        p = ours.predict(example)
        our_rates.append(p.completion_tokens / p.latency_s)
    raw, mine = statistics.median(raw_rates), statistics.median(our_rates)
    report["generation"] = {"raw_llama_cpp_tok_s": round(raw, 2), "edge_runtime_tok_s": round(mine, 2),
                            "ratio": round(mine / raw, 3), "target": 0.95}

    # 2. request latency with and without prefix reuse (same inputs, interleaved)
    base = LlamaCppPredictor(bundle.model_path, task, llm=llm, max_new_tokens=gen_tokens, prefix_reuse=False,
                             grammar_text=bundle.grammar)
    with_reuse, without = [], []
    for ex in inputs:
        without.append(base.predict(ex).latency_s)
        with_reuse.append(ours.predict(ex).latency_s)  # restores the prefix state the baseline wiped
    report["latency"] = {
        "prefix_tokens": len(ours.prefix.tokens),
        "with_reuse_p50_s": round(statistics.median(with_reuse), 3), "with_reuse_p95_s": round(_percentile(with_reuse, 0.95), 3),
        "without_p50_s": round(statistics.median(without), 3), "without_p95_s": round(_percentile(without, 0.95), 3),
        "speedup_p50": round(statistics.median(without) / statistics.median(with_reuse), 3), "target": 1.5,
    }
    llm.close()
    return report


def run_head_bench(bundle, n_requests: int = 10, n_threads: int | None = None,
                   data: str | Path | None = None, gpu_layers: int | None = None) -> dict[str, Any]:
    """A classifier bundle: each answer (one pass over the input + the numpy head) against
    evaluating the same input tokens in an ordinary llama.cpp context (prompt evaluation
    alone, output layer at the last token), interleaved on the same inputs."""
    from edge_runtime.engines.head import LlamaCppHeadPredictor
    from edge_runtime.heads import head_input

    head = LlamaCppHeadPredictor.from_bundle(bundle, n_threads=n_threads, n_gpu_layers=gpu_layers)
    llm = load_llama_like(bundle, n_threads, gpu_layers)
    inputs = bench_inputs(bundle.task, n_requests, data)
    answers, prompts, tokens = [], [], []
    head.predict(inputs[0])  # warm both
    llm.eval(llm.tokenize(head_input(bundle.task, inputs[0]).encode("utf-8"), add_bos=True, special=False))
    for ex in inputs:
        ids = llm.tokenize(head_input(bundle.task, ex).encode("utf-8"), add_bos=True, special=False)
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        prompts.append(time.perf_counter() - t)
        answers.append(head.predict(ex).latency_s)
        tokens.append(len(ids))
    head.close()
    llm.close()
    p50_a, p50_p = statistics.median(answers), statistics.median(prompts)
    return {"bundle": str(bundle.root), "model": bundle.manifest["model"], "requests": len(inputs), "head": "classifier",
            "latency": {"answer_p50_s": round(p50_a, 4), "answer_p95_s": round(_percentile(answers, 0.95), 4),
                        "prompt_eval_p50_s": round(p50_p, 4), "prompt_eval_p95_s": round(_percentile(prompts, 0.95), 4),
                        "input_tokens_p50": statistics.median(tokens), "answer_over_prompt": round(p50_a / p50_p, 3),
                        "target": 1.2}}


def load_llama_like(bundle, n_threads: int | None, gpu_layers: int | None = None):
    """The bundle's model in an ordinary (generative) llama.cpp context."""
    from edge_runtime.engines.llamacpp import load_llama
    from edge_runtime.profiles import gpu_layers_for

    return load_llama(bundle.model_path, n_ctx=int(bundle.generation.get("n_ctx", N_CTX)), n_threads=n_threads,
                      n_gpu_layers=gpu_layers_for(bundle.manifest.get("profile"), gpu_layers),
                      **({"lora_path": str(bundle.adapter_path)} if bundle.adapter_path else {}))
