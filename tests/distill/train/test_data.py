"""Tokenized examples: the prompt is masked, the answer and EOS carry the loss, the format is saved."""

import pytest

from distill.train.data import IGNORE, PromptFormat, encode_row, encode_rows, prompt_format


def test_labels_mask_the_prompt_and_keep_answer_plus_eos(receipts_recipe, receipt_rows, tiny_tokenizer):
    task, row = receipts_recipe.task, receipt_rows[0]
    fmt = prompt_format(tiny_tokenizer, task)
    ex = encode_row(fmt, tiny_tokenizer, task, row)
    labels, ids = ex["labels"], ex["input_ids"]
    n_prompt = sum(1 for x in labels if x == IGNORE)
    assert labels[:n_prompt] == [IGNORE] * n_prompt and IGNORE not in labels[n_prompt:]
    # the masked part is exactly the prompt as the runtime tokenizes it (with BOS)
    assert ids[:n_prompt] == tiny_tokenizer(task.render_prompt(row))["input_ids"]
    assert ids[0] == tiny_tokenizer.bos_token_id
    # the labelled part is the canonical answer JSON followed by EOS, nothing else
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(ids[n_prompt:-1]) == task.render_answer(row["answer"])


def test_plain_format_for_a_base_model(receipts_recipe, tiny_tokenizer):
    fmt = prompt_format(tiny_tokenizer, receipts_recipe.task)
    assert fmt.kind == "plain" and fmt.chat_template is None and fmt.add_bos
    assert fmt.eos_token == "<eos>" and fmt.completion_suffix == "<eos>" and fmt.stop == ["<eos>"]
    assert fmt.task_template == receipts_recipe.task.template


def test_chat_template_is_used_when_the_student_has_one(receipts_recipe, receipt_rows, tiny_gemma_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
        "{% endfor %}{% if add_generation_prompt %}<start_of_turn>assistant\n{% endif %}"
    )
    task, row = receipts_recipe.task, receipt_rows[1]
    fmt = prompt_format(tok, task)
    assert fmt.kind == "chat" and fmt.completion_suffix == "<end_of_turn>\n"
    ex = encode_row(fmt, tok, task, row)
    n_prompt = ex["labels"].count(IGNORE)
    prompt_text = tok.decode(ex["input_ids"][:n_prompt])
    assert prompt_text.startswith("<bos><start_of_turn>user\n") and prompt_text.endswith("<start_of_turn>assistant\n")
    assert prompt_text.count("<bos>") == 1
    assert tok.decode(ex["input_ids"][n_prompt:]) == task.render_answer(row["answer"]) + "<end_of_turn>\n"
    fmt.save(tmp_path)
    assert PromptFormat.load(tmp_path) == fmt


def test_rows_too_long_are_dropped_not_cut(receipts_recipe, receipt_rows, tiny_tokenizer):
    lengths = sorted(len(tiny_tokenizer(receipts_recipe.task.render_prompt(r))["input_ids"]) for r in receipt_rows)
    limit = lengths[len(lengths) // 2] + 60
    enc = encode_rows(tiny_tokenizer, receipts_recipe.task, receipt_rows, limit, 0.25, 0)
    assert enc.dropped and all(e["length"] <= limit for e in enc.train + enc.val)
    assert len(enc.train) + len(enc.val) + len(enc.dropped) == len(receipt_rows)
    assert len(enc.val) == round((len(receipt_rows) - len(enc.dropped)) * 0.25)
    with pytest.raises(ValueError, match="max_seq_len"):
        encode_rows(tiny_tokenizer, receipts_recipe.task, receipt_rows, 50, 0.1, 0)


def test_row_without_answer_is_a_clear_error(receipts_recipe, receipt_rows, tiny_tokenizer):
    row = {k: v for k, v in receipt_rows[0].items() if k != "answer"}
    with pytest.raises(KeyError, match="has no `answer`"):
        encode_rows(tiny_tokenizer, receipts_recipe.task, [row], 2048, 0.1, 0)
