"""Copied fields (edge_runtime/engines/copying.py) with the real Gemma 3 270M GGUF and its
tokenizer: a copied value can only be text of the input (lines joined by a space), the other
fields stay free, and every answer is still the task's canonical, valid JSON."""

from __future__ import annotations

import pytest

from edge_runtime.engines.copying import copy_grammar, copy_source
from edge_runtime.engines.decoding import _tokenizer_for
from edge_runtime.engines.llamacpp import LlamaCppPredictor, load_llama
from edge_runtime.task import TaskSpec

LINES = ["TAN WOON YANN", "BOOK TA .K(TAMAN DAYA) SDN BND", "NO.53 55,57 & 59, JALAN SAGU 18,", "TAMAN DAYA,",
         "81100 JOHOR BAHRU,", 'DATE : 25/12/2018 8:13:39 PM  "COPY"', "TOTAL: 9.00", "恒丰超市 ¥1,234.50 C:\\TEMP"]


def _task(copied: tuple[str, ...] = ("company", "date", "address", "total")) -> TaskSpec:
    return TaskSpec.model_validate({
        "name": "receipts", "kind": "extraction", "input_field": "ocr_lines",
        "instructions": "Extract the company, date, address and total from this receipt. Copy values exactly. "
                        "Answer with JSON only.",
        "fields": {k: {"type": t, "copied": k in copied}
                   for k, t in (("company", "text"), ("date", "date"), ("address", "text"), ("total", "amount"))},
    })


@pytest.fixture(scope="module")
def gemma_llm(gemma_gguf):
    llm = load_llama(gemma_gguf, n_ctx=1024)
    yield llm
    llm.close()


def _accepts(llm, grammar: str, text: str) -> bool:
    from llguidance import LLMatcher

    matcher = LLMatcher(_tokenizer_for(llm), grammar, log_level=0)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    if matcher.validate_tokens(tokens) != len(tokens):
        return False
    matcher.consume_tokens(tokens)
    return matcher.is_accepting()


def test_copied_values_must_be_text_of_the_input(gemma_llm):
    task = _task(copied=("company", "date", "address"))
    grammar = copy_grammar(task, "\n".join(LINES))
    answer = {"company": "BOOK TA .K(TAMAN DAYA) SDN BND", "date": "25/12/2018",
              "address": "NO.53 55,57 & 59, JALAN SAGU 18, TAMAN DAYA, 81100 JOHOR BAHRU,", "total": "anything 9"}
    assert _accepts(gemma_llm, grammar, task.render_answer(answer))  # over three lines, joined by spaces
    for key, wrong in (("company", "BOOK TA .K(TAMAN DAYA) SDN BHD"), ("date", "25-12-2018"),
                       ("address", "NO.53 55,57 & 59, JALAN SAGU 18,\nTAMAN DAYA,")):
        assert not _accepts(gemma_llm, grammar, task.render_answer({**answer, key: wrong})), key
    # quotes, backslashes and unicode of the input are copied as JSON escapes; an empty value is a substring
    tricky = {**answer, "company": 'PM  "COPY" TOTAL', "address": "恒丰超市 ¥1,234.50 C:\\TEMP", "date": ""}
    assert _accepts(gemma_llm, grammar, task.render_answer(tricky))
    assert not _accepts(gemma_llm, grammar, task.render_answer(answer)[:-1])  # the object must be closed
    assert copy_source("A \n B\t\nC") == "A B C"


def test_a_task_without_copied_fields_has_no_copy_grammar():
    with pytest.raises(ValueError, match="no copied field"):
        copy_grammar(_task(copied=()), "TOTAL 9.00")


def test_predictor_answers_only_with_input_text(gemma_gguf, gemma_llm):
    task = _task()
    pred = LlamaCppPredictor(gemma_gguf, task, llm=gemma_llm, max_new_tokens=128)
    source = copy_source("\n".join(LINES))
    p = pred.predict({"ocr_lines": LINES})
    assert p.valid, (p.raw, p.problems)
    assert p.raw == task.render_answer(p.answer)
    for key in task.fields:
        assert p.answer[key] in source, (key, p.answer[key])
