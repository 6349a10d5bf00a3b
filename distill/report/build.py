"""Gather a run directory's evaluations into one report model, and write it as Markdown.

Reads what the stages wrote: `eval/metrics.json` and `quantize/eval/metrics.json` (the
format `evaluate_predictors` writes), each predictor's `predictions.jsonl`, and every
stage's `record.json`. The cost analysis is redone here across all predictors, because
the teacher and the quantized models are evaluated in different stages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.eval import cost as costs
from distill.eval.machine import describe_line
from edge_runtime.layout import read_jsonl

EVAL_DIRS = ("eval", "quantize/eval")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path) if path.is_file() else []


def collect(run_dir: Path) -> dict[str, Any]:
    """Everything the report shows about one run, as plain data."""
    run_dir = Path(run_dir)
    dirs = [run_dir / d for d in EVAL_DIRS if (run_dir / d / "metrics.json").is_file()]
    if not dirs and (run_dir / "metrics.json").is_file() and "predictors" in json.loads((run_dir / "metrics.json").read_text()):
        dirs = [run_dir]  # an eval output directory itself (`distill eval --out DIR`)
    if not dirs:
        raise FileNotFoundError(
            f"{run_dir} has no evaluation results (eval/metrics.json or quantize/eval/metrics.json); "
            f"run `distill run RECIPE` or `distill eval RECIPE --out DIR` first"
        )
    predictors: dict[str, dict[str, Any]] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    meta: dict[str, Any] = {}
    for d in dirs:
        doc = json.loads((d / "metrics.json").read_text())
        meta = meta or doc
        for name, full in doc["predictors"].items():
            key = name if name not in predictors else f"{name} ({d.relative_to(run_dir)})"
            predictors[key] = full
            examples[key] = _read_jsonl(d / name / "predictions.jsonl")
    records = {}
    for rec in sorted(run_dir.glob("*/record.json")):
        try:
            records[rec.parent.name] = json.loads(rec.read_text())
        except json.JSONDecodeError:
            continue
    model = {
        "run_dir": str(run_dir), "name": run_dir.name, "task": meta.get("task", {}), "n": meta.get("n"),
        "machine": meta.get("machine", {}), "assumptions": meta.get("assumptions", {}),
        "predictors": predictors, "examples": examples, "records": records,
    }
    model["economics"] = economics(model)
    return model


def economics(model: dict[str, Any]) -> dict[str, Any]:
    """Monthly bill, saving, break-even and hybrid curves across the run's predictors."""
    a = model["assumptions"]
    rpd = a.get("requests_per_day", 100_000)
    preds = model["predictors"]
    monthly = {name: costs.monthly(p["cost"], rpd) for name, p in preds.items() if p.get("cost")}
    out: dict[str, Any] = {"requests_per_day": rpd, "monthly": monthly, "break_even": {}, "hybrid": {},
                           "one_time_usd": None, "teacher_quality": None}
    teacher = preds.get("teacher")
    if not teacher or not teacher.get("cost"):
        return out
    teach = model["records"].get("teach", {}).get("outputs", {})
    paid = teach.get("cost_usd") or 0.0
    labelled = teach.get("labelled") or 0
    t_req = teacher["cost"].get("usd_per_request") or 0.0
    one_time = paid if paid > 0 else labelled * t_req  # what labelling cost, or would have cost
    out["one_time_usd"], out["one_time_basis"] = one_time, ("billed" if paid > 0 else f"{labelled} rows at the teacher's price")
    if not model["records"].get("teach"):
        out["one_time_usd"] = None
    t_rows = {r["id"]: r for r in model["examples"].get("teacher", [])}
    has_gold = any(r.get("gold") is not None for r in t_rows.values())
    out["teacher_quality"] = teacher.get("headline") if has_gold else 1.0
    teacher_scores = {i: (r.get("score") if has_gold else 1.0) for i, r in t_rows.items()}
    for name, p in preds.items():
        if name == "teacher" or not p.get("cost"):
            continue
        out["break_even"][name] = costs.break_even(p["cost"], teacher["cost"], rpd, out["one_time_usd"])
        if p["cost"].get("hosting") != "self-hosted":
            continue
        rows = [{"id": r["id"], "score": r.get("score") if has_gold else r.get("agreement"),
                 "confidence": r.get("hybrid_confidence", r.get("confidence")), "valid": r.get("answer") is not None} for r in model["examples"].get(name, [])]
        out["hybrid"][name] = costs.hybrid(rows, teacher_scores, p["cost"], teacher["cost"],
                                           list(a.get("hybrid_thresholds") or [0.5]), rpd)
    return out


# ---------------------------------------------------------------------------- formatting


def fmt(v: Any, kind: str = "f") -> str:
    if v is None:
        return "-"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "usd":
        return f"${v:,.4f}" if abs(v) < 1 else f"${v:,.2f}"
    if kind == "s":
        return f"{v:.2f} s"
    if kind == "bytes":
        return f"{v / 2**20:.0f} MB" if v < 2**30 else f"{v / 2**30:.2f} GB"
    if kind == "int":
        return f"{v:,.0f}"
    return f"{v:.3f}"


