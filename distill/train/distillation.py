"""Logit distillation from a local teacher that shares the student's tokenizer.

The student learns from the teacher's whole next-token distribution, not only from its
answer text: `loss = alpha * CE + (1 - alpha) * D(teacher, student)`, where D is forward
KL, reverse KL or TRL's generalized Jensen-Shannon divergence (GKD, arXiv 2306.13649).

Both terms are taken at the answer positions only, the same ones the cross-entropy uses,
and both models apply their output layer (and final logit soft-capping) to those rows
alone, as `distill.train.loss.answer_only_loss` does for the student: on Gemma's 262k-word
vocabulary that is most of the cost. The teacher runs under `torch.no_grad()`, frozen.

Why not TRL's own distillation trainers: `trl.DistillationTrainer` (1.16) is an on-policy
trainer with its own data pipeline (prompt/completion ids, left padding, generation) and no
cross-entropy term, and `GKDTrainer` computes full logits for every position. We keep our
SFT pipeline (answer-only labels, resume, early stopping, best checkpoint) and reuse TRL's
divergence itself, `GKDTrainer.generalized_jsd_loss`, on the selected rows.

Logit distillation is only meaningful when id i is the same string for both models. A
teacher whose tokenizer or output width differs is refused (`TokenizerMismatch`) before
any weights are loaded: the loss would otherwise run and be silently wrong.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from distill.train.loss import answer_logits, causal_lm_parts
from distill.train.trainer import AnswerOnlySFTTrainer

BETA_OF = {"forward_kl": 0.0, "reverse_kl": 1.0}  # TRL's GKD: beta 0 = KL(teacher||student), 1 = KL(student||teacher)

WHY = (
    "Why: logit distillation compares the teacher's and the student's probability distributions over the same "
    "token ids, position by position. With a different tokenizer, id 123 is a different string in each model "
    "(and the same text splits into different tokens), so the loss would run but be silently wrong."
)
FIX = (
    "Fix: set student.training.distillation.teacher_model to a teacher of the student's model family with the same "
    "tokenizer (e.g. gemma-3-1b for gemma-3-270m); or remove student.training.distillation and use the bigger model "
    "only to label the data (`teacher.kind: transformers` or `llamacpp`), then train on its answers with plain SFT."
)


class TokenizerMismatch(ValueError):
    """The teacher's tokenizer or output layer differs from the student's: logit distillation is refused."""


def _generalized_jsd():
    """TRL's GKD divergence (trl.experimental.gkd in TRL >= 1.x, trl.GKDTrainer before)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TRL's "experimental API" notice: we pin the behaviour with tests
        try:
            from trl.experimental.gkd import GKDTrainer
        except ImportError:
            from trl import GKDTrainer
    return GKDTrainer.generalized_jsd_loss


def _text_config(cfg):
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def _first_difference(student_vocab: dict[str, int], teacher_vocab: dict[str, int]) -> tuple[int, int | None, str | None, str | None]:
    """(number of ids whose string differs, the first such id, its student string, its teacher string)."""
    s_inv = {i: t for t, i in student_vocab.items()}
    t_inv = {i: t for t, i in teacher_vocab.items()}
    differing = sorted(i for i in s_inv.keys() | t_inv.keys() if s_inv.get(i) != t_inv.get(i))
    if not differing:
        return 0, None, None, None
    first = differing[0]
    return len(differing), first, s_inv.get(first), t_inv.get(first)


