"""The schema decoder (edge_runtime/engines/decoding.py) on real llama.cpp models: the tiny
random Gemma 3 (real 262k tokenizer) and the real Gemma 3 270M GGUF.

What must hold: every finished answer validates against its schema; speculation and forced
batching never change an answer; the token accounting adds up."""

from __future__ import annotations

import json

import jsonschema
import pytest

from edge_runtime.engines.decoding import TASK_DECODING, DecodeSettings, SchemaDecoder, grammar_from_schema
from edge_runtime.engines.llamacpp import LlamaCppPredictor, load_llama
from edge_runtime.task import TaskSpec

RECEIPTS = [
    ["TAN WOON YANN", "BOOK TA .K(TAMAN DAYA) SDN BND", "NO.53 55,57 & 59, JALAN SAGU 18,", "TAMAN DAYA,",
     "81100 JOHOR BAHRU,", "DATE : 25/12/2018 8:13:39 PM", "TOTAL: 9.00", "CASH 10.00", "CHANGE 1.00"],
    ["SANYU STATIONERY SHOP", "NO. 31G&33G, JALAN SETIA INDAH X ,U13/X", "40170 SETIA ALAM", "DATE 19/03/2018",
     "TOTAL SALES INCLUSIVE GST @6% 9.20", "CASH 10.00"],
    ["MR. D.I.Y. (JOHOR) SDN BHD", "LOT 1851-A & 1851-B, JALAN KPB 6,", "KAWASAN PERINDUSTRIAN BALAKONG,",
     "43300 SERI KEMBANG, SELANGOR", "12-01-19 18:44", "TOTAL RM 33.92"],
    ["恒丰超市 HENG FENG MART", "地址: 吉隆坡 JALAN IPOH 88号", "日期 2019年3月5日", "合计 ¥1,234.50"],
]
RECEIPT_TASK = TaskSpec.model_validate({
    "name": "receipts", "kind": "extraction", "input_field": "ocr_lines",
    "instructions": "Extract the company, date, address and total from this receipt. Copy values exactly. Answer with JSON only.",
    "fields": {"company": {}, "date": {"type": "date"}, "address": {}, "total": {"type": "amount"}},
    "student_prompt": "full",  # the untrained base reads the instructions; a bare tag leaves it at near-ties
})
# labels whose first tokens are shared, so a label is not decided by its first token
INTENTS = ["card_arrival", "card_linking", "card_payment_fee_charged", "card_payment_not_recognised",
           "cash_withdrawal_charge", "cash_withdrawal_not_recognised", "exchange_rate", "exchange_charge"]
INTENT_TASK = TaskSpec.model_validate({
    "name": "intents", "kind": "classification", "input_field": "text", "labels": INTENTS,
    "instructions": "Classify the banking customer's message into one intent. Answer with JSON only.",
})
MESSAGES = ["My card still hasn't arrived after two weeks", "Why was I charged a fee for paying by card?",
            "There is a cash withdrawal I don't recognise", "What exchange rate do you use?"]


@pytest.fixture(scope="module")
def tiny_llm(tiny_f16_gguf):
    llm = load_llama(tiny_f16_gguf, n_ctx=1024)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def gemma_llm(gemma_gguf):
    llm = load_llama(gemma_gguf, n_ctx=1024)
    yield llm
    llm.close()


def _decode(llm, schema, prompt: str, settings: DecodeSettings, max_tokens: int = 96):
    dec = SchemaDecoder(llm, grammar_from_schema(schema), settings)
    llm.reset()
    return dec.generate(llm.tokenize(prompt.encode(), add_bos=True, special=False), max_tokens)


