"""The final-norm tap on the real Gemma 3 270M GGUF: one prompt-evaluation pass gives the same
last-token hidden state as llama.cpp's own embedding mode over the same tokens in one batch,
for inputs shorter and longer than a batch, and leaves the context usable for the next input."""

import numpy as np
import pytest

from edge_runtime.engines.hidden_state import FinalNormTap
from edge_runtime.engines.llamacpp import load_llama

TEXTS = ["hi", "How do I top up my card with Apple Pay?", "我想查一下明天从北京到上海的航班",
         " ".join(["receipt line"] * 30)]  # ~60 tokens: several batches of 16


@pytest.fixture(scope="module")
def reference(gemma_gguf):
    from llama_cpp import LLAMA_POOLING_TYPE_LAST

    llm = load_llama(gemma_gguf, n_ctx=256, embedding=True, pooling_type=LLAMA_POOLING_TYPE_LAST)
    states = {t: np.asarray(llm.embed(t, normalize=False), dtype=np.float32).reshape(-1) for t in TEXTS}
    llm.close()
    return states


def test_tap_equals_embedding_mode_in_one_batch(gemma_gguf, reference):
    llm = load_llama(gemma_gguf, n_ctx=256, n_batch=16)
    tap = FinalNormTap.install(llm)
    assert tap is not None, "llama-cpp-python exposes the ggml calls the tap needs"
    for text in TEXTS + TEXTS[::-1]:  # twice, reversed: the cache is cleared between inputs
        tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
        state = tap.hidden(tokens)
        ref = reference[text]
        assert state is not None and state.shape == ref.shape == (llm.n_embd(),)
        if len(tokens) <= 16:  # one batch, same kernels: the same numbers
            np.testing.assert_allclose(state, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        else:  # several batches: float rounding of the split attention only
            cos = float(state @ ref / np.linalg.norm(state) / np.linalg.norm(ref))
            assert cos > 0.999, (text, cos)
    llm.close()


def test_tap_stops_before_the_output_layer(gemma_gguf):
    """The callback copies `result_norm` and stops the graph: llama.cpp asks about no node after
    it, so the output layer (the logits) never runs: why the head costs no more than prompt
    evaluation."""
    llm = load_llama(gemma_gguf, n_ctx=256)
    tap = FinalNormTap.install(llm)
    for text in TEXTS:
        assert tap.hidden(llm.tokenize(text.encode(), add_bos=True, special=False)) is not None
    assert tap.nodes_after_capture == 0
    llm.close()
