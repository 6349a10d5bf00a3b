"""llama.cpp's own Python converters, taken from the installed llama-cpp-python's sdist.

`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`, their `conversion/` package and
`gguf-py` are read from the source distribution of exactly the llama-cpp-python version
that is installed, so a GGUF is always written by the converter that matches the runtime
that will load it. Nothing of llama.cpp is copied into this repository: the sdist is
fetched once with pip into the user's cache and the four pieces are extracted there.

Offline: set EDGE_DISTILL_LLAMACPP_SRC to a llama.cpp checkout (the folder holding
convert_hf_to_gguf.py) or to a llama-cpp-python sdist tarball.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tarfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from edge_runtime.cache import cache_dir

NEEDED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/")


class LlamaCppSourceUnavailable(RuntimeError):
    """The converter scripts could not be found or fetched; the message says how to provide them."""


def installed_version() -> str:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError as exc:
        raise LlamaCppSourceUnavailable(
            "llama-cpp-python is not installed; pip install 'edge-distill[runtime]'"
        ) from exc


def _complete(folder: Path) -> bool:
    return all((folder / n.rstrip("/")).exists() for n in NEEDED)


def _extract(tarball: Path, out: Path) -> Path:
    """Extract only the converters from an sdist into `out` (atomically, via a temp folder)."""
    tmp = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(tarball) as tar:
            members = []
            for m in tar.getmembers():
                parts = m.name.split("/", 1)
                if len(parts) < 2 or not parts[1].startswith("vendor/llama.cpp/"):
                    continue
                rel = parts[1][len("vendor/llama.cpp/"):]
                if (m.isfile() or m.isdir()) and any(rel == n or rel.startswith(n) for n in NEEDED):
                    m.name = rel
                    members.append(m)
            if not members:
                raise LlamaCppSourceUnavailable(f"{tarball} holds no vendor/llama.cpp converters")
            tar.extractall(tmp, members=members, filter="data")
        if not _complete(tmp):
            raise LlamaCppSourceUnavailable(f"{tarball} lacks one of {NEEDED}")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _download_sdist(version: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"llama_cpp_python-{version}.tar.gz"))
    if found:
        return found[0]
    from rich.console import Console

    Console(stderr=True).print(f"[dim]fetching llama-cpp-python=={version} source (about 75 MB, once) for its GGUF converters...[/dim]")
    # `--no-binary llama-cpp-python`, not `:all:`: pip prepares the sdist's metadata, and with
    # `:all:` it first built every build dependency (scikit-build-core, hatchling, ...) from source:
    # 6 min 13 s on 2 cores against 7.6 s, half of a fresh quickstart.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
           f"llama-cpp-python=={version}", "-d", str(dest), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(f"llama_cpp_python-{version}.tar.gz"))
    if proc.returncode != 0 or not found:
        raise LlamaCppSourceUnavailable(
            f"could not download the llama-cpp-python {version} source distribution "
            f"({proc.stderr.strip()[-400:]}). Offline, set EDGE_DISTILL_LLAMACPP_SRC to a llama.cpp "
            f"checkout of the same version or to llama_cpp_python-{version}.tar.gz"
        )
    return found[0]


@lru_cache(maxsize=4)
def llamacpp_dir(version: str | None = None) -> Path:
    """The folder holding convert_hf_to_gguf.py, conversion/ and gguf-py/ for `version`."""
    override = os.environ.get("EDGE_DISTILL_LLAMACPP_SRC")
    version = version or installed_version()
    out = cache_dir() / "llama-cpp-src" / version / "llama.cpp"
    if override:
        src = Path(override).expanduser()
        if src.is_dir():
            if not _complete(src):
                raise LlamaCppSourceUnavailable(f"EDGE_DISTILL_LLAMACPP_SRC={src} lacks one of {NEEDED}")
            return src
        if src.is_file():
            return _extract(src, out.with_name("llama.cpp-override"))
        raise LlamaCppSourceUnavailable(f"EDGE_DISTILL_LLAMACPP_SRC={src} does not exist")
    if _complete(out):
        return out
    tarball = _download_sdist(version, out.parent)
    return _extract(tarball, out)


def converter_env(src: Path) -> dict[str, str]:
    """Environment for running a converter: its gguf-py first, then its own folder."""
    env = dict(os.environ)
    paths = [str(src / "gguf-py"), str(src)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


@lru_cache(maxsize=4)
def supported_architectures(src: Path | None = None) -> tuple[str, ...]:
    """HF `architectures` names the converter handles, read from its registry without importing torch."""
    src = src or llamacpp_dir()
    tree = ast.parse((src / "conversion" / "__init__.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP" and node.value is not None:
            return tuple(sorted(ast.literal_eval(node.value)))
    raise LlamaCppSourceUnavailable(f"no TEXT_MODEL_MAP in {src / 'conversion' / '__init__.py'}; unexpected llama.cpp layout")