# a schema with what task schemas do not have: nesting, bounded integers, length limits, unicode enums
RICH_SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["发票", "收据", "receipt", "receipt_copy"]},
        "amount": {"type": "object", "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 100000},
                                                      "currency": {"type": "string", "enum": ["CNY", "MYR", "USD"]}},
                   "required": ["value", "currency"], "additionalProperties": False},
        "items": {"type": "integer", "minimum": 0, "maximum": 99},
        "note": {"type": "string", "maxLength": 12},
    },
    "required": ["kind", "amount", "items", "note"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("speculate", [False, True])
def test_rich_schema_answers_validate(gemma_llm, speculate):
    settings = DecodeSettings(speculate=speculate)
    for lines in RECEIPTS:
        prompt = "Describe this receipt as JSON.\n\n" + "\n".join(lines) + "\n\nJSON:\n"
        res = _decode(gemma_llm, RICH_SCHEMA, prompt, settings, max_tokens=128)
        assert res.finish_reason == "stop", res.text
        jsonschema.validate(json.loads(res.text), RICH_SCHEMA)
        assert res.stats.forced + res.stats.sampled + res.stats.copied == len(res.tokens)


def test_task_answers_validate_on_all_three_kinds(gemma_gguf, gemma_llm, tmp_path):
    kb = tmp_path / "kb.jsonl"
    kb.write_text("\n".join(json.dumps({"id": f"faq-{i}", "question": q, "answers": [a]}) for i, (q, a) in enumerate([
        ("How do I reset my password?", "Use the reset link."), ("How do I close my account?", "Ask support."),
        ("如何修改密码？", "在设置中修改。")])) + "\n")
    faq = TaskSpec.model_validate({"name": "faq", "kind": "faq", "instructions": "Pick the FAQ that answers the query.",
                                   "knowledge_base": str(kb)})
    faq.attach_knowledge_base(tmp_path)
    cases = [(RECEIPT_TASK, [{"ocr_lines": r} for r in RECEIPTS]), (INTENT_TASK, [{"text": m} for m in MESSAGES]),
             (faq, [{"text": q} for q in ("forgot my password", "我想改密码", "shut down my account")])]
    for task, examples in cases:
        pred = LlamaCppPredictor(gemma_gguf, task, llm=gemma_llm, max_new_tokens=160)
        for ex in examples:
            p = pred.predict(ex)
            assert p.valid, (task.kind, p.raw, p.problems)
            assert task.validate_answer(json.loads(p.raw)) == []
            assert 0.0 <= p.confidence <= 1.0
            d = p.extra["decode"]
            assert d["forced"] + d["sampled"] + d["copied"] == p.completion_tokens
            if task.kind == "classification":  # `{"label": "` and `"}` come from the schema, not from sampling
                assert d["forced"] >= 5 and d["sampled"] <= 6


@pytest.mark.parametrize("model", ["tiny", "gemma"])
def test_speculation_never_changes_the_answer(model, request):
    """Byte-identical to the reference decoder (speculation off, same pass shape), and the
    drafts that were verified are counted: accepted <= proposed, tokens add up."""
    llm = request.getfixturevalue(f"{model}_llm")
    schema = RECEIPT_TASK.json_schema()
    accepted = 0
    for lines in RECEIPTS:
        prompt = RECEIPT_TASK.render_prompt({"ocr_lines": lines})
        ref = _decode(llm, schema, prompt, DecodeSettings(speculate=False, fixed_shape=True))
        spec = _decode(llm, schema, prompt, DecodeSettings(speculate=True))
        assert spec.text == ref.text and spec.tokens == ref.tokens
        st = spec.stats
        assert ref.stats.drafted == ref.stats.copied == 0
        assert 0 <= st.copied <= st.drafted
        assert st.forced + st.sampled + st.copied == len(spec.tokens)
        assert st.forward_passes <= ref.stats.forward_passes
        accepted += st.copied
    if model == "gemma":  # the real model copies from the receipt: some drafts must be accepted
        assert accepted > 0


def test_acceptance_is_counted_per_verified_draft(gemma_llm, monkeypatch):
    """Count proposals and verifying passes independently of the decoder's own counters."""
    dec = SchemaDecoder(gemma_llm, grammar_from_schema(RECEIPT_TASK.json_schema()), DecodeSettings(speculate=True))
    seen = {"proposed": 0, "verify_passes": 0}
    real_decode = dec._decode

    def counting(tokens, logits="last", **kw):
        if logits == "all":
            seen["verify_passes"] += 1
            seen["proposed"] += len(tokens) - 1  # the sampled token, then the draft
        return real_decode(tokens, logits, **kw)

    monkeypatch.setattr(dec, "_decode", counting)
    gemma_llm.reset()
    prompt = RECEIPT_TASK.render_prompt({"ocr_lines": RECEIPTS[0]})
    res = dec.generate(gemma_llm.tokenize(prompt.encode(), add_bos=True, special=False), 96)
    assert seen["verify_passes"] > 0
    assert res.stats.drafted == seen["proposed"]
    assert 0 < res.stats.copied <= res.stats.drafted
    assert res.stats.acceptance == pytest.approx(res.stats.copied / seen["proposed"])


def test_forced_batching_gives_the_step_by_step_answer(gemma_llm):
    schema = RECEIPT_TASK.json_schema()
    for lines in RECEIPTS:
        prompt = RECEIPT_TASK.render_prompt({"ocr_lines": lines})
        fast = _decode(gemma_llm, schema, prompt, DecodeSettings(speculate=False, fixed_shape=True))
        slow = _decode(gemma_llm, schema, prompt, DecodeSettings(speculate=False, fixed_shape=True, forced_batch=False))
        assert json.loads(fast.text) == json.loads(slow.text)
        assert fast.stats.forced > 0 and slow.stats.forced == 0
        assert fast.stats.forward_passes < slow.stats.forward_passes


def test_labels_sharing_first_tokens(gemma_gguf, gemma_llm):
    """Labels that share leading tokens: the rest of a label is forced once it is unique, so a
    classification answer costs the prompt pass and one short step per shared prefix."""
    pred = LlamaCppPredictor(gemma_gguf, INTENT_TASK, llm=gemma_llm, max_new_tokens=32)
    for m in MESSAGES:
        p = pred.predict({"text": m})
        assert p.answer["label"] in INTENTS
        d = p.extra["decode"]
        assert d["forward_passes"] <= 4, d


def test_decoding_settings_are_checked():
    with pytest.raises(ValueError, match="unknown decoding settings"):
        DecodeSettings.from_dict({"speculat": True})
    with pytest.raises(ValueError, match="draft_max"):
        DecodeSettings.from_dict({"draft_max": 0})
    for kind, defaults in TASK_DECODING.items():  # the measured defaults, then overrides on top
        assert {k: getattr(DecodeSettings.for_task(kind), k) for k in defaults} == defaults
    assert DecodeSettings.for_task("classification", {"speculate": True, "draft_max": 3}).draft_max == 3


def test_context_overflow_is_a_clear_error(gemma_llm):
    dec = SchemaDecoder(gemma_llm, grammar_from_schema(RECEIPT_TASK.json_schema()))
    gemma_llm.reset()
    with pytest.raises(ValueError, match="context"):
        dec.generate([2] + [236761] * 1100, 32)
