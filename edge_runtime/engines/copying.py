"""Copy-constrained answers: extraction values that must be text of the input.

A small student copying from OCR text misspells (`SRIPUTRA` for `SRI PUTRA`), changes a digit
(`29-03-18` for `19-03-18`), or loops on one token until the length limit and leaves no JSON at
all. Where the task marks a field `copied`, the answer's grammar allows for that field only a
substring of the input, its lines joined by single spaces (as labels join a value printed over
two lines): those mistakes become impossible, while the model still decides where the value
starts and where it ends.

llguidance compiles "a substring of this list of chunks" to an automaton
(`%regex {"substring_chunks": [...]}` in its Lark syntax); each chunk is one input character
already escaped as a JSON string needs it, so a value never ends inside an escape.
"""

from __future__ import annotations

import json
import re

from edge_runtime.task import TaskSpec


def copy_source(text: str) -> str:
    """The text a copied value is a substring of: the input with its line breaks as one space."""
    return re.sub(r"[ \t]*\n[ \t]*", " ", text).strip()


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a Lark string literal: the same escapes as JSON


def copy_grammar(task: TaskSpec, text: str) -> str:
    """The Lark grammar of this input's answers: the task's JSON object in its canonical form
    (`TaskSpec.render_answer`: keys in order, ", " and ": "), copied fields restricted to
    substrings of `text`, the others any JSON string."""
    copied = set(task.copied_fields())
    if not copied:
        raise ValueError(f"task {task.name!r} has no copied field: decode with its JSON schema instead")
    parts = []
    for i, key in enumerate(task.answer_keys()):
        parts.append(_literal(("{" if i == 0 else ", ") + _literal(key) + ": "))
        parts.append("COPIED" if key in copied else "value")
    parts.append(_literal("}"))
    chunks = [json.dumps(c, ensure_ascii=False)[1:-1] for c in copy_source(text)]
    return "\n".join([
        "%llguidance {}",
        "start: " + " ".join(parts),
        'COPIED: "\\"" %regex ' + json.dumps({"substring_chunks": chunks}, ensure_ascii=False) + ' "\\""',
        'value: %json {"type": "string"}',
    ])
