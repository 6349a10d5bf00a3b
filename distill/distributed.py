"""Several training processes (`accelerate launch` / `torchrun`): who writes, and waiting for each other.

Every process runs the same `distill train|run` command. Only the main process (rank 0) writes
the adapter, the merged model, the metrics and the stage records; the others train (DDP keeps
their gradients in step) and wait at barriers. The launcher's environment says how many
processes there are (WORLD_SIZE) before torch.distributed is set up, so the pipeline can ask
before any model is loaded. On CPU, `accelerate launch --cpu --num_processes 2` starts ONE
process (accelerate's CPU launcher needs MPI for more); use `accelerate launch --multi_gpu
--num_processes 2` or `torchrun --nproc_per_node 2`, which start gloo processes on CPU.
"""

from __future__ import annotations

import os
from datetime import timedelta

# the other processes wait at a barrier while the main process labels and curates: hours, not
# torch's default 30 minutes
BARRIER_TIMEOUT = timedelta(hours=48)


class MultiProcessUnsupported(RuntimeError):
    """This training path runs in one process only; the message says what to run instead."""

    refusal = True


def world_size() -> int:
    """Processes in this training job (1 when not launched by accelerate/torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_world_size() -> int:
    """Processes on this machine: they share its host memory."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size())) or 1)


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait for every process; sets up the process group (gloo on CPU, nccl on CUDA) the
    first time, through accelerate so the trainer later reuses the same group."""
    if world_size() <= 1:
        return
    from accelerate import PartialState

    from distill.train.memory import device_name

    PartialState(cpu=device_name() == "cpu", timeout=BARRIER_TIMEOUT).wait_for_everyone()


def active() -> bool:
    """True inside an initialised multi-process group (the loss must then go through the wrapper's
    forward, or DDP never synchronises the gradients and FSDP never gathers the weights)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def strategy() -> str:
    """How the launcher shards training state: single, ddp, fsdp, fsdp-grad-op, zero2 or zero3."""
    if world_size() <= 1:
        return "single"
    env = os.environ
    if env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "zero3" if env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2") == "3" else "zero2"
    if env.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        if env.get("FSDP_VERSION", "1") == "2":
            return "fsdp" if env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() == "true" else "fsdp-grad-op"
        shard = env.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").upper()
        return {"NO_SHARD": "ddp", "3": "ddp", "SHARD_GRAD_OP": "fsdp-grad-op", "2": "fsdp-grad-op"}.get(shard, "fsdp")
    return "ddp"


def gather(value) -> list:
    """`value` from every process, in rank order (a one-item list in a single process)."""
    if not active():
        return [value]
    import torch.distributed as dist

    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def effective_strategy(device: str) -> tuple[str, str | None]:
    """(the strategy training will really use, a warning when it is not the one launched).

    accelerate applies FSDP and DeepSpeed on GPUs only: on CPU it starts the processes and
    silently trains them with plain DDP (checked with accelerate 1.16, `recipes/accelerate/fsdp.yaml`
    and --num_processes 2), so every process holds the whole model."""
    asked = strategy()
    if device != "cpu" or asked in ("single", "ddp"):
        return asked, None
    return "ddp", (f"the launch asks for {asked}, but accelerate shards (FSDP/DeepSpeed) on GPUs only: these "
                   f"{world_size()} CPU processes train with plain DDP, each holding the whole model")
