"""`train_retriever`: the student's body as a query/entry embedder for a faq task.

For `student.head: retriever`. The body (LoRA) embeds a query and an FAQ entry's question by
the last token's final hidden state (what llama.cpp's last-token pooling returns on the
device). It is trained with InfoNCE: each teacher-labelled query against its entry, the other
entries of the batch (in-batch negatives, each entry once, so two queries of one entry are
never each other's negative) and hard negatives, BM25's best wrong entries for that query
(retrieved with the query itself left out of the index).

On the validation split only: the weight of the dense ranking in the fusion with BM25
(`edge_runtime.retriever.fuse`) is chosen from a grid, and the abstention probability is
fitted (`calibration.fit_logistic`) on the answerable validation queries and on the same
queries with their own entry removed from the knowledge base (a query no entry answers),
plus any "none" rows, weighted by the recipe's expected unanswerable rate.

Outputs: `adapter/`, `merged/` (an ordinary causal-LM checkpoint for GGUF conversion),
`retriever.npz` (`edge_runtime.retriever`) and `train_metrics.json`.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.layout import ADAPTER_DIR, MERGED_DIR
from edge_runtime.retriever import RETRIEVER_FILE, RetrieverHead, bm25_scores, features, fuse
from edge_runtime.task import NO_ANSWER

WEIGHT_GRID = (0.5, 0.25, 0.75, 0.0, 1.0)  # ties go to the earlier (balanced) weight


class RetrieverDataError(ValueError):
    """Rows a retriever cannot train on; the message names the problem and the fix."""


def split_rows(task, rows: list[dict], kb, val_fraction: float, seed: int):
    """(train, val_answerable, val_none) as (query, entry index or None) pairs; fixed seed."""
    index = {faq_id: i for i, faq_id in enumerate(kb.ids)}
    answerable, none = [], []
    for row in rows:
        faq_id = (row.get("answer") or {}).get("faq_id")
        query = task.input_text(row).strip()
        if not query:
            continue
        if faq_id == NO_ANSWER:
            none.append((query, None))
        elif faq_id in index:
            answerable.append((query, index[faq_id]))
        else:
            raise RetrieverDataError(f"row {row.get('id', '?')}: faq_id {faq_id!r} is not in the knowledge base; "
                                     f"re-run curate (it drops invalid answers)")
    if not answerable:
        raise RetrieverDataError("no training row names a FAQ entry: a retriever learns from query -> entry pairs")
    order = list(range(len(answerable)))
    random.Random(seed).shuffle(order)
    n_val = int(round(len(answerable) * val_fraction)) if len(answerable) >= 10 else 0
    return [answerable[i] for i in order[n_val:]], [answerable[i] for i in order[:n_val]], none


def hard_negatives(kb, query: str, gold: int, n: int) -> list[int]:
    """BM25's best `n` wrong entries for `query`, the query itself left out of the index."""
    scores = kb.scores(query, held_out=True)
    return [int(i) for i in np.argsort(-scores, kind="stable")[: n + 1] if int(i) != gold and scores[i] > 0][:n]


def embed(model, tokenizer, texts: list[str], batch: int = 32):
    """Unit-length last-token hidden states of `texts` (gradients flow when the model trains)."""
    import torch

    out = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i: i + batch], padding=True, return_tensors="pt").to(model.device)
        hidden = model(**enc).last_hidden_state
        last = enc["attention_mask"].sum(dim=1) - 1  # right padding: the last real token
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros((0, model.config.hidden_size))


def choose_weight(dense: np.ndarray, bm25: np.ndarray, gold: list[int], k: int) -> tuple[float, dict[str, float]]:
    """The dense weight of the fusion with the best validation recall@1, and each weight's figure."""
    figures = {}
    for w in WEIGHT_GRID:
        hits = [int(np.argmax(fuse(d, b, w, k))) == g for d, b, g in zip(dense, bm25, gold)]
        figures[str(w)] = float(np.mean(hits)) if hits else 0.0
    best = max(WEIGHT_GRID, key=lambda w: figures[str(w)])  # max keeps the first of equals
    return best, figures