def with_ci(v: float | None, ci: list[float] | None) -> str:
    return fmt(v) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and v is not None else "")


def overview_rows(model: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["predictor", "headline (95% CI)", "exact match", "valid JSON", "agreement w/ teacher",
            "p50 latency", "p95 latency", "gen tok/s", "size", "memory added", "$ / 1k requests"]
    rows = []
    for name, p in model["predictors"].items():
        rows.append([name, with_ci(p.get("headline"), p.get("headline_ci")), fmt(p.get("exact_match")),
                     fmt(p.get("json_validity")), with_ci(p.get("agreement_with_teacher"), p.get("agreement_ci")),
                     fmt(p.get("p50_latency_s"), "s"), fmt(p.get("p95_latency_s"), "s"),
                     fmt(p.get("generation_tokens_per_s"), "f"), fmt(p.get("size_bytes"), "bytes"),
                     fmt(p.get("peak_rss_bytes"), "bytes"), fmt(p.get("cost_per_1k_usd"), "usd")])
    return head, rows


def detail_tables(model: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per-field (extraction), per-class (classification) or retrieval (faq) tables."""
    kind = model["task"].get("kind")
    tables = []
    preds = {n: p for n, p in model["predictors"].items() if p.get("metrics")}
    if kind == "extraction" and preds:
        fields = list(next(iter(preds.values()))["metrics"]["fields"])
        head = ["predictor"] + [f"{f} acc / F1" for f in fields] + ["micro F1", "hallucination"]
        rows = [[n] + [f"{fmt(p['metrics']['fields'][f]['accuracy'])} / {fmt(p['metrics']['fields'][f]['f1'])}" for f in fields]
                + [fmt(p["metrics"].get("f1")), fmt(p["metrics"].get("hallucination_rate"), "pct")] for n, p in preds.items()]
        tables.append(("per field (after the task's normalisation)", head, rows))
    elif kind == "classification" and preds:
        head = ["predictor", "accuracy", "macro F1", "ECE", "labels outside the set"]
        rows = [[n, fmt(p["metrics"]["accuracy"]), fmt(p["metrics"]["macro_f1"]), fmt(p["metrics"].get("ece")),
                 ", ".join(p["metrics"].get("gold_labels_outside_set") or []) or "-"] for n, p in preds.items()]
        tables.append(("classification", head, rows))
        main = main_predictor(model)
        if main and main in preds:
            pc = preds[main]["metrics"]["per_class"]
            worst = sorted(pc.items(), key=lambda kv: (kv[1]["f1"] or 0, -kv[1]["support"]))[:15]
            tables.append((f"weakest classes of {main}", ["class", "precision", "recall", "F1", "support"],
                           [[c, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), str(v["support"])] for c, v in worst]))
    elif kind == "faq" and preds:
        ks = sorted({k for p in preds.values() for k in (p["metrics"].get("recall_at_k") or {})}, key=int)
        head = ["predictor", "top-1"] + [f"recall@{k}" for k in ks] + ["no-answer precision", "no-answer recall"]
        rows = [[n, fmt(p["metrics"]["top1"])] + [fmt((p["metrics"].get("recall_at_k") or {}).get(k)) for k in ks]
                + [fmt(p["metrics"]["no_answer_precision"]), fmt(p["metrics"]["no_answer_recall"])] for n, p in preds.items()]
        tables.append(("FAQ", head, rows))
    return tables


def main_predictor(model: dict[str, Any]) -> str | None:
    """The predictor the report focuses on: the shipped quantized model, else the student."""
    names = [n for n in model["predictors"] if n != "teacher"]
    for prefix in ("gguf-", "bundle-", "student", "hf-"):
        for n in names:
            if n.startswith(prefix):
                return n
    return names[0] if names else None


def cost_tables(model: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    eco, a = model["economics"], model["assumptions"]
    rpd = eco["requests_per_day"]
    tables = []
    rows = []
    for name, m in eco["monthly"].items():
        p = model["predictors"][name]
        be = eco["break_even"].get(name, {})
        rows.append([name, p.get("hosting", "-"), fmt(p.get("cost_per_1k_usd"), "usd"), fmt(m.get("usd_per_month"), "usd"),
                     str(m.get("devices") or "-"), fmt(be.get("saving_usd_per_month"), "usd"), fmt(be.get("saving_fraction"), "pct"),
                     fmt(be.get("break_even_requests_per_day"), "int"),
                     f"{be['payback_months']:.2f}" if be.get("payback_months") is not None else "-",
                     p.get("cost_basis", "")])
    tables.append((f"monthly cost at {rpd:,} requests a day", ["predictor", "hosting", "$ / 1k", "$ / month", "devices",
                   "saving / month", "saving", "break-even requests/day", "payback (months)", "basis"], rows))
    for name, pts in eco["hybrid"].items():
        if pts:
            tables.append((f"hybrid: {name} answers, below the threshold the teacher does",
                           ["threshold", "escalated", "quality", "$ / 1k", "$ / month"],
                           [[f"{p['threshold']:.2f}", fmt(p["escalation_rate"], "pct"), fmt(p["quality"]),
                             fmt(p["cost_per_1k_usd"], "usd"), fmt(p["usd_per_month"], "usd")] for p in pts]))
    return tables


def assumption_lines(model: dict[str, Any]) -> list[str]:
    a, eco = model["assumptions"], model["economics"]
    lines = [
        f"Self-hosted price: ${a.get('hardware_usd_per_hour')}/hour ({a.get('hardware_source')}); one request at a time, "
        f"so cost per request = hourly price x measured seconds per request.",
        f"Teacher price: ${a.get('teacher_price_input_per_m')}/M prompt tokens, ${a.get('teacher_price_output_per_m')}/M "
        f"completion tokens ({a.get('teacher_price_source')}). For a `dataset` teacher, tokens are estimated at 4 characters each.",
        f"Volume: {a.get('requests_per_day', 0):,} requests a day, 30-day months; devices are always on (730 h/month).",
    ]
    if eco.get("one_time_usd") is not None:
        lines.append(f"One-time distillation cost (labelling): {fmt(eco['one_time_usd'], 'usd')} ({eco.get('one_time_basis')}).")
    lines.append("Memory added: the resident memory a predictor added to the evaluating process while it loaded "
                 "and ran (its peak minus the process's memory just before it loaded; predictors run one after "
                 "another in one process, so earlier ones are not charged to it).")
    lines.append("Hybrid confidence: the model's token probabilities where it has them; for llama.cpp extraction, "
                 "the share of answer values found in the input text; an invalid answer always goes to the teacher.")
    return [l for l in lines if l]


def disagreement_rows(model: dict[str, Any], name: str, limit: int = 8) -> list[list[str]]:
    rows = []
    for r in model["examples"].get(name, []):
        if r.get("agreement", 1.0) >= 1.0 or r.get("teacher") is None:
            continue
        ans, teach, gold = r.get("answer"), r.get("teacher") or {}, r.get("gold") or {}
        if ans is None:
            raw = " ".join(str(r.get("raw", "")).split())
            rows.append([r["id"], "(invalid answer)", (raw[:100] + "...") if len(raw) > 100 else raw,
                         "; ".join(r.get("problems") or []), ""])
        else:
            keys = [k for k in teach if str(ans.get(k, "")).strip().upper() != str(teach.get(k, "")).strip().upper()]
            for k in keys[:4]:
                rows.append([r["id"], k, str(ans.get(k, "")), str(teach.get(k, "")), str(gold.get(k, "-")) if gold else "-"])
        if len({x[0] for x in rows}) >= limit:
            break
    return rows


def md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def compare_rows(models: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    names = list(dict.fromkeys(n for m in models for n in m["predictors"]))
    head = ["predictor"] + [f"{m['name']}: headline" for m in models] + [f"{m['name']}: $ / 1k" for m in models]
    rows = [[n] + [with_ci(m["predictors"].get(n, {}).get("headline"), m["predictors"].get(n, {}).get("headline_ci")) for m in models]
            + [fmt(m["predictors"].get(n, {}).get("cost_per_1k_usd"), "usd") for m in models] for n in names]
    return head, rows


def markdown(model: dict[str, Any], others: list[dict[str, Any]]) -> str:
    task = model["task"]
    first = next(iter(model["predictors"].values()), {})
    out = [f"# Evaluation report: {model['name']}", "",
           f"Task `{task.get('name')}` ({task.get('kind')}), {model.get('n')} held-out examples. "
           f"Headline metric: {first.get('headline_name', '')}.", ""]
    if model.get("machine"):
        out += [f"Measured on {describe_line(model['machine'])}.", ""]
    out += ["## Quality, speed and size", "", md_table(*overview_rows(model)), ""]
    for title, head, rows in detail_tables(model):
        out += [f"### {title}", "", md_table(head, rows), ""]
    out += ["## Cost", ""] + [f"- {l}" for l in assumption_lines(model)] + [""]
    for title, head, rows in cost_tables(model):
        out += [f"### {title}", "", md_table(head, rows), ""]
    out += ["## Where they disagree with the teacher", ""]
    for name in model["predictors"]:
        rows = disagreement_rows(model, name)
        if rows:
            n = model["predictors"][name].get("disagreements")
            out += [f"### {name}: {n} of {model['predictors'][name].get('n')} examples differ", "",
                    md_table(["id", "field", name, "teacher", "gold"], rows), ""]
    if others:
        out += ["## Compared runs", "", md_table(*compare_rows([model, *others])), ""]
    stages = [[s, f"{r.get('duration_s', 0):.1f} s", r.get("fingerprint", "")] for s, r in model["records"].items()]
    if stages:
        out += ["## Stages", "", md_table(["stage", "duration", "fingerprint"], stages), ""]
    return "\n".join(out)
