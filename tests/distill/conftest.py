"""Fixtures for the distill tests: a head student trained, evaluated, quantized and packed by the
real CLI (`distill run`) on the tiny in-process model, shared by the end-to-end tests of the
task heads (test_classifier_e2e.py, test_retriever_e2e.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# what keeps a whole run small: a few rows, three steps, one GGUF type
TINY_RUN = ["data.split.train_size=60", "data.split.eval_size=6", "student.training.max_steps=3",
            "student.training.batch_size=4", "student.training.val_fraction=0.2",
            "eval.predictors=[teacher,student,gguf]", "eval.bootstrap_samples=50", "quantize.types=[f16]"]
QUIET = ("pooling_type", "SWA cache", "FutureWarning")  # llama.cpp and library warnings stay quiet


@pytest.fixture(scope="session")
def head_student_run(tmp_path_factory, tiny_gemma_dir):
    """head_student_run(recipe, head, also_quiet=()) -> the run directory of `distill run` on
    `recipe` with `student.head=<head>` on the tiny model; the run must succeed without printing
    any of QUIET (or `also_quiet`)."""

    def run(recipe: Path, head: str, also_quiet: tuple[str, ...] = ()) -> Path:
        tmp = tmp_path_factory.mktemp(head)
        run_dir = tmp / "run"
        settings = [f"student.model={tiny_gemma_dir}", f"student.head={head}", *TINY_RUN]
        args = ["run", str(recipe), "--run-dir", str(run_dir), *[a for s in settings for a in ("--set", s)]]
        done = subprocess.run([sys.executable, "-m", "distill.cli", *args], cwd=tmp, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-4000:]
        for noise in (*QUIET, *also_quiet):
            assert noise not in done.stderr, done.stderr[-3000:]
        return run_dir

    return run


def tampered_copy(bundle: Path, name: str, dest: Path) -> Path:
    """A copy of `bundle` at `dest` with one byte of its file `name` flipped (its sha256 no longer matches)."""
    shutil.copytree(bundle, dest)
    data = bytearray((dest / name).read_bytes())
    data[-40] ^= 0xFF
    (dest / name).write_bytes(bytes(data))
    return dest
