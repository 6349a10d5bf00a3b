"""The local teachers: a GGUF in process through llama.cpp (grammar-constrained) and an HF
model through transformers, both through the same engine and cache."""

import json

from distill.teachers import run_teach, teacher_predictor


def test_llamacpp_teacher_labels_with_the_real_gguf(gemma_gguf, make_recipe, tmp_path):
    recipe, rows, _ = make_recipe({"kind": "llamacpp", "model": str(gemma_gguf), "max_tokens": 12, "n_ctx": 512},
                                  texts=["I love it."])
    summary = run_teach(recipe, rows, tmp_path / "run" / "teach")
    assert summary["labelled"] == 1 and summary["requests"] == 1 and summary["cost_usd"] == 0
    row = json.loads((tmp_path / "run/teach/labelled.jsonl").read_text())
    assert row["answer"]["label"] in ("positive", "negative")
    again = run_teach(recipe, rows, tmp_path / "run" / "teach")
    assert again["requests"] == 0 and again["from_cache"] == 1


def test_transformers_teacher_drops_what_a_random_model_says(tiny_gemma_dir, make_recipe, tmp_path):
    recipe, rows, _ = make_recipe({"kind": "transformers", "model": str(tiny_gemma_dir), "max_tokens": 6},
                                  texts=["I love it.", "I hate it."])
    summary = run_teach(recipe, rows, tmp_path / "teach")
    # a tiny random model writes no valid JSON: each row is asked twice and reported failed
    assert summary["requests"] == 4 and summary["failed_by_reason"] == {"invalid": 2}
    predictor = teacher_predictor(recipe)
    try:
        pred = predictor.predict(rows[0])
    finally:
        predictor.close()
    assert pred.answer is None and pred.problems and pred.completion_tokens > 0 and pred.latency_s > 0
