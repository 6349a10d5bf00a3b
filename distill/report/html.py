"""The self-contained HTML report: tables and base64-embedded PNG plots in one file that
opens offline, mails as an attachment and needs no server."""

from __future__ import annotations

import base64
import html
from typing import Any

from distill.report import build, plots

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
.note{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
"""


def _table(head: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    h = "".join(f"<th>{e(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _figure(png: bytes | None, caption: str, key: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img class="plot" data-plot="{key}" alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def make_plots(model: dict[str, Any], others: list[dict[str, Any]]) -> dict[str, tuple[bytes | None, str]]:
    """Every plot the report shows, by key, with its caption."""
    preds = model["predictors"]
    metric = next(iter(preds.values()), {}).get("headline_name", "headline")
    out: dict[str, tuple[bytes | None, str]] = {}
    points = [{"name": n, "cost": p.get("cost_per_1k_usd"), "quality": p.get("headline"), "ci": p.get("headline_ci")}
              for n, p in preds.items()]
    out["quality_vs_cost"] = (plots.quality_vs_cost(points, metric),
                              f"{metric} against cost per 1,000 requests, with 95% bootstrap intervals")
    kind = model["task"].get("kind")
    scored = {n: p for n, p in preds.items() if p.get("metrics")}
    if kind == "extraction" and scored:
        fields = list(next(iter(scored.values()))["metrics"]["fields"])
        series = {n: [p["metrics"]["fields"][f]["accuracy"] for f in fields] for n, p in scored.items()}
        out["breakdown"] = (plots.grouped_bars(fields, series, "accuracy", "accuracy per field"), "accuracy per field")
    elif kind == "classification" and scored:
        main = build.main_predictor(model) or next(iter(scored))
        pc = scored.get(main, next(iter(scored.values())))["metrics"]["per_class"]
        classes = [c for c, _ in sorted(pc.items(), key=lambda kv: -kv[1]["support"])[:20]]
        series = {n: [p["metrics"]["per_class"].get(c, {}).get("f1") for c in classes] for n, p in scored.items()}
        out["breakdown"] = (plots.grouped_bars(classes, series, "F1", "F1 per class (most frequent 20)"), "F1 per class")
        if main in scored:
            cm = scored[main]["metrics"]["confusion"]
            out["confusion"] = (plots.confusion(cm["rows"], cm["columns"], cm["matrix"], f"confusion matrix: {main}"),
                                f"confusion matrix of {main} (rows: reference, columns: predicted)")
    elif kind == "faq" and scored:
        keys = ["top1", "no_answer_precision", "no_answer_recall"]
        series = {n: [p["metrics"].get(k) for k in keys] for n, p in scored.items()}
        out["breakdown"] = (plots.grouped_bars(keys, series, "score", "FAQ metrics"), "FAQ metrics")
    lat = {n: p.get("latencies_s") or [] for n, p in preds.items()}
    out["latency"] = (plots.latency(lat), "latency per request on the machine described above")
    eco = model["economics"]
    out["hybrid"] = (plots.hybrid_curve(eco["hybrid"], eco.get("teacher_quality")),
                     "hybrid setup: quality, share sent to the teacher and cost as the confidence threshold rises")
    if others:
        runs = [model, *others]
        names = list(dict.fromkeys(n for m in runs for n in m["predictors"]))
        series = {m["name"]: [m["predictors"].get(n, {}).get("headline") for n in names] for m in runs}
        out["compare"] = (plots.grouped_bars(names, series, metric, "runs compared"), "the compared runs, predictor by predictor")
    return out


def render(model: dict[str, Any], others: list[dict[str, Any]]) -> str:
    e = html.escape
    figs = {k: _figure(png, cap, k) for k, (png, cap) in make_plots(model, others).items()}
    task = model["task"]
    first = next(iter(model["predictors"].values()), {})
    parts = [f"<h1>Evaluation report: {e(model['name'])}</h1>",
             f"<p>Task <code>{e(str(task.get('name')))}</code> ({e(str(task.get('kind')))}), {model.get('n')} held-out "
             f"examples. Headline metric: {e(first.get('headline_name', ''))}.</p>",
             f"<p class='note'>Measured on {e(build.describe_line(model['machine']))}.</p>" if model.get("machine") else "",
             "<h2>Quality, speed and size</h2>", _table(*build.overview_rows(model)), figs.get("quality_vs_cost", "")]
    for title, head, rows in build.detail_tables(model):
        parts += [f"<h3>{e(title)}</h3>", _table(head, rows)]
    parts += [figs.get("breakdown", ""), figs.get("confusion", ""), figs.get("latency", "")]
    parts += ["<h2>Cost</h2><ul class='note'>" + "".join(f"<li>{e(l)}</li>" for l in build.assumption_lines(model)) + "</ul>"]
    for title, head, rows in build.cost_tables(model):
        parts += [f"<h3>{e(title)}</h3>", _table(head, rows)]
    parts.append(figs.get("hybrid", ""))
    parts.append("<h2>Where they disagree with the teacher</h2>")
    for name, p in model["predictors"].items():
        rows = build.disagreement_rows(model, name)
        if rows:
            parts += [f"<details><summary>{e(name)}: {p.get('disagreements')} of {p.get('n')} examples differ</summary>",
                      _table(["id", "field", name, "teacher", "gold"], rows), "</details>"]
    if others:
        parts += ["<h2>Compared runs</h2>", _table(*build.compare_rows([model, *others])), figs.get("compare", "")]
    stages = [[s, f"{r.get('duration_s', 0):.1f} s", r.get("fingerprint", "")] for s, r in model["records"].items()]
    if stages:
        parts += ["<h2>Stages</h2>", _table(["stage", "duration", "fingerprint"], stages)]
    body = "\n".join(p for p in parts if p)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(model['name'])}: evaluation report</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
