"""Device profiles as data: the shipped ones in profiles.yaml, users' own from a YAML file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

SHIPPED = Path(__file__).with_name("profiles.yaml")
GIB = 1024**3


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    arch: str = "x86_64"
    cores: int = Field(4, gt=0)
    memory_gb: float = Field(..., gt=0, description="RAM, or GPU memory for a cuda profile")
    reserve_gb: float = Field(1.0, ge=0, description="kept for the OS and other services")
    engines: list[Literal["llamacpp", "onnxruntime"]] = Field(default_factory=lambda: ["llamacpp"])
    accelerator: Literal["cpu", "cuda", "metal"] = "cpu"
    gpu_layers: int = Field(0, ge=-1, description="layers llama.cpp offloads to the GPU (-1: all, 0: none); "
                                                   "0 unless the accelerator is a GPU: offload is what makes a GPU server fast")
    host_memory_gb: float | None = Field(None, gt=0, description="a GPU profile's host RAM in GB (memory_gb is then the "
                                                                  "GPU's); None: not checked")

    @property
    def budget_bytes(self) -> int:
        return int((self.memory_gb - self.reserve_gb) * GIB)

    @property
    def offloads(self) -> bool:
        return self.accelerator != "cpu" and self.gpu_layers != 0

    @property
    def host_budget_bytes(self) -> int | None:
        return None if self.host_memory_gb is None else int((self.host_memory_gb - self.reserve_gb) * GIB)


def load_profiles(user_file: str | Path | None = None) -> dict[str, Profile]:
    """Shipped profiles, overlaid by a user's YAML file (argument or $EDGE_RUNTIME_PROFILES)."""
    files = [SHIPPED]
    user_file = user_file or os.environ.get("EDGE_RUNTIME_PROFILES")
    if user_file:
        files.append(Path(user_file))
    out: dict[str, Profile] = {}
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"profiles file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of profile name -> settings")
        for name, spec in data.items():
            try:
                out[name] = Profile(name=name, **(spec or {}))
            except Exception as exc:
                raise ValueError(f"{path}: profile {name!r} is invalid: {exc}") from exc
    return out


def get_profile(name: str, user_file: str | Path | None = None) -> Profile:
    profiles = load_profiles(user_file)
    if name not in profiles:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(sorted(profiles))} "
                       f"(add your own in a YAML file and pass --profiles FILE)")
    return profiles[name]


def gpu_layers_for(profile_name: str | None, override: int | None = None) -> int:
    """Layers to offload: `override` (a --gpu-layers flag) if given, else the named profile's,
    else 0. A bundle packed for a profile this machine does not know runs on the CPU."""
    if override is not None:
        if override < -1:
            raise ValueError(f"--gpu-layers {override}: give -1 (all layers), 0 (none) or a layer count")
        return override
    try:
        return get_profile(profile_name).gpu_layers if profile_name else 0
    except (KeyError, FileNotFoundError, ValueError):
        return 0
