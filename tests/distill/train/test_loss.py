"""The answer-only output layer gives the same loss and gradients as the full forward."""

import pytest
import torch

from distill.train.data import encode_rows
from distill.train.loss import answer_only_loss, reference_loss


def _batch(tok, task, rows):
    enc = encode_rows(tok, task, rows, 4096, 0.0, 0)
    ex = enc.train
    n = max(e["length"] for e in ex)
    ids = torch.tensor([e["input_ids"] + [tok.pad_token_id] * (n - e["length"]) for e in ex])
    labels = torch.tensor([e["labels"] + [-100] * (n - e["length"]) for e in ex])
    mask = (torch.arange(n)[None] < torch.tensor([e["length"] for e in ex])[:, None]).long()
    return ids, labels, mask


@pytest.mark.parametrize("softcap", [None, 5.0])
def test_fast_loss_equals_full_loss_with_lora(receipts_recipe, receipt_rows, tiny_gemma_dir, tiny_tokenizer, softcap):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    model.config.final_logit_softcapping = softcap
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():  # non-zero B so the adapter changes the output
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    ids, labels, mask = _batch(tiny_tokenizer, receipts_recipe.task, receipt_rows[:3])
    assert (mask == 0).any(), "the batch should contain padding"

    fast = answer_only_loss(model, ids, labels, mask)
    fast.backward()
    g_fast = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    ref = reference_loss(model, ids, labels, mask)
    ref.backward()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(g_fast[n], p.grad, rtol=1e-4, atol=1e-6, msg=n)


def test_num_items_in_batch_gives_sum_over_count(receipts_recipe, receipt_rows, tiny_gemma_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    ids, labels, mask = _batch(tiny_tokenizer, receipts_recipe.task, receipt_rows[:2])
    n = int((labels[:, 1:] != -100).sum())
    with torch.no_grad():
        mean = answer_only_loss(model, ids, labels, mask)
        halved = answer_only_loss(model, ids, labels, mask, num_items_in_batch=torch.tensor(2 * n))
    torch.testing.assert_close(halved * 2, mean)
