"""Compare two `distill run` directories of the same recipe, made by two versions of the code:
every JSON/JSONL file with its timing-derived keys dropped (latencies, costs, timestamps, run
times; PEFT's set-ordered lists sorted), the bytes of every other file (GGUFs, adapters, merged
weights, heads), logs, reports and plots skipped. A refactor must leave nothing that differs.

    python scripts/compare_runs.py RUN_BEFORE RUN_AFTER   # run both with the same --run-dir, then move them apart
"""
import hashlib, json, sys
from pathlib import Path

VOLATILE = {"started_at", "finished_at", "duration_s", "seconds", "train_seconds", "tokens_per_s", "created_at",
            "p50_latency_s", "p95_latency_s", "mean_latency_s", "prompt_tokens_per_s", "generation_tokens_per_s",
            "peak_rss_bytes", "process_peak_rss_bytes", "load_s", "peak_memory_bytes", "cost_per_1k_usd", "cost_basis",
            "samples_per_s", "time", "timestamp", "elapsed_s", "wall_s", "when", "host", "machine", "git", "convert_s", "quantize_s",
            "started", "created", "memory_available_bytes", "cost", "eval_runtime", "eval_samples_per_second",
            "eval_steps_per_second", "train_runtime", "train_samples_per_second", "train_steps_per_second",
            "total_flos", "economics", "requests_per_hour", "usd_per_request", "latency_s", "monthly", "hybrid", "load_seconds"}

def scrub(x):
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if k not in VOLATILE and not k.endswith("_s") and not k.endswith("_at")}
    if isinstance(x, list):
        out = [scrub(v) for v in x]
        return sorted(out) if all(isinstance(v, str) for v in out) else out  # PEFT writes a set's order
    return x

def manifest_files(x):
    """A bundle manifest's file hashes, less eval.json's (its latency figures are timings; its content is compared scrubbed)."""
    if isinstance(x, dict) and isinstance(x.get("files"), dict):
        x = {**x, "files": {k: v for k, v in x["files"].items() if k != "eval.json"}}
    return x

def sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]

a, b = Path(sys.argv[1]), Path(sys.argv[2])
fa = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
fb = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
print("only in", a.name, sorted(map(str, fa - fb))[:20])
print("only in", b.name, sorted(map(str, fb - fa))[:20])
same = diff = 0
for rel in sorted(fa & fb):
    pa, pb = a / rel, b / rel
    if rel.suffix == ".json" and rel.name not in ("tokenizer.json",):
        try:
            ja, jb = scrub(manifest_files(json.loads(pa.read_text()))), scrub(manifest_files(json.loads(pb.read_text())))
        except Exception:
            ja, jb = sha(pa), sha(pb)
        if ja == jb: same += 1
        else:
            diff += 1; print("DIFF json", rel)
            if isinstance(ja, dict) and isinstance(jb, dict):
                for k in sorted(set(ja) | set(jb)):
                    if ja.get(k) != jb.get(k): print("   ", k, str(ja.get(k))[:200], "|", str(jb.get(k))[:200])
    elif rel.suffix == ".jsonl":
        la = [scrub(json.loads(l)) for l in pa.read_text().splitlines() if l.strip()]
        lb = [scrub(json.loads(l)) for l in pb.read_text().splitlines() if l.strip()]
        if la == lb: same += 1
        else: diff += 1; print("DIFF jsonl", rel)
    elif rel.suffix in (".log", ".html", ".md", ".png", ".svg") or "checkpoints" in rel.parts or rel.name in ("trainer_state.json",):
        continue
    else:
        if sha(pa) == sha(pb): same += 1
        else: diff += 1; print("DIFF bytes", rel)
for rel in sorted(fa & fb):
    if rel.suffix in (".gguf", ".safetensors", ".npz"):
        print("  bytes", "same" if sha(a / rel) == sha(b / rel) else "DIFFER", rel)
print(f"{same} files identical (volatile keys dropped), {diff} differ")
