"""Training examples: the task spec's prompt, the canonical answer, and labels on the answer only.

The prompt and the completion are tokenized separately and concatenated, so the student
is trained on exactly the token ids it sees at inference (the runtime tokenizes the
prompt alone and generates from there). A student with its own chat template gets the
task prompt as a user turn; a base model (gemma-3-270m) gets the task's plain format.
The exact format is written to `template.json` next to every model we save.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distill.train.faq_views import applies, training_views
from edge_runtime.task import TaskSpec

IGNORE = -100
TEMPLATE_FILE = "template.json"


@dataclass(frozen=True)
class PromptFormat:
    """How a prompt is wrapped and how a completion ends; saved as template.json."""

    kind: str  # "chat" (the tokenizer's chat template) or "plain" (the task's template)
    task_template: str  # the TaskSpec template the prompt text comes from
    chat_template: str | None  # the tokenizer's Jinja template when kind == "chat"
    add_bos: bool  # whether the tokenizer adds BOS to the prompt (plain format)
    bos_token: str | None
    eos_token: str
    completion_suffix: str  # the text after the answer JSON that ends a completion
    stop: list[str]  # strings that end generation at inference

    def save(self, directory: Path) -> Path:
        path = Path(directory) / TEMPLATE_FILE
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: Path) -> "PromptFormat":
        return cls(**json.loads((Path(directory) / TEMPLATE_FILE).read_text(encoding="utf-8")))


def prompt_format(tokenizer, task: TaskSpec) -> PromptFormat:
    """The format a student is trained (and must be served) with."""
    eos = tokenizer.eos_token
    if not eos:
        raise ValueError("the student's tokenizer has no eos_token: set one in its tokenizer_config.json")
    chat = getattr(tokenizer, "chat_template", None)
    if chat:
        probe = "<<ANSWER>>"
        prompt = _chat_prompt(tokenizer, "x")
        full = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": probe}], tokenize=False
        )
        if not full.startswith(prompt) or probe not in full:
            raise ValueError(
                "the student's chat template renders the prompt differently with and without the answer; "
                "give a base model or fix the template so the generation prompt is a prefix of the full turn"
            )
        suffix = full[full.index(probe) + len(probe):]
        stop = [s for s in (suffix.strip(), eos) if s]
        return PromptFormat("chat", task.template, chat, False, tokenizer.bos_token, eos, suffix, sorted(set(stop)))
    probe_ids = tokenizer("x")["input_ids"]
    add_bos = bool(probe_ids) and tokenizer.bos_token_id is not None and probe_ids[0] == tokenizer.bos_token_id
    return PromptFormat("plain", task.template, None, add_bos, tokenizer.bos_token, eos, eos, [eos])


def _chat_prompt(tokenizer, text: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


def render_pair(fmt: PromptFormat, tokenizer, task: TaskSpec, row: dict[str, Any], context: str = "") -> tuple[str, str]:
    """(prompt text, completion text) of one training row; `context` as in `TaskSpec.render_prompt`."""
    if "answer" not in row:
        raise KeyError(f"training row {row.get('id', '?')!r} has no `answer`; the curate stage writes rows with one")
    prompt = task.render_prompt(row, context=context)
    if fmt.kind == "chat":
        prompt = _chat_prompt(tokenizer, prompt)
    return prompt, task.render_answer(row["answer"]) + fmt.completion_suffix


def encode_row(fmt: PromptFormat, tokenizer, task: TaskSpec, row: dict[str, Any], context: str = "") -> dict[str, Any]:
    """input_ids and labels (-100 on the prompt) for one row."""
    prompt, completion = render_pair(fmt, tokenizer, task, row, context)
    prompt_ids = tokenizer(prompt, add_special_tokens=fmt.kind == "plain")["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + completion_ids
    return {
        "id": str(row.get("id", "")),
        "input_ids": ids,
        "labels": [IGNORE] * len(prompt_ids) + completion_ids,
        "length": len(ids),
    }


@dataclass
class Encoded:
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    dropped: list[str]  # ids of rows longer than max_seq_len
    format: PromptFormat

    @property
    def answer_tokens(self) -> int:
        return sum(sum(1 for x in r["labels"] if x != IGNORE) for r in self.train)


def encode_rows(tokenizer, task: TaskSpec, rows: list[dict], max_seq_len: int, val_fraction: float, seed: int,
                faq=None) -> Encoded:
    """Tokenize, drop rows that do not fit (never cut an answer), and split train/validation.

    Rows are split before a faq task's extra training views are made (`faq_views.py`), so no
    view of a validation row is trained on."""
    if not rows:
        raise ValueError("no training rows: the curate stage kept none (check its report for why rows were dropped)")
    fmt = prompt_format(tokenizer, task)
    kept, dropped = [], []
    for row in rows:
        val_row, val_ctx = training_views(task, row, faq, seed, train=False)[0]
        ex = encode_row(fmt, tokenizer, task, val_row, val_ctx)
        (dropped.append(ex["id"]) if ex["length"] > max_seq_len else kept.append((row, ex)))
    if not kept:
        longest = max(len(encode_row(fmt, tokenizer, task, r)["input_ids"]) for r in rows)
        raise ValueError(
            f"every training row is longer than student.training.max_seq_len={max_seq_len} tokens "
            f"(longest {longest}); raise max_seq_len"
        )
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    n_val = int(round(len(kept) * val_fraction)) if len(kept) > 1 else 0
    n_val = min(n_val, len(kept) - 1)
    val = [kept[i][1] for i in sorted(order[:n_val])]
    train = []
    for i in sorted(order[n_val:]):
        row, ex = kept[i]
        if faq is None or not applies(task):
            train.append(ex)
            continue
        for view_row, ctx in training_views(task, row, faq, seed):
            view = encode_row(fmt, tokenizer, task, view_row, ctx)
            if view["length"] <= max_seq_len:  # same candidates in another order: same length give or take
                train.append(view)
    return Encoded(train, val, dropped, fmt)