def abstention_rows(dense: np.ndarray, bm25: np.ndarray, gold: list[int | None], w: float, k: int):
    """(features, right) for each validation query as served, and for each answerable one again
    with its own entry removed (then no answer is right)."""
    x, y, unanswerable = [], [], []
    for d, b, g in zip(dense, bm25, gold):
        fused = fuse(d, b, w, k)
        choice = int(np.argmax(fused))
        x.append(features(d, choice))
        y.append(g is not None and choice == g)
        unanswerable.append(g is None)
        if g is not None and len(d) > 2:
            keep = np.arange(len(d)) != g
            dk, fk = d[keep], fuse(d[keep], b[keep], w, k)
            x.append(features(dk, int(np.argmax(fk))))
            y.append(False)
            unanswerable.append(True)
    return np.array(x), np.array(y, dtype=bool), np.array(unanswerable, dtype=bool)


def fit_abstention(x: np.ndarray, right: np.ndarray, unanswerable: np.ndarray, rate: float) -> np.ndarray:
    """Logistic weights for P(answer right | features); the unanswerable rows weigh `rate` in all,
    the answerable (1 - rate), so p < 0.5 is where abstaining is the better bet at that rate."""
    from distill.train.calibration import fit_logistic

    if not unanswerable.any() or unanswerable.all() or right.all() or not right.any():
        return np.array([0.0, 0.0, 60.0])  # nothing to separate: never abstain
    weights = np.where(unanswerable, rate / unanswerable.sum(), (1 - rate) / (~unanswerable).sum())
    return fit_logistic(x, right.astype(float), weights)


def _validate(model, tokenizer, head: RetrieverHead, kb, val: list[tuple[str, int | None]], rate: float):
    """Fit the fusion weight and abstention on `val`; return (head, figures)."""
    import torch

    with torch.no_grad():
        entries = embed(model, tokenizer, [head.entry_text(kb.get(i)) for i in kb.ids]).cpu().numpy()
        head = head.with_entries(kb.ids, entries)
        if not val:
            return head, {"val_queries": 0}
        queries = embed(model, tokenizer, [head.query_text(q) for q, _ in val]).cpu().numpy()
    dense = queries @ head.entries.T
    bm25 = np.stack([bm25_scores(kb, q, kb.ids, held_out=True) for q, _ in val])
    gold = [g for _, g in val]
    answerable = [i for i, g in enumerate(gold) if g is not None]
    w, by_weight = choose_weight(dense[answerable], bm25[answerable], [gold[i] for i in answerable], head.rrf_k)
    x, right, unanswerable = abstention_rows(dense, bm25, gold, w, head.rrf_k)
    head.dense_weight, head.calibration = w, fit_abstention(x, right, unanswerable, rate)
    p = 1 / (1 + np.exp(-np.clip(x @ head.calibration, -60, 60)))
    abstain = p < head.threshold
    return head, {
        "val_queries": len(val), "val_recall1_by_dense_weight": by_weight, "dense_weight": w,
        "val_recall1_bm25": by_weight["0.0"], "val_recall1_dense": by_weight["1.0"], "val_recall1_fused": by_weight[str(w)],
        "val_false_abstention": float(abstain[~unanswerable].mean()) if (~unanswerable).any() else None,
        "val_abstention_unanswerable": float(abstain[unanswerable].mean()) if unanswerable.any() else None,
        "unanswerable_rate": rate,
    }


