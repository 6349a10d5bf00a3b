"""Teachers: things that label inputs for a task. `run_teach` (teach.py) is the teach stage.

Kinds: `dataset` (answers already on disk), `openai` (any OpenAI-compatible endpoint),
`llamacpp` (a local GGUF in process), `transformers` (a local HF model). The model kinds
share one engine (`label.Labeller`): a SQLite response cache in the run directory (so a
re-run, even of a stage whose directory was wiped, pays nothing twice), a cost ledger with
a budget, rate limits, validation with one retry, and self-consistency voting.

Synthesis (`synthesize.py`) is teacher work too: the teacher writes new inputs from seed rows
before the teach stage labels them.
"""

from distill.teachers.labelling import CACHE_NAME, cache_path, make_backend, make_labeller
from distill.teachers.predictor import TeacherPredictor, teacher_predictor
from distill.teachers.privacy import AUDIT_NAME, audit_path
from distill.teachers.teach import run_teach

__all__ = ["AUDIT_NAME", "audit_path", "CACHE_NAME", "cache_path", "make_backend", "make_labeller", "run_teach", "TeacherPredictor",
           "teacher_predictor"]
