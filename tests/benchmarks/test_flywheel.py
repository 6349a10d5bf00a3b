"""benchmarks/flywheel.py's loop in a tiny configuration, so it cannot rot: a tiny classifier
student of intents-zh (in-process model, real CLI), then the benchmark script itself: drift
phases through `edge-runtime serve`, the production server with the loopback teacher, one
turn (request log -> data.logs -> train from the adapter -> pack), `edge-runtime compare`
and the hot swap."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "flywheel.py"


def _flywheel():
    spec = importlib.util.spec_from_file_location("flywheel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_loopback_teacher_answers_the_label_and_errs_at_its_rate():
    from edge_runtime.task import TaskSpec

    fw = _flywheel()
    task = TaskSpec.model_validate({"name": "t", "kind": "classification", "input_field": "text",
                                    "labels": ["a", "b", "c"], "instructions": "Which one?"})
    labelled = {f"text {i}": "abc"[i % 3] for i in range(2000)}
    teacher = fw.LabelTeacher(task, labelled, error_rate=0.1, seed=1)
    answers = {t: json.loads(teacher._answer({"messages": [{"role": "user", "content": task.render_prompt({"text": t})}]}))
               for t in labelled}
    wrong = sum(answers[t]["label"] != gold for t, gold in labelled.items())
    assert wrong == teacher.wrong and 150 < wrong < 250  # ~10% of 2000, each one another label
    assert all(answers[t]["label"] in "abc" for t in labelled)
    again = fw.LabelTeacher(task, labelled, error_rate=0.1, seed=1)
    assert all(again.label_for(t) == answers[t]["label"] for t in list(labelled)[:200])  # the same inputs, the same errors
    assert fw.LabelTeacher(task, labelled, 0.0, 1).label_for("text 4") == "b"


@pytest.mark.slow
def test_the_flywheel_loop_runs_end_to_end_on_a_tiny_student(tmp_path, tiny_gemma_dir):
    run = tmp_path / "run"
    build = ["run", str(ROOT / "recipes" / "intents-zh.yaml"), "--run-dir", str(run), "--set", f"student.model={tiny_gemma_dir}",
             "--set", "data.split.train_size=60", "--set", "data.split.eval_size=20", "--set", "student.training.max_steps=2",
             "--set", "student.training.batch_size=4", "--set", "eval.predictors=[gguf]", "--set", "quantize.types=[f16]"]
    done = subprocess.run([sys.executable, "-m", "distill.cli", *build], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    work = tmp_path / "work"
    args = ["--bundle", str(run / "pack" / "bundle"), "--work", str(work), "--stream", "30", "--later", "12",
            "--drift-requests", "50", "--drift-window", "50", "--every", "25", "--turn-rows", "20", "--turn-steps", "2",
            "--turn-type", "f16", "--set", "student.training.batch_size=4", "--threads", "2", "--swap-always"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r = json.loads((work / "flywheel.json").read_text())

    phases = {p["phase"].split(" ")[0]: p for p in r["drift"]["phases"]}
    assert phases["English"]["flag_first_at"] == 50 and phases["English"]["psi_end"]["char_class"] > 0.2
    assert phases["long"]["psi_end"]["chars"] > 0.2

    loop = r["loop"]
    assert loop["stream"]["requests"] == 30 and r["teacher"]["asked"] > 0
    # every request the teacher answered (escalated or shadowed) is a training row of the turn
    assert loop["turn"]["log_rows"]["rows"] == loop["turn"]["log_rows"]["records"] - loop["turn"]["log_rows"]["student_only"] > 0
    assert loop["turn"]["train"]["steps"] == 2 and Path(loop["turn"]["new_bundle"], "head.npz").is_file()
    c = loop["compare"]
    assert c["rows"] == 12 and c["exit_code"] == (0 if c["promote"] else 1)
    assert loop["reload"]["bundle"] and loop["later_after"]["requests"] == loop["later_before"]["requests"] == 12
    assert "== one turn" in done.stdout and "compare on 12 later rows" in done.stdout
