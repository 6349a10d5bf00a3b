"""Student training: LoRA, QLoRA or full SFT on the curated teacher answers.

`train_student` (student.py) is the one call the pipeline's train stage makes; the memory
estimate is memory.py, the trainers trainer.py and distillation.py, the merge merge.py.
"""

from distill.train.data import PromptFormat, encode_rows
from distill.train.memory import WontFit
from distill.train.student import QLoRANeedsCUDA, load_student, train_student

__all__ = ["PromptFormat", "encode_rows", "WontFit", "QLoRANeedsCUDA", "load_student", "train_student"]
