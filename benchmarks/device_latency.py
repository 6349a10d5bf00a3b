"""Device latency of a bundle's answers against what the model costs without any constraint.

For each input, interleaved in one run on one loaded model (so host noise hits every mode
alike), every mode starting from an empty context (no prefix reuse, so all pay the same
prompt):
  prompt      prompt evaluation alone (one llama.cpp pass, what any answer pays first)
  free        llama-cpp-python generating as many tokens as the runtime's answer has,
              unconstrained (`Llama.generate`, greedy): the "prompt + answer at free speed" floor
  stepwise    the runtime's schema decoder, one token per pass (no forced batching, no speculation)
  forced      ... with forced tokens appended in one pass
  runtime     ... as the bundle ships it (its generation.json `decoding`): what the device serves
  specK       ... with prompt-lookup speculation, K drafted tokens per pass (`--draft-max K ...`)
  refK        the decoder with speculation off but specK's pass shape: specK's answers must be
              byte-identical to it (checked, counted)
  old         llama.cpp's GBNF grammar sampler with a Python softmax per token (the previous
              runtime path; `--skip-old` leaves it out, it is slow)
Then the runtime with prefix reuse, as `serve` runs it.

    python benchmarks/device_latency.py BUNDLE [--data FILE] [--n N] [--draft-max K ...] [--skip-old]

The last line reads `constrained/free: X.XXx` (the runtime's p50 over the free floor's p50).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from edge_runtime.bench import _percentile, bench_inputs
from edge_runtime.bundle import load_bundle
from edge_runtime.engines.decoding import DecodeSettings, DecodeStats
from edge_runtime.engines.llamacpp import LlamaCppPredictor, load_llama


def _fresh(llm) -> None:
    llm.reset()
    llm._ctx.kv_cache_seq_rm(0, 0, -1)


def time_prompt(llm, tokens: list[int]) -> float:
    _fresh(llm)
    t = time.perf_counter()
    llm.eval(tokens)
    return time.perf_counter() - t


def time_free(llm, tokens: list[int], n: int) -> float:
    """Prompt, then n greedy tokens with no constraint (llama-cpp-python's own loop)."""
    _fresh(llm)
    t = time.perf_counter()
    for i, _ in enumerate(llm.generate(tokens, temp=0.0, reset=False)):
        if i + 1 >= n:
            break
    return time.perf_counter() - t


def pass_shapes(llm, tokens: list[int], shapes=(1, 4, 9), steps: int = 24) -> dict[str, Any]:
    """What one forward pass costs by its row count (every row with logits, as when verifying a
    draft), and how far apart llama.cpp's logits for the same tokens are between passes of one
    row and of eight: why speculative passes keep one fixed shape."""
    import numpy as np

    n_vocab, prefix = llm.n_vocab(), tokens[:-steps]
    seq = tokens[-steps:]

    def run(rows: int) -> tuple[np.ndarray, float]:
        _fresh(llm)
        llm.eval(prefix)
        n, out, t = llm.n_tokens, [], time.perf_counter()
        batch = llm._batch.batch
        for i in range(0, steps, rows):
            chunk = seq[i: i + rows]
            batch.n_tokens = len(chunk)
            for j, tok in enumerate(chunk):
                batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = tok, n + j, 1, True
                batch.seq_id[j][0] = 0
            llm._ctx.decode(llm._batch)
            out += [np.ctypeslib.as_array(llm._ctx.get_logits_ith(j), shape=(n_vocab,)).copy() for j in range(len(chunk))]
            n += len(chunk)
        return np.array(out), (time.perf_counter() - t) / -(-steps // rows)

    one, _ = run(1)
    eight, _ = run(8)
    report = {"max_logit_gap_1_vs_8_rows": round(float(np.abs(one - eight).max()), 4)}
    for rows in shapes:
        report[f"pass_ms_{rows}_rows"] = round(run(rows)[1] * 1000, 1)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--data", help="JSONL of task inputs (default: the bundle's task over data/sroie/receipts.jsonl)")
    ap.add_argument("--n", type=int, default=10, help="inputs to time")
    ap.add_argument("--draft-max", type=int, nargs="*", default=[],
                    help="also time the runtime with these draft lengths (speculation on)")
    ap.add_argument("--skip-old", action="store_true", help="leave out llama.cpp's grammar sampler (slow)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    bundle = load_bundle(args.bundle)
    task, gen = bundle.task, bundle.generation
    llm = load_llama(bundle.model_path, n_ctx=int(gen.get("n_ctx", 2048)),
                     **({"lora_path": str(bundle.adapter_path)} if bundle.adapter_path else {}))
    shipped = DecodeSettings.for_task(task.kind, gen.get("decoding"))

    def runtime(settings: DecodeSettings, prefix_reuse: bool = False, decoder: str = "schema") -> LlamaCppPredictor:
        return LlamaCppPredictor(bundle.model_path, task, llm=llm, max_new_tokens=int(gen.get("max_new_tokens", 160)),
                                 prefix_reuse=prefix_reuse, decoder=decoder, decoding=settings, grammar_text=bundle.grammar)

    def variant(**kw) -> DecodeSettings:
        return DecodeSettings(**{**shipped.to_dict(), **kw})

    modes: dict[str, LlamaCppPredictor] = {
        "stepwise": runtime(variant(speculate=False, forced_batch=False)),
        "forced": runtime(variant(speculate=False)),
        "runtime": runtime(shipped),
    }
    drafts = sorted(set(args.draft_max) | ({shipped.draft_max} if shipped.speculate else set()))
    for k in drafts:  # speculation, and the reference it must reproduce: same pass shape, no drafts
        modes[f"spec{k}"] = runtime(variant(speculate=True, draft_max=k))
        modes[f"ref{k}"] = runtime(variant(speculate=False, fixed_shape=True, draft_max=k))
    if not args.skip_old:
        modes["old"] = runtime(shipped, decoder="llama-grammar")
    served = runtime(shipped, prefix_reuse=True)

    inputs = bench_inputs(task, args.n, args.data)
    times: dict[str, list[float]] = {m: [] for m in ("prompt", "free", *modes, "served")}
    stats = {m: DecodeStats() for m in modes}
    tokens_out, valid, n_prompt = [], {m: 0 for m in modes}, []
    identical = {k: 0 for k in drafts}
    runtime_pred = modes["runtime"]
    runtime_pred.predict(inputs[0])  # warm-up (llguidance's tokenizer, first-call allocations)
    for i, ex in enumerate(inputs):
        prompt_tokens = llm.tokenize(task.render_prompt(ex).encode("utf-8"), add_bos=True, special=False)
        n_prompt.append(len(prompt_tokens))
        times["prompt"].append(time_prompt(llm, prompt_tokens))
        answers = {}
        for name, pred in modes.items():
            p = pred.predict(ex)
            times[name].append(p.latency_s)
            answers[name] = p.raw
            valid[name] += p.valid
            if "decode" in p.extra:
                stats[name].add(DecodeStats(**{k: v for k, v in p.extra["decode"].items() if k != "acceptance"}))
            if name == "runtime":
                tokens_out.append(p.completion_tokens)
        for k in drafts:
            identical[k] += answers[f"spec{k}"] == answers[f"ref{k}"]
        times["free"].append(time_free(llm, prompt_tokens, tokens_out[-1]))
        _fresh(llm)
        times["served"].append(served.predict(ex).latency_s)
        print(f"  {i + 1}/{len(inputs)}: prompt {n_prompt[-1]} tok, answer {tokens_out[-1]} tok, "
              f"runtime {times['runtime'][-1]:.2f}s, free {times['free'][-1]:.2f}s", flush=True)

    p50 = {m: statistics.median(v) for m, v in times.items()}
    p95 = {m: _percentile(v, 0.95) for m, v in times.items()}
    rt = stats["runtime"]
    total = rt.forced + rt.sampled + rt.copied
    report: dict[str, Any] = {
        "bundle": str(bundle.root), "task": task.kind, "inputs": len(inputs),
        "prompt_tokens_p50": statistics.median(n_prompt), "answer_tokens_p50": statistics.median(tokens_out),
        "settings": shipped.to_dict(),
        "p50_s": {m: round(v, 3) for m, v in p50.items()}, "p95_s": {m: round(v, 3) for m, v in p95.items()},
        "valid": valid,
        "runtime_tokens": {"forced": rt.forced, "copied": rt.copied, "sampled": rt.sampled,
                           "forced_share": round(rt.forced / total, 3) if total else 0,
                           "copied_share": round(rt.copied / total, 3) if total else 0,
                           "passes_per_answer": round(rt.forward_passes / len(inputs), 1),
                           "full_mask_steps": rt.masked_steps,
                           "mask_share": round(rt.mask_s / sum(times["runtime"]), 4),
                           "confidence_share": round(rt.prob_s / sum(times["runtime"]), 4)},
    }
    report["speculation"] = {
        f"draft{k}": {"acceptance": round(stats[f"spec{k}"].acceptance, 3),
                      "copied_share": round(stats[f"spec{k}"].copied / max(1, sum(tokens_out)), 3),
                      "passes_per_answer": round(stats[f"spec{k}"].forward_passes / len(inputs), 1),
                      "p50_over_free": round(p50[f"spec{k}"] / p50["free"], 3),
                      "identical_to_reference": f"{identical[k]}/{len(inputs)}"} for k in drafts}
    ratios = {f"{m}/free": round(p50[m] / p50["free"], 3) for m in (*modes, "served")}
    ratios.update({f"{m}/prompt": round(p50[m] / p50["prompt"], 3) for m in ("runtime", "served")})
    report["ratios_p50"] = ratios
    longest = max(inputs, key=lambda ex: len(task.render_prompt(ex)))
    report["pass_shapes"] = pass_shapes(llm, llm.tokenize(task.render_prompt(longest).encode("utf-8"), add_bos=True, special=False))
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    llm.close()
    print(f"constrained/free: {p50['runtime'] / p50['free']:.2f}x")


if __name__ == "__main__":
    main()
