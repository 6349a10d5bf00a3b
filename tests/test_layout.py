"""The run directory's layout and the GGUF type table are a contract between distill, quantize
and edge_runtime (and runs already on disk): the names are pinned here."""

from pathlib import Path

from edge_runtime import layout
from edge_runtime.gguf_types import RECIPE_TYPES, adapter_types, split_type, takes_imatrix
from edge_runtime.layout import ResolvedRecipe, RunLayout, artifact_gguf


def test_run_paths():
    run = RunLayout("runs/x")
    assert run.recipe == Path("runs/x/recipe.resolved.json")
    assert run.record("quantize") == Path("runs/x/quantize/record.json")
    assert (run.labelled, run.eval_split) == (Path("runs/x/teach/labelled.jsonl"), Path("runs/x/teach/eval.jsonl"))
    assert run.train_rows == Path("runs/x/curate/train.jsonl")
    assert (run.adapter_dir, run.merged_dir) == (Path("runs/x/train/adapter"), Path("runs/x/train/merged"))
    assert run.template == Path("runs/x/train/merged/template.json")
    assert run.eval_metrics == Path("runs/x/eval/metrics.json")
    assert run.predictions("teacher") == Path("runs/x/eval/teacher/predictions.jsonl")
    assert run.quantized_eval == Path("runs/x/quantize/eval")
    assert run.artifact("q4_k_m") == Path("runs/x/quantize/model-q4_k_m.gguf")
    assert run.artifact("q8_0+lora") == Path("runs/x/quantize/base-q8_0.gguf")
    assert run.adapter_gguf == Path("runs/x/quantize/adapter-f16.gguf")


def test_artifact_names_and_types():
    assert artifact_gguf("f16") == "model-f16.gguf" and artifact_gguf("f16+lora") == "base-f16.gguf"
    assert split_type("q4_k_m+lora") == ("q4_k_m", True) and split_type("q8_0") == ("q8_0", False)
    assert [t for t in RECIPE_TYPES if not split_type(t)[1]] == ["f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m",
                                                                 "q4_0", "iq4_xs"]
    assert "bf16+lora" not in adapter_types() and len(adapter_types()) == 7
    assert [t for t in RECIPE_TYPES if takes_imatrix(t) and not split_type(t)[1]] == ["q5_k_m", "q4_k_m", "q4_0", "iq4_xs"]
    assert takes_imatrix("q4_k_m+lora") and not takes_imatrix("q8_0+lora")


def test_resolved_recipe_defaults_are_the_recipes():
    from distill.recipe import QuantizeConfig, TargetConfig, EvalConfig

    empty = ResolvedRecipe({"task": {}})
    target, quant, ev = TargetConfig(), QuantizeConfig(), EvalConfig()
    assert (empty.n_ctx, empty.parallel, empty.confidence_threshold) == (target.n_ctx, target.parallel,
                                                                         target.confidence_threshold)
    assert (empty.quality_floor, empty.imatrix, empty.max_new_tokens) == (quant.quality_floor, quant.imatrix,
                                                                          ev.max_new_tokens)
    assert target.profile == layout.PROFILE
    assert ResolvedRecipe({"target": {"n_ctx": 512}}).n_ctx == 512


def test_read_jsonl_names_the_bad_line(tmp_path):
    import pytest

    from edge_runtime.layout import read_jsonl

    f = tmp_path / "rows.jsonl"
    f.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(f) == [{"a": 1}, {"a": 2}] and read_jsonl(f, limit=1) == [{"a": 1}]
    f.write_text('{"a": 1}\n{broken\n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2: not valid JSON .*; each line must be one JSON object"):
        read_jsonl(f)
    f.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2: expected a JSON object, got list"):
        read_jsonl(f)