def check_same_tokenizer(student_tok, teacher_tok, student_model_cfg, teacher_model_cfg,
                         student_name: str = "the student", teacher_name: str = "the teacher") -> None:
    """Raise TokenizerMismatch (naming why and the fix) unless both models map every id to the same token
    and have output layers of the same width."""
    problems = []
    s_vocab, t_vocab = student_tok.get_vocab(), teacher_tok.get_vocab()
    if len(s_vocab) != len(t_vocab):
        problems.append(f"vocabulary sizes differ: {student_name} has {len(s_vocab)} tokens, {teacher_name} {len(t_vocab)}")
    if s_vocab != t_vocab:
        n, first, s_tok, t_tok = _first_difference(s_vocab, t_vocab)
        if n:
            problems.append(f"{n} token ids map to different strings, e.g. id {first} is {s_tok!r} for {student_name} "
                            f"and {t_tok!r} for {teacher_name}")
    for name in ("bos_token", "eos_token", "pad_token"):
        s, t = getattr(student_tok, name, None), getattr(teacher_tok, name, None)
        s_id, t_id = getattr(student_tok, f"{name}_id", None), getattr(teacher_tok, f"{name}_id", None)
        if (s, s_id) != (t, t_id):
            problems.append(f"{name} differs: {s!r} (id {s_id}) for {student_name}, {t!r} (id {t_id}) for {teacher_name}")
    s_width = getattr(_text_config(student_model_cfg), "vocab_size", None)
    t_width = getattr(_text_config(teacher_model_cfg), "vocab_size", None)
    if s_width != t_width:
        problems.append(f"output layers differ in width: {student_name} scores {s_width} token ids, "
                        f"{teacher_name} {t_width}")
    if problems:
        raise TokenizerMismatch(
            f"logit distillation refused: {teacher_name} does not share {student_name}'s tokenizer and output layer:\n  - "
            + "\n  - ".join(problems) + f"\n{WHY}\n{FIX}"
        )


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels_mask: torch.Tensor | None = None,
                      kind: str = "forward_kl", beta: float = 0.5, temperature: float = 1.0,
                      num_items_in_batch: Any = None) -> torch.Tensor:
    """Divergence between teacher and student next-token distributions, summed over the vocabulary and
    averaged over the positions where `labels_mask` is true (all rows of `(N, V)` logits when it is None),
    or summed and divided by `num_items_in_batch` when given (gradient accumulation, as TRL does).

    kind: forward_kl = KL(teacher || student) (mode covering), reverse_kl = KL(student || teacher) (mode
    seeking), jsd = TRL's generalized JSD with `beta` (beta 0 is forward KL, 1 is reverse KL). Both logits
    are divided by `temperature` first (TRL's convention: no T^2 factor)."""
    if kind not in ("forward_kl", "reverse_kl", "jsd"):
        raise ValueError(f"distillation loss {kind!r} is not one of forward_kl, reverse_kl, jsd")
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise TokenizerMismatch(f"student scores {student_logits.shape[-1]} token ids, teacher {teacher_logits.shape[-1]}. "
                                f"{WHY}\n{FIX}")
    if labels_mask is not None:
        student_logits, teacher_logits = student_logits[labels_mask], teacher_logits[labels_mask]
    vocab = student_logits.shape[-1]
    s = student_logits.reshape(-1, vocab).float()
    t = teacher_logits.reshape(-1, vocab).float().to(s.device)
    b = BETA_OF.get(kind, beta)
    return _generalized_jsd()(s, t, labels=None, beta=b, temperature=temperature, reduction="batchmean",
                              num_items_in_batch=num_items_in_batch)


def _per_item(total: torch.Tensor, num_items_in_batch, count: int) -> torch.Tensor:
    """total / num_items_in_batch when given (gradient accumulation), else total / count (as answer_only_loss)."""
    if num_items_in_batch is None:
        return total / max(count, 1)
    if isinstance(num_items_in_batch, torch.Tensor):
        return total / num_items_in_batch.to(total.device).clamp(min=1)
    return total / max(num_items_in_batch, 1)


def load_teacher(path: str, dtype: torch.dtype):
    """The teacher, frozen and in eval mode (dropout off), in the student's dtype."""
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


class DistillationSFTTrainer(AnswerOnlySFTTrainer):
    """AnswerOnlySFTTrainer whose loss is alpha * CE + (1 - alpha) * divergence from a frozen teacher."""

    def __init__(self, *args, teacher, distillation, **kwargs):
        kwargs["answer_only_head"] = True  # the divergence needs both models' rows at the same answer positions
        super().__init__(*args, **kwargs)
        try:
            causal_lm_parts(teacher)
        except TypeError as exc:
            raise TypeError(f"the distillation teacher {type(teacher).__name__} has no `model`/`lm_head` pair: "
                            "give a causal LM (a ...ForCausalLM) teacher") from exc
        self.teacher = teacher.to(self.args.device).eval()
        self.teacher.requires_grad_(False)
        self.distillation = distillation

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._count(model, inputs)
        d = self.distillation
        ids, labels = inputs["input_ids"], inputs["labels"]
        mask, pos = inputs.get("attention_mask"), inputs.get("position_ids")
        student, targets = answer_logits(model, ids, labels, mask, pos)
        with torch.no_grad():
            teacher, _ = answer_logits(self.teacher, ids, labels, mask, pos)
        ce = _per_item(F.cross_entropy(student, targets, reduction="sum"), num_items_in_batch, targets.numel())
        denom = num_items_in_batch if num_items_in_batch is not None else max(targets.numel(), 1)
        kd = distillation_loss(student, teacher, None, d.loss, d.beta, d.temperature, num_items_in_batch=denom)
        loss = d.alpha * ce + (1 - d.alpha) * kd
        metrics = self._metrics["train" if model.training else "eval"]
        metrics["ce_loss"].append(float(ce.detach()))
        metrics["kd_loss"].append(float(kd.detach()))
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, {"loss": loss.detach()}) if return_outputs else loss
