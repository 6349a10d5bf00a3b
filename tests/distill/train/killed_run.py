"""Run by test_train.py in a subprocess: train, and SIGKILL this process right after the first checkpoint."""

import json
import os
import signal
import sys

from transformers import TrainerCallback

from distill.recipe import StudentConfig
from distill.train import train_student
from edge_runtime.task import TaskSpec


class KillAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        print(f"killing myself after the checkpoint at step {state.global_step}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    spec = json.loads(open(sys.argv[1]).read())
    student = StudentConfig.model_validate(spec["student"])
    task = TaskSpec.model_validate(spec["task"])
    train_student(student, task, spec["rows"], spec["out_dir"], callbacks=[KillAfterFirstSave()])