def train_retriever(student, task, rows: list[dict], out_dir: Path) -> dict[str, Any]:
    """Train the LoRA embedder on `rows`; write adapter/, merged/, retriever.npz, train_metrics.json."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup, set_seed

    from distill.models.resolve import resolve
    from distill.peak_memory import PeakMemory, rss_bytes
    from distill.progress import console
    from distill.train.classifier import save_body_as_causal_lm
    from distill.train.memory import device_name
    from distill.train.student import learning_rate

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tr, cfg, device = student.training, student.retriever, device_name()
    if student.method != "lora":
        raise ValueError(f"student.head: retriever trains with student.method: lora (got {student.method!r})")
    kb = task.knowledge()
    train, val_answerable, val_none = split_rows(task, rows, kb, tr.val_fraction, tr.seed)
    resolved = resolve(student.model)
    tokenizer = AutoTokenizer.from_pretrained(resolved.hf_path)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    set_seed(tr.seed)
    rng = random.Random(tr.seed)
    negatives = [hard_negatives(kb, q, g, cfg.hard_negatives) for q, g in train]
    head = RetrieverHead(ids=kb.ids, entries=np.zeros((len(kb), 1)), rrf_k=cfg.rrf_k)
    lr = learning_rate(student, resolved.preset)
    steps_per_epoch = math.ceil(len(train) / tr.batch_size)
    total = tr.max_steps or max(1, math.ceil(steps_per_epoch * tr.epochs))
    with PeakMemory(device, baseline=rss_bytes()) as peak:
        model = AutoModel.from_pretrained(resolved.hf_path, dtype=torch.float32, attn_implementation="sdpa")
        model = get_peft_model(model, LoraConfig(r=student.lora.r, lora_alpha=student.lora.alpha,
                                                 lora_dropout=student.lora.dropout,
                                                 target_modules=student.lora.target_modules)).to(device)
        optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        sched = get_linear_schedule_with_warmup(optim, int(total * tr.warmup_ratio), total)
        model.train()
        losses, step, t0 = [], 0, time.perf_counter()
        while step < total:
            order = list(range(len(train)))
            rng.shuffle(order)
            for start in range(0, len(order), tr.batch_size):
                if step >= total:
                    break
                batch = order[start: start + tr.batch_size]
                cand = list(dict.fromkeys([train[i][1] for i in batch]
                                          + [rng.choice(negatives[i]) for i in batch if negatives[i]]))
                q = embed(model, tokenizer, [head.query_text(train[i][0]) for i in batch])
                e = embed(model, tokenizer, [head.entry_text(kb.get(kb.ids[c])) for c in cand])
                target = torch.tensor([cand.index(train[i][1]) for i in batch], device=q.device)
                loss = torch.nn.functional.cross_entropy(q @ e.T / cfg.temperature, target)
                loss.backward()
                optim.step()
                sched.step()
                optim.zero_grad()
                losses.append(float(loss.detach()))
                step += 1
                if step % 10 == 0 or step == total:
                    console.log(f"train retriever: step {step}/{total}, loss {np.mean(losses[-10:]):.3f}")
        seconds = time.perf_counter() - t0
        model.save_pretrained(out_dir / ADAPTER_DIR)
        tokenizer.save_pretrained(out_dir / ADAPTER_DIR)
        model.eval()
        merged = model.merge_and_unload()
        head, figures = _validate(merged, tokenizer, head, kb, val_answerable + val_none, cfg.unanswerable_rate)
        head.save(out_dir / RETRIEVER_FILE)
        save_body_as_causal_lm(merged, resolved.hf_path, out_dir / MERGED_DIR, tokenizer)
    metrics = {
        "head": str(out_dir / RETRIEVER_FILE), "adapter_dir": str(out_dir / ADAPTER_DIR),
        "merged_dir": str(out_dir / MERGED_DIR), "method": student.method, "student_head": "retriever", "device": device, "base_model": resolved.hf_path, "train_rows": len(train),
        "val_rows": len(val_answerable), "val_none_rows": len(val_none), "steps": step,
        "train_loss": float(np.mean(losses[-max(1, steps_per_epoch):])) if losses else None,
        "first_loss": losses[0] if losses else None, "train_seconds": seconds, "learning_rate": lr,
        "pooling": head.pooling, "hard_negatives": cfg.hard_negatives, "temperature": cfg.temperature, **figures,
        "duration_s": time.perf_counter() - started, "peak_memory_bytes": peak.peak_bytes,
        "peak_memory_method": peak.method, "template": "retriever-input",
    }
    (out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics
