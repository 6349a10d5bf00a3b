"""Causal-LM loss with the output layer computed only where the loss is.

Gemma 3's 262k-word output layer dominates CPU training time, yet a prompt-masked batch
needs its logits only at the answer positions. We run the transformer body, pick the
hidden states whose next token is labelled, and apply the output layer (and the model's
final logit soft-capping, if its config sets one) to those rows alone. The result is the
same cross-entropy as the full forward (`tests/distill/train/test_loss.py` checks it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def causal_lm_parts(model):
    """(body, lm_head, config) of a causal LM, looking through PEFT and other wrappers."""
    inner = model
    for _ in range(6):
        if hasattr(inner, "get_base_model") and inner.get_base_model() is not inner:
            inner = inner.get_base_model()  # PEFT: LoRA layers live inside the base model
        elif hasattr(inner, "module"):  # DDP / accelerate wrappers
            inner = inner.module
        else:
            break
    if hasattr(inner, "lm_head") and hasattr(inner, "model") and not hasattr(inner.model, "lm_head"):
        return inner.model, inner.lm_head, inner.config
    raise TypeError(f"{type(model).__name__} has no `model`/`lm_head` pair; use loss_on_answer_only_head: false")


def _distributed() -> bool:
    from distill.distributed import active

    return active()


def shifted_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask over positions whose next token carries loss, those next tokens)."""
    nxt = torch.full_like(labels, IGNORE)
    nxt[:, :-1] = labels[:, 1:]
    mask = nxt != IGNORE
    return mask, nxt[mask]


def answer_logits(model, input_ids, labels, attention_mask=None, position_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits at the positions whose next token is labelled, those next tokens): the body's hidden states,
    then the output layer and the model's final logit soft-capping on the selected rows only."""
    body, lm_head, config = causal_lm_parts(model)
    mask, targets = shifted_targets(labels)
    kwargs = {"attention_mask": attention_mask, "use_cache": False}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    if _distributed():
        # through the DDP/FSDP wrapper's own forward: calling the body directly would skip DDP's
        # gradient synchronisation (each process would train alone) and FSDP's weight gathering.
        # `logits_to_keep` limits the output layer to the positions any row labels.
        cols = mask.any(0).nonzero().squeeze(1)
        logits = model(input_ids=input_ids, logits_to_keep=cols, **kwargs).logits
        return logits[mask[:, cols]].float(), targets.to(logits.device)
    hidden = body(input_ids=input_ids, **kwargs).last_hidden_state
    logits = lm_head(hidden[mask]).float()
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits, targets.to(logits.device)


def answer_only_loss(model, input_ids, labels, attention_mask=None, position_ids=None, num_items_in_batch=None):
    """Mean (or sum / num_items_in_batch) cross-entropy over labelled tokens, output layer at those rows only."""
    logits, targets = answer_logits(model, input_ids, labels, attention_mask, position_ids)
    total = F.cross_entropy(logits, targets, reduction="sum")
    denom = num_items_in_batch if num_items_in_batch is not None else targets.numel()
    if isinstance(denom, torch.Tensor):
        denom = denom.to(total.device)
    return total / max(denom, 1) if not isinstance(denom, torch.Tensor) else total / denom.clamp(min=1)


def reference_loss(model, input_ids, labels, attention_mask=None) -> torch.Tensor:
    """The straightforward loss: full logits, then transformers' own shifted cross-entropy."""
    return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).loss
