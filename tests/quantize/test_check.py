"""The answer check: tokenizer facts in the GGUF and greedy-answer agreement."""

import json
import shutil

import pytest

from quantize.check import answer_agreement, check_metadata, gguf_greedy


def test_chat_template_and_eos_carried(tiny_f16_gguf, tiny_llamacpp_gemma):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llamacpp_gemma))
    assert tok.chat_template
    llm = Llama(model_path=str(tiny_f16_gguf), vocab_only=True, verbose=False)
    assert llm.metadata["tokenizer.chat_template"] == tok.chat_template
    assert llm.token_eos() == tok.eos_token_id
    llm.close()


def test_metadata_check_catches_a_mismatched_template_and_stop_token(tiny_f16_gguf, tiny_llamacpp_gemma, tmp_path):
    from transformers import AutoTokenizer

    other = tmp_path / "hf"
    shutil.copytree(tiny_llamacpp_gemma, other)
    tok = AutoTokenizer.from_pretrained(str(other))
    tok.chat_template = "{{ messages[0]['content'] }}"
    tok.save_pretrained(str(other))
    gen = json.loads((other / "generation_config.json").read_text())
    gen["eos_token_id"] = [1, 7]  # token 7 is an ordinary token to llama.cpp
    (other / "generation_config.json").write_text(json.dumps(gen))
    problems = check_metadata(tiny_f16_gguf, other)
    assert any("chat template" in p for p in problems), problems
    assert any("token 7" in p for p in problems), problems


def test_agreement_counts_identical_and_different_answers(tiny_f16_gguf):
    from edge_runtime.task import TaskSpec

    task = TaskSpec(name="t", kind="extraction", instructions="Extract the total.", fields={"total": {"type": "amount"}})
    prompts = [task.render_prompt({"text": f"TOTAL RM {i}.50"}) for i in range(3)]
    ref = gguf_greedy(tiny_f16_gguf, prompts, max_new_tokens=8)
    same = answer_agreement(tiny_f16_gguf, prompts, ref, task, max_new_tokens=8)
    assert (same.exact, same.rate) == (3, 1.0)  # greedy decoding is deterministic
    altered = [ref[0], ref[1] + " extra", "something else"]
    diff = answer_agreement(tiny_f16_gguf, prompts, altered, task, max_new_tokens=8)
    assert diff.exact == 1 and diff.rate == pytest.approx(1 / 3)
    assert len(diff.examples) == 2
