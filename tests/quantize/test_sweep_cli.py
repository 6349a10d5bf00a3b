"""`quantize sweep` on a run directory and the CLI's refusals, on the tiny model."""

import json
import shutil

import pytest

from quantize.cli import main


@pytest.fixture
def run_dir(tmp_path, tiny_llamacpp_gemma, tiny_f16_gguf):
    run = tmp_path / "run"
    task = {"name": "intent", "kind": "classification", "instructions": "Is this about a refund?",
            "labels": ["refund", "other"]}
    recipe = {"task": task, "quantize": {"types": ["q4_k_m"], "imatrix": True, "quality_floor": 0.98},
              "target": {"profile": "router-8gb", "n_ctx": 512}}
    (run / "teach").mkdir(parents=True)
    (run / "curate").mkdir()
    (run / "recipe.resolved.json").write_text(json.dumps(recipe))
    rows = [{"id": str(i), "text": t, "gold": {"label": g}} for i, (t, g) in
            enumerate([("I want my money back", "refund"), ("Where is my parcel?", "other"),
                       ("Refund the double charge", "refund"), ("Change my address", "other")])]
    (run / "teach" / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    train = [{"id": f"t{i}", "text": r["text"], "answer": r["gold"]} for i, r in enumerate(rows)]
    (run / "curate" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in train))
    shutil.copytree(tiny_llamacpp_gemma, run / "train" / "merged")
    (run / "sweep").mkdir()
    shutil.copy(tiny_f16_gguf, run / "sweep" / "model-f16.gguf")  # reused, as a re-run would
    return run


def test_sweep_picks_smallest_type_that_keeps_the_floor(run_dir, capsys):
    rc = main(["sweep", str(run_dir), "--profile", "router-8gb", "--types", "q4_k_m", "--limit", "2"])
    result = json.loads((run_dir / "sweep" / "sweep.json").read_text())
    assert [e["type"] for e in result["table"]] == ["f16", "q4_k_m"]
    assert result["n_eval"] == 2
    assert (run_dir / "sweep" / "imatrix.gguf").is_file()  # recipe asked for an importance matrix
    for e in result["table"]:
        assert e["fits"] and 0.0 <= e["metric"] <= 1.0 and e["tokens_per_s"] > 0
    assert result["table"][0]["agreement_with_f16"] == 1.0
    keep = [e for e in result["table"] if e["metric"] >= result["floor_metric"]]
    assert result["pick"] == min(keep, key=lambda e: e["size_mib"])["type"]
    assert rc == 0
    assert "| type | size (MiB)" in capsys.readouterr().out


def test_sweep_without_a_trained_student_says_what_to_run(tmp_path, capsys):
    (tmp_path / "recipe.resolved.json").write_text(json.dumps({"task": {"name": "x", "kind": "classification",
                                                                        "instructions": "i", "labels": ["a", "b"]}}))
    assert main(["sweep", str(tmp_path), "--profile", "router-8gb"]) == 2
    assert "--until train" in capsys.readouterr().err


def test_cli_refuses_existing_output_and_unknown_type(tiny_f16_gguf, tiny_llamacpp_gemma, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model-f16.gguf").write_bytes(b"old")
    assert main(["gguf", str(tiny_llamacpp_gemma), "--out", str(out), "--types", "f16"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model-f16.gguf").read_bytes() == b"old"
    with pytest.raises(SystemExit, match="unknown type"):
        main(["gguf", str(tiny_llamacpp_gemma), "--out", str(out), "--types", "q9_z"])


def test_sweep_judges_a_head_run_through_its_head(run_dir):
    """A classifier-head run's GGUFs are evaluated as the bundle answers: body + head, one pass each
    (no generated tokens, so no decode rate), not by generating a label with the body."""
    import numpy as np

    from edge_runtime.heads import ClassifierHead

    hidden = json.loads((run_dir / "train" / "merged" / "config.json").read_text())
    hidden = hidden.get("text_config", hidden)["hidden_size"]
    head = run_dir / "train" / "head.npz"
    ClassifierHead(np.random.default_rng(0).normal(size=(2, hidden)).astype("float32"), ["refund", "other"], 1.0).save(head)
    (run_dir / "train" / "record.json").write_text(json.dumps({"stage": "train", "outputs": {
        "head": str(head), "merged_dir": str(run_dir / "train" / "merged")}}))
    assert main(["sweep", str(run_dir), "--profile", "router-8gb", "--types", "q4_k_m", "--limit", "4"]) == 0
    result = json.loads((run_dir / "sweep" / "sweep.json").read_text())
    for e in result["table"]:
        assert 0.0 <= e["metric"] <= 1.0 and e["tokens_per_s"] is None, e
