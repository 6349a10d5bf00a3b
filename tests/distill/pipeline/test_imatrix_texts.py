"""What the quantize stage's importance matrix reads: what the device will evaluate (a head
student's inputs alone, a generating student's prompts with answers), spread over a data file
that may be sorted by label (SMP2017's train file is)."""

from collections import Counter
from pathlib import Path

from distill.pipeline.stages import imatrix_texts, load_splits
from distill.recipe import load_recipe
from edge_runtime.layout import IMATRIX_HEAD_INPUTS, IMATRIX_PROMPTS

ROOT = Path(__file__).resolve().parents[3]


def _sorted_rows(recipe):
    rows = load_splits(recipe)[0]
    for r in rows:
        r["answer"] = r["gold"]
    return sorted(rows, key=lambda r: r["answer"]["label"])  # as the file is: grouped by label


def test_a_head_student_reads_its_inputs_from_every_label():
    recipe = load_recipe(ROOT / "recipes" / "intents-zh.yaml")
    rows = _sorted_rows(recipe)
    texts = imatrix_texts(recipe, rows)
    assert len(texts) == IMATRIX_HEAD_INPUTS < len(rows)
    by_text = {recipe.task.input_text(r): r["answer"]["label"] for r in rows}
    assert all(t in by_text for t in texts)  # the inputs alone: no instructions, no answer
    assert len(Counter(by_text[t] for t in texts)) >= 28  # of 31; the file's first 512 rows hold 4


def test_a_generating_student_reads_prompts_with_their_answers():
    recipe = load_recipe(ROOT / "recipes" / "intents-zh.yaml", ["student.head=generate"])
    rows = _sorted_rows(recipe)
    texts = imatrix_texts(recipe, rows)
    assert len(texts) == IMATRIX_PROMPTS
    assert all(t.endswith("}") and "### " in t for t in texts)
    assert len({t.rsplit("\n", 1)[-1] for t in texts}) >= 25  # answers of most of the 31 labels
