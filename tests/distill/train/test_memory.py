"""The peak-memory estimate against the measured peak, and the refusal when a run will not fit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill.train.memory import TrainingShape, WontFit, check_fits, estimate

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, sys
from distill.recipe import StudentConfig
from distill.train import train_student
from edge_runtime.task import TaskSpec
spec = json.load(open(sys.argv[1]))
m = train_student(StudentConfig.model_validate(spec["student"]), TaskSpec.model_validate(spec["task"]), spec["rows"], spec["out"])
print("METRICS" + json.dumps(m))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's resettable RSS peak")
def test_estimate_within_25_percent_of_measured_cpu_peak(small_student, receipts_recipe, receipt_rows, tiny_gemma_dir, tmp_path):
    # batch 4 of real receipts on the tiny Gemma (262k vocabulary): the measured peak is hundreds of MB,
    # far above allocator noise. Fresh process, so memory freed by earlier tests cannot hide the peak.
    student = small_student(receipts_recipe, tiny_gemma_dir, batch_size=4, max_steps=2, val_fraction=0.0)
    spec = {"student": student.model_dump(mode="json"), "task": receipts_recipe.task.model_dump(mode="json"),
            "rows": receipt_rows[:8], "out": str(tmp_path / "run")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "spec.json")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(proc.stdout.split("METRICS", 1)[1])
    est, peak = m["memory_estimate_bytes"], m["peak_memory_bytes"]
    assert peak > 200 * 2**20, m
    assert abs(est - peak) / peak <= 0.25, f"estimate {est / 2**20:.0f} MiB vs measured {peak / 2**20:.0f} MiB: {m['memory_estimate_parts']}"


def test_refuses_when_it_will_not_fit_and_names_the_setting():
    from distill.models.resolve import hf_config_for

    cfg = hf_config_for("gemma-3-270m")
    est = estimate(cfg, TrainingShape("lora", 16, "all-linear", batch_size=64, seq_len=8192, answer_tokens=64 * 8192,
                                      gradient_checkpointing=False, answer_only_head=False, weight_bytes=4, act_bytes=4))
    settings = {"method": "lora", "batch_size": 64, "max_seq_len": 8192, "gradient_checkpointing": False,
                "loss_on_answer_only_head": False}
    with pytest.raises(WontFit) as err:
        check_fits(est, settings)
    msg = str(err.value)
    for hint in ("student.training.batch_size (now 64)", "max_seq_len (now 8192)", "gradient_checkpointing: true",
                 "loss_on_answer_only_head: true"):
        assert hint in msg
    small = estimate(cfg, TrainingShape("lora", 16, "all-linear", batch_size=1, seq_len=128, answer_tokens=32,
                                        gradient_checkpointing=False, answer_only_head=True, weight_bytes=4, act_bytes=4))
    assert check_fits(small, settings).available_bytes > small.total_bytes


def test_estimate_parts_follow_the_settings():
    from distill.models.resolve import hf_config_for

    cfg = hf_config_for("gemma-3-270m")
    kw = dict(batch_size=4, seq_len=512, answer_tokens=360, weight_bytes=4, act_bytes=4)
    lora = estimate(cfg, TrainingShape("lora", 16, "all-linear", gradient_checkpointing=False, answer_only_head=True, **kw))
    full_head = estimate(cfg, TrainingShape("lora", 16, "all-linear", gradient_checkpointing=False, answer_only_head=False, **kw))
    ckpt = estimate(cfg, TrainingShape("lora", 16, "all-linear", gradient_checkpointing=True, answer_only_head=True, **kw))
    full = estimate(cfg, TrainingShape("full", 16, "all-linear", gradient_checkpointing=False, answer_only_head=True, **kw))
    assert lora.parts["weights"] == 268_098_176 * 4
    assert full_head.parts["logits"] > 5 * lora.parts["logits"]
    assert ckpt.parts["activations"] < lora.parts["activations"] / 3
    assert full.parts["optimizer"] == 2 * full.parts["weights"]


def _gemma_estimate(strategy="single", processes=1, method="lora", **kw):
    from distill.models.resolve import hf_config_for

    args = dict(batch_size=4, seq_len=512, answer_tokens=360, gradient_checkpointing=False, answer_only_head=True,
                weight_bytes=2, act_bytes=2, device="cuda")
    args.update(kw)
    return estimate(hf_config_for("gemma-3-270m"),
                    TrainingShape(method, 16, "all-linear", strategy=strategy, processes=processes, **args))


@pytest.mark.parametrize("method", ["lora", "full"])
def test_per_process_parts_under_each_strategy(method):
    one = _gemma_estimate(method=method).parts
    ddp = _gemma_estimate("ddp", 4, method=method).parts
    zero2 = _gemma_estimate("zero2", 4, method=method).parts
    zero3 = _gemma_estimate("zero3", 4, method=method).parts
    fsdp = _gemma_estimate("fsdp", 4, method=method).parts
    grad_op = _gemma_estimate("fsdp-grad-op", 4, method=method).parts
    # DDP: a whole copy per process plus the reducer's buckets (one more copy of the gradients)
    assert {k: ddp[k] for k in one} == one and ddp["ddp_buckets"] == one["gradients"]
    # ZeRO-2: gradients and optimizer state split four ways, weights whole
    assert zero2["weights"] == one["weights"] and zero2["optimizer"] == -(-one["optimizer"] // 4)
    assert zero2["gradients"] == -(-one["gradients"] // 4)
    # ZeRO-3 / FSDP full shard: the weights too, plus the layers gathered for compute
    for sharded in (zero3, fsdp):
        assert sharded["weights"] == -(-one["weights"] // 4) and 0 < sharded["gathered_layers"] < one["weights"] / 4
    # SHARD_GRAD_OP keeps the weights whole at the peak
    assert grad_op["weights"] == one["weights"] and "gathered_layers" not in grad_op
    # each process's batch: activations and logits are never divided
    for parts in (ddp, zero2, zero3, fsdp):
        assert parts["activations"] == one["activations"] and parts["logits"] == one["logits"]
    if method == "full":  # where the bulk is optimizer state, sharding it is what saves memory
        small = dict(method=method, batch_size=1, seq_len=128, answer_tokens=16, gradient_checkpointing=True)
        assert _gemma_estimate("fsdp", 4, **small).total_bytes < _gemma_estimate("ddp", 4, **small).total_bytes / 2


def test_refusal_names_the_launch_setting(monkeypatch):
    import distill.train.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 2 * 2**30)  # a 2 GiB GPU
    settings = {"method": "full", "batch_size": 4, "max_seq_len": 512, "gradient_checkpointing": True,
                "loss_on_answer_only_head": True}
    with pytest.raises(WontFit) as err:
        check_fits(_gemma_estimate("ddp", 4, method="full"), settings)
    assert "per process (4 processes, ddp)" in str(err.value) and "recipes/accelerate/fsdp.yaml" in str(err.value)
    with pytest.raises(WontFit) as err:
        check_fits(_gemma_estimate("zero2", 4, method="full"), settings)
    assert "deepspeed_zero3.yaml" in str(err.value)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 6 * 2**30 // 10)
    with pytest.raises(WontFit) as err:
        check_fits(_gemma_estimate("fsdp", 8, method="full", batch_size=1, seq_len=128, answer_tokens=16), settings)
    assert "--num_processes (now 8)" in str(err.value) and "fsdp_offload_params: true" in str(err.value)


def test_processes_on_one_cpu_share_its_memory(monkeypatch):
    import distill.train.memory as memory

    est = _gemma_estimate("ddp", 2, device="cpu", sharing_device=2)
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(est.total_bytes * 1.5))
    with pytest.raises(WontFit) as err:  # one process would fit; two in the same memory do not
        check_fits(est, {"method": "lora", "batch_size": 4, "max_seq_len": 512, "gradient_checkpointing": True,
                         "loss_on_answer_only_head": True})
    assert "--num_processes (now 2 on this machine)" in str(err.value)
    alone = _gemma_estimate("ddp", 2, device="cpu", sharing_device=1)  # e.g. one process per machine
    assert check_fits(alone, {}).available_bytes == int(est.total_bytes * 1.5)
