"""A description of the machine a measurement ran on: latency means nothing without it."""

from __future__ import annotations

import os
import platform
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and the inference libraries' versions, and any GPU."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    try:
        import psutil

        info["memory_bytes"] = psutil.virtual_memory().total
        info["cpu_cores_usable"] = len(psutil.Process().cpu_affinity()) if hasattr(psutil.Process(), "cpu_affinity") else None
    except ImportError:
        pass
    for mod in ("torch", "transformers", "llama_cpp"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            continue
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    return info


def describe_line(info: dict[str, Any]) -> str:
    mem = f", {info['memory_bytes'] / 2**30:.0f} GB RAM" if info.get("memory_bytes") else ""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return f"{info.get('cpu')} ({info.get('cpu_cores')} cores, {info.get('arch')}){mem}{gpu}; {info.get('os')}, Python {info.get('python')}"
