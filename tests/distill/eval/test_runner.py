"""The eval runner on real receipts with real models: a tiny HF Gemma through `hf:<dir>`,
the dataset teacher, and the real Gemma 3 270M GGUF through llama.cpp."""

import csv
import json
from pathlib import Path

import pytest

from distill.cli import main
from distill.eval import evaluate_predictors
from distill.eval.predictors import PredictorUnavailable, build_predictor, predictor_name
from distill.pipeline.stages import load_splits
from distill.recipe import load_recipe

RECEIPTS = Path(__file__).resolve().parents[3] / "recipes" / "receipts-small.yaml"
CONTRACT_KEYS = {"n", "headline", "field_accuracy", "exact_match", "json_validity", "p50_latency_s", "p95_latency_s",
                 "size_bytes", "cost_per_1k_usd", "agreement_with_teacher", "headline_ci", "agreement_ci"}


def _recipe(*overrides):
    return load_recipe(RECEIPTS, ["eval.max_new_tokens=6", "eval.bootstrap_samples=100", *overrides])


def _rows(recipe, n=3, lines=6):
    _, evals = load_splits(recipe)
    return [{**r, "ocr_lines": r["ocr_lines"][:lines]} for r in evals[:n]]  # short prompts: fast on 2 cores


def test_tiny_hf_student_against_the_dataset_teacher(tmp_path, tiny_gemma_dir):
    recipe = _recipe()
    rows = _rows(recipe)
    out = tmp_path / "eval"
    name = predictor_name(f"hf:{tiny_gemma_dir}")
    result = evaluate_predictors(recipe, tmp_path / "run", [f"hf:{tiny_gemma_dir}", "teacher"], rows, out)
    assert result["n"] == 3 and list(result["predictors"]) == ["teacher", name]  # teacher first
    teacher, hf = result["predictors"]["teacher"], result["predictors"][name]
    assert CONTRACT_KEYS <= set(teacher) and CONTRACT_KEYS <= set(hf)
    assert teacher["headline"] == 1.0 and teacher["exact_match"] == 1.0  # the dataset teacher is the gold here
    assert teacher["p50_latency_s"] is None and teacher["cost_per_1k_usd"] > 0  # priced by estimated tokens
    assert hf["agreement_with_teacher"] == pytest.approx(hf["headline"])
    assert hf["p50_latency_s"] > 0 and hf["generation_tokens_per_s"] > 0 and hf["prompt_tokens_per_s"] > 0
    assert hf["size_bytes"] == sum(p.stat().st_size for p in Path(tiny_gemma_dir).glob("*.safetensors"))
    assert hf["cost_per_1k_usd"] > 0 and hf["peak_rss_bytes"] > 0
    recs = [json.loads(l) for l in (out / name / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == [r["id"] for r in rows]
    assert all(r["teacher"] == r["gold"] for r in recs)
    assert all(0 < r["completion_tokens"] <= 6 for r in recs)
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["machine"]["cpu_cores"] >= 1 and doc["assumptions"]["requests_per_day"] == 100_000
    assert set(doc["predictors"]) == {"teacher", name}
    assert (out / name / "disagreements.jsonl").read_text().count("\n") == hf["disagreements"]


def test_hf_greedy_loop_matches_transformers_generate(tiny_gemma_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.eval.hf_predictor import HFPredictor

    recipe = _recipe()
    row = _rows(recipe, n=1)[0]
    pred = HFPredictor(tiny_gemma_dir, recipe.task, max_new_tokens=6).predict(row)
    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    ids = tok(recipe.task.render_prompt(row), return_tensors="pt").input_ids
    ref = model.generate(ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1]:]
    assert pred.raw == tok.decode(ref, skip_special_tokens=True)
    assert pred.prompt_tokens == ids.shape[1] and 0 < pred.confidence <= 1


def test_real_gguf_through_llama_cpp(tmp_path):
    from distill.models.resolve import gemma_270m_gguf

    gguf = gemma_270m_gguf()
    recipe = _recipe("eval.max_new_tokens=8")
    rows = _rows(recipe, n=1, lines=3)
    result = evaluate_predictors(recipe, tmp_path / "run", [f"gguf:{gguf}"], rows, tmp_path / "eval")
    name = "gguf-" + gguf.stem
    s = result["predictors"][name]
    assert s["size_bytes"] == gguf.stat().st_size and s["n"] == 1
    assert s["p50_latency_s"] > 0 and s["prompt_tokens_per_s"] > 0 and s["generation_tokens_per_s"] > 0
    assert s["agreement_with_teacher"] is not None  # the dataset teacher's answers, looked up for free
    rec = json.loads((tmp_path / "eval" / name / "predictions.jsonl").read_text())
    assert rec["raw"].lstrip().startswith("{")  # grammar-constrained
    assert 0.0 <= rec["hybrid_confidence"] <= 1.0


def test_unavailable_predictors_are_named(tmp_path):
    recipe = _recipe()
    with pytest.raises(PredictorUnavailable, match="unknown predictor 'tflite:x'"):
        build_predictor("tflite:x", recipe, tmp_path)
    with pytest.raises(PredictorUnavailable, match="no ONNX model at x/model.onnx"):
        build_predictor("onnx:x", recipe, tmp_path)
    with pytest.raises(PredictorUnavailable, match=r"no q4_k_m\+lora artifact"):
        build_predictor("gguf:q4_k_m+lora", recipe, tmp_path)
    with pytest.raises(PredictorUnavailable, match="GGUF not found"):
        build_predictor("gguf:q4_k_m", recipe, tmp_path)
    result = evaluate_predictors(recipe, tmp_path, ["student", "teacher"], _rows(recipe, n=1), tmp_path / "eval")
    assert "distill train" in result["skipped"]["student"] and list(result["predictors"]) == ["teacher"]


def test_api_teacher_through_the_teachers_package(tmp_path, monkeypatch):
    """An `openai` teacher on a real loopback endpoint: billed cost per request and latency."""
    from distill.teachers.loopback import FixedLatencyServer

    answer = {"company": "X SDN BHD", "date": "01/01/2019", "address": "KL", "total": "9.00"}
    monkeypatch.setenv("LOOPBACK_KEY", "not-a-secret")
    with FixedLatencyServer(latency_s=0.05, content=json.dumps(answer)) as server:
        recipe = _recipe(f"teacher={{kind: openai, base_url: '{server.url}', model: loopback, api_key_env: LOOPBACK_KEY, "
                         f"price_input_per_m: 1.0, price_output_per_m: 2.0}}")
        rows = _rows(recipe, n=2)
        result = evaluate_predictors(recipe, tmp_path / "run", ["teacher"], rows, tmp_path / "eval")
    s = result["predictors"]["teacher"]
    assert s["json_validity"] == 1.0 and s["hosting"] == "api"
    assert s["cost_per_1k_usd"] == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6 * 1000)  # the server reports 10 + 5 tokens
    assert s["p50_latency_s"] >= 0.05
    from distill.eval.metrics import example_score

    assert s["headline"] == pytest.approx(sum(example_score(recipe.task, answer, r["gold"]) for r in rows) / 2)


def test_cli_eval_on_a_csv_the_recipe_never_saw(tmp_path, tiny_gemma_dir):
    src = [json.loads(l) for l in (RECEIPTS.parents[1] / "data/sroie/receipts.jsonl").read_text().splitlines()[-2:]]
    data = tmp_path / "new.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["id", "ocr_lines", "fields"])
        w.writeheader()
        for r in src:
            w.writerow({"id": "new-" + r["id"], "ocr_lines": "\n".join(r["ocr_lines"][:5]), "fields": json.dumps(r["fields"])})
    out = tmp_path / "out"
    rc = main(["eval", str(RECEIPTS), "--set", "eval.max_new_tokens=4", "--run-dir", str(tmp_path / "run"),
               "--predictor", "teacher", "--predictor", f"hf:{tiny_gemma_dir}", "--data", str(data), "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["n"] == 2 and doc["predictors"]["teacher"]["headline"] == 1.0
    name = predictor_name(f"hf:{tiny_gemma_dir}")
    ids = [json.loads(l)["id"] for l in (out / name / "predictions.jsonl").read_text().splitlines()]
    assert ids == ["new-" + r["id"] for r in src]


def test_cli_eval_names_a_missing_input_column(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "1", "text": "no ocr_lines here"}\n')
    rc = main(["eval", str(RECEIPTS), "--run-dir", str(tmp_path / "run"), "--predictor", "teacher",
               "--data", str(data), "--out", str(tmp_path / "out")])
    assert rc == 2 and "ocr_lines" in capsys.readouterr().err


def test_hf_student_with_a_chat_template_gets_the_training_format(tmp_path, tiny_gemma_dir):
    """A student whose tokenizer has a chat template was trained on the prompt as a user
    turn (distill.train.data): eval must prompt it the same way and stop at the turn's end."""
    import shutil

    from transformers import AutoTokenizer

    from distill.eval.hf_predictor import HFPredictor

    model = tmp_path / "chat-model"
    shutil.copytree(tiny_gemma_dir, model)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = ("{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
                         "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
    tok.save_pretrained(model)
    recipe = _recipe()
    row = _rows(recipe, n=1)[0]
    pred = HFPredictor(model, recipe.task, max_new_tokens=3)
    assert pred.chat and "<end_of_turn>" in "".join(pred.stop)
    text = tok.apply_chat_template([{"role": "user", "content": recipe.task.render_prompt(row)}], tokenize=False,
                                   add_generation_prompt=True)
    assert pred.predict(row).prompt_tokens == len(tok(text, add_special_tokens=False).input_ids)


def test_a_packed_bundle_is_evaluated_with_its_own_files_and_refused_when_tampered(tmp_path):
    from edge_runtime.bundle import ServeSettings, pack

    from distill.models.resolve import gemma_270m_gguf

    recipe = _recipe()
    bundle = pack(gemma_270m_gguf(), recipe.task, tmp_path / "bundle", serve=ServeSettings(max_new_tokens=5))
    rows = _rows(recipe, n=1, lines=3)
    result = evaluate_predictors(recipe, tmp_path / "run", [f"bundle:{bundle}"], rows, tmp_path / "eval")
    s = result["predictors"]["bundle-bundle"]
    assert s["n"] == 1 and s["size_bytes"] == gemma_270m_gguf().stat().st_size
    rec = json.loads((tmp_path / "eval" / "bundle-bundle" / "predictions.jsonl").read_text())
    assert 0 < rec["completion_tokens"] <= 5  # the bundle's generation settings, not the recipe's
    (bundle / "task.json").write_text((bundle / "task.json").read_text().replace("receipt", "invoice"))
    with pytest.raises(PredictorUnavailable, match="refused"):
        build_predictor(f"bundle:{bundle}", recipe, tmp_path)


def test_faq_recall_at_k_from_the_tasks_own_retrieval(tmp_path):
    from edge_runtime.retrieval import load_knowledge_base

    recipe = load_recipe(RECEIPTS.parent / "faq-support.yaml", ["eval.bootstrap_samples=0"])
    rows = load_splits(recipe)[1][:12]
    s = evaluate_predictors(recipe, tmp_path, ["teacher"], rows, tmp_path / "eval")["predictors"]["teacher"]
    kb = load_knowledge_base(recipe.task.knowledge_base)
    hits3 = sum(r["gold"]["faq_id"] in [i for i, _ in kb.top_k(recipe.task.input_text(r), 3)] for r in rows)
    assert s["top1"] == 1.0 and s["recall_at_k"]["3"] == pytest.approx(hits3 / len(rows))
    values = [s["recall_at_k"][k] for k in ("1", "3", "5", "10")]
    assert values == sorted(values)
