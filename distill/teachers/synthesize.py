"""Synthesis: the teacher writes new, varied task inputs from a few seed examples, so a
user with 20 examples gets 2,000.

Each request shows a few seed inputs and asks for `per_request` new ones, steered by the
next topic, persona and (classification) target label in turn, so the set is spread out
and the classes stay balanced. Requests go through the same engine as labelling (cache,
ledger, budget, rate limits): a re-run pays for nothing twice. New inputs that repeat a
seed or each other are discarded. The rows are then labelled like any other row; the
target label is kept under `synth` so curation can see where it disagreed.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from edge_runtime.task import TaskSpec, extract_json_object

SCHEMA = {
    "type": "object",
    "properties": {"inputs": {"type": "array", "items": {"type": "string"}}},
    "required": ["inputs"],
    "additionalProperties": False,
}


def plan(cfg, task: TaskSpec, seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per request: the seed examples, topic, persona and target label it uses."""
    if not seeds:
        raise ValueError("synthesis needs seed rows: give a few examples in data.path")
    rng = random.Random(cfg.seed)
    n = -(-cfg.count // cfg.per_request)
    out = []
    for j in range(n):
        entry = {
            "index": j,
            "count": min(cfg.per_request, cfg.count - j * cfg.per_request),
            "seeds": [task.input_text(s) for s in rng.sample(seeds, min(cfg.seeds_per_request, len(seeds)))],
            "topic": cfg.topics[j % len(cfg.topics)] if cfg.topics else None,
            "persona": cfg.personas[j % len(cfg.personas)] if cfg.personas else None,
            "label": task.labels[j % len(task.labels)] if task.kind == "classification" and cfg.balance_labels else None,
        }
        out.append(entry)
    return out


def messages_for(task: TaskSpec, entry: dict[str, Any]) -> list[dict[str, str]]:
    """The request for new inputs, in the task's prompt language (edge_runtime/prompt_text.py)."""
    text = task.prompt_strings
    examples = "\n\n".join(text["synth_example"].format(n=i + 1, text=s) for i, s in enumerate(entry["seeds"]))
    asks = [text["synth_count"].format(count=entry["count"])]
    if entry["topic"]:
        asks.append(text["synth_topic"].format(topic=entry["topic"]))
    if entry["persona"]:
        asks.append(text["synth_persona"].format(persona=entry["persona"]))
    if entry["label"]:
        asks.append(text["synth_label"].format(label=entry["label"]))
    task_line = text["synth_task"].format(instructions=task.instructions)
    return [
        {"role": "system", "content": text["synth_system"].format(schema=json.dumps(SCHEMA))},
        {"role": "user", "content": f"{task_line}\n\n{examples}\n\n" + text["sentence_sep"].join(asks)},
    ]


def parse_inputs(text: str) -> list[str]:
    obj = extract_json_object(text)
    items = obj.get("inputs") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        return []
    return [s.strip() for s in items if isinstance(s, str) and s.strip()]


async def synthesize_rows(recipe, seeds: list[dict[str, Any]], labeller) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """New rows (`id` syn-..., the task's input field, `synth`), written through `labeller`'s
    cache, ledger and limits with a backend that asks for inputs instead of answers."""
    from distill.teachers.ledger import BudgetExceeded
    from distill.teachers.openai_teacher import OpenAIBackend, RequestFailed
    from distill.teachers.label import Labeller

    task, cfg = recipe.task, recipe.teacher.synthesize
    from distill.teachers.privacy import wrap_like

    backend = wrap_like(labeller.backend, OpenAIBackend(recipe.teacher, SCHEMA, "inputs"), "synthesize")
    writer = Labeller(task, backend, labeller.ledger, cache=labeller.cache, limiter=labeller.limiter,
                      temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    writer.run_id = labeller.run_id
    as_lines = bool(seeds) and isinstance(seeds[0].get(task.input_field), list)
    seen = {task.input_text(s).strip() for s in seeds}
    stats = {"requests_planned": 0, "failed_requests": 0, "duplicates": 0, "stopped_by_budget": False}

    async def one(entry):
        sampling = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "seed": entry["index"], "synth": 1}
        try:
            comp, _, _ = await writer.fetch(messages_for(task, entry), sampling)
        except BudgetExceeded:
            stats["stopped_by_budget"] = True
            return entry, []
        except RequestFailed:
            stats["failed_requests"] += 1
            return entry, []
        return entry, parse_inputs(comp.text)[: entry["count"]]

    entries = plan(cfg, task, seeds)
    stats["requests_planned"] = len(entries)
    try:
        results = await asyncio.gather(*(one(e) for e in entries))
    finally:
        await backend.aclose()
    rows = []
    for entry, texts in results:
        for i, text in enumerate(texts):
            if text in seen:
                stats["duplicates"] += 1
                continue
            seen.add(text)
            value: Any = text.split("\n") if as_lines else text
            rows.append({"id": f"syn-{entry['index']:05d}-{i:02d}", task.input_field: value,
                         "synth": {k: entry[k] for k in ("topic", "persona", "label") if entry[k]}})
    stats.update(written=len(rows), sent=writer.sent, from_cache=writer.from_cache)
    labeller.sent += writer.sent
    return rows, stats
