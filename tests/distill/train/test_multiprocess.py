"""Two training processes (DDP over gloo on CPU) through the real CLI, on the tiny Gemma:

- `accelerate launch --multi_gpu --num_processes 2 -m distill.cli train` (on a machine
  without CUDA this starts two gloo processes; `--cpu --num_processes 2` would start one);
- both processes train, and their gradients are synchronised: two processes with batch 1
  end with the same adapter as one process with batch 2 (the same global batch);
- a SIGKILL of rank 1 after the first checkpoint leaves no record, adapter or metrics (only
  the main process writes them, at the end), and the same command resumes from that checkpoint.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "recipes" / "receipts-small.yaml"
STEPS, SAVE_EVERY = 8, 2


def _args(tiny, batch_size):
    sets = {"data.split.train_size": 8, "data.split.eval_size": 2, "student.model": tiny,
            "student.training.max_seq_len": 1024, "student.training.val_fraction": 0,
            "student.lora.dropout": 0, "student.training.max_steps": STEPS,
            "student.training.eval_steps": SAVE_EVERY, "student.training.batch_size": batch_size,
            "student.training.learning_rate": 2e-3}
    return [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]


def _env():
    # one thread per process: two processes share the CI's two cores
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _distill(*args, cwd):
    return subprocess.run([sys.executable, "-m", "distill.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=_env())


def _launch(*args, cwd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "distill.cli", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())


def _worker(launcher: subprocess.Popen, rank: int) -> psutil.Process | None:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            env = child.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("RANK") == str(rank) and "distill.cli" in " ".join(child.cmdline()):
            return child
    return None


def _adapter(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "train/adapter/adapter_model.safetensors"))


def test_two_processes_train_in_step_write_once_and_resume_after_a_kill(tmp_path, tiny_gemma_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    prepared = _distill("run", str(RECIPE), "--until", "curate", "--run-dir", str(one), *_args(tiny_gemma_dir, 2),
                        cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    shutil.copytree(one, two)  # teach and curate do not depend on the batch size

    # one process, batch 2: the reference
    ref = _distill("train", str(RECIPE), "--run-dir", str(one), *_args(tiny_gemma_dir, 2), cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]

    # two processes, batch 1 each; kill rank 1 once the first checkpoint is complete
    args = ["train", str(RECIPE), "--run-dir", str(two), *_args(tiny_gemma_dir, 1)]
    first = _launch(*args, cwd=tmp_path)
    state = two / f"train/checkpoints/checkpoint-{SAVE_EVERY}/trainer_state.json"
    deadline = time.time() + 240
    while not state.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim = _worker(first, rank=1)
    assert victim is not None and state.exists(), first.communicate()[0][-3000:]
    victim.send_signal(signal.SIGKILL)
    out = first.communicate(timeout=120)[0]
    assert first.returncode != 0, out[-3000:]
    # nothing final was written: the stage is not done, so the next command redoes it
    for path in ("train/record.json", "train/train_metrics.json", "train/adapter", "train/merged"):
        assert not (two / path).exists(), path

    again = _launch(*args, cwd=tmp_path)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out[-4000:]
    metrics = json.loads((two / "train/train_metrics.json").read_text())
    record = json.loads((two / "train/record.json").read_text())
    assert record["outputs"]["processes"] == metrics["processes"] == 2
    assert metrics["resumed_from"] and Path(metrics["resumed_from"]).name.startswith("checkpoint-")
    resumed_at = int(Path(metrics["resumed_from"]).name.split("-")[1])
    assert SAVE_EVERY <= resumed_at < STEPS and metrics["steps"] == STEPS
    assert metrics["train_rows"] == 8 and metrics["dropped_too_long"] == []  # 4 global batches of 2 distinct rows
    assert all(t > 0 for t in metrics["trained_tokens_per_process"]), metrics  # both processes trained
    assert (two / "train/merged/config.json").exists()

    # same global batch, same result: the gradients were averaged across the two processes
    import torch

    a, b = _adapter(one), _adapter(two)
    assert a.keys() == b.keys()
    moved = max(float(t.abs().max()) for k, t in a.items() if "lora_B" in k)
    assert moved > 1e-3  # training moved the adapter (LoRA B starts at zero)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"adapter max |one process - two processes| = {diff:.2e}, largest LoRA B entry {moved:.2e}")
    assert diff < 1e-4, diff



PROBE = """
import sys, torch, torch.distributed as dist
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from distill.train.loss import answer_only_loss
dist.init_process_group("gloo")
torch.manual_seed(0)
model = get_peft_model(AutoModelForCausalLM.from_pretrained(sys.argv[1]), LoraConfig(r=4, target_modules="all-linear"))
for name, p in model.named_parameters():
    if "lora_B" in name:
        torch.nn.init.normal_(p, std=0.02)  # so every LoRA matrix gets a gradient
ddp = torch.nn.parallel.DistributedDataParallel(model)
ids = torch.randint(0, 1000, (1, 16), generator=torch.Generator().manual_seed(dist.get_rank()))  # different rows
answer_only_loss(ddp, ids, ids.clone(), torch.ones_like(ids)).backward()
grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
both = [torch.zeros_like(grad) for _ in range(2)]
dist.all_gather(both, grad)
verdict = "SAME" if torch.equal(both[0], both[1]) else "DIFFERENT"
open(f"{sys.argv[2]}/rank{dist.get_rank()}.txt", "w").write(verdict)  # a file each: shared stdout interleaves
dist.destroy_process_group()
"""


def test_answer_only_loss_synchronises_gradients_under_ddp(tmp_path, tiny_gemma_dir):
    """The loss's output-layer shortcut must still go through DDP's forward: called on the unwrapped
    body, the two processes' gradients (from different rows) stay different, i.e. each trains alone."""
    (tmp_path / "probe.py").write_text(PROBE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(port), str(tmp_path / "probe.py"), str(tiny_gemma_dir), str(tmp_path)],
                         capture_output=True, text=True, timeout=240, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    verdicts = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    assert verdicts == ["SAME", "SAME"], verdicts + [out.stderr[-2000:]]  # each rank says
