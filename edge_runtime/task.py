"""The task spec: one definition of a task that every stage shares.

The teacher is prompted with it, training examples are rendered with it, evaluation
parses with it and the runtime serves with it (from the copy stored in the bundle), so
a student is never served with a prompt different from the one it was trained on.
Only pydantic and the standard library here: the runtime on a router imports this.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from edge_runtime.normalise import DEFAULT_DATE_ORDER, NORMALISERS, normalise_date
from edge_runtime.prompt_text import PROMPT_TEXT, detect_language, prompt_text

TASK_KINDS = ("extraction", "classification", "faq")
NO_ANSWER = "none"

# The toolkit's plain prompt format for base models without a chat template (English; a zh task
# renders PROMPT_TEXT["zh"]'s while its template is left at this default).
PLAIN_TEMPLATE = PROMPT_TEXT["en"]["plain_template"]

# `student_prompt: auto` per task kind, chosen on measurement (docs/results.md, "Short student
# prompts": same data and seed, only the prompt changed): short matched full on extraction with 8%
# fewer prompt tokens and beat it on classification (0.700 vs 0.655, 34% fewer); on FAQ full won
# (0.752 vs 0.696), so FAQ keeps the instructions.
STUDENT_PROMPT_BY_KIND = {"extraction": "short", "classification": "short", "faq": "full"}


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FieldSpec(Strict):
    """One output field of an extraction task."""

    description: str = Field("", description="what the field holds, for the recipe's reader: it is not put "
                             "into prompts (say it in `instructions` for the models to see it)")
    type: Literal["text", "date", "amount"] = Field(
        "text", description="how values are normalised before comparison"
    )
    date_order: Literal["dmy", "mdy", "ymd"] = Field(
        DEFAULT_DATE_ORDER, description="date fields: how to read an all-numeric date whose year has two digits "
        "(24.03.05 is 24 March 2005 as dmy, 5 March 2024 as ymd, the usual order on Chinese documents)"
    )
    copied: bool = Field(
        False, description="the value is text copied from the input: the device's schema decoder lets the model "
        "write only a substring of the input (its lines joined by spaces), so a copied value cannot be misspelt, "
        "invented or run on past the input. Leave false where the value is rewritten (normalised, translated)"
    )


class FewShot(Strict):
    input: dict[str, Any] = Field(..., description="an example row, with the task's input_field")
    output: dict[str, Any] = Field(..., description="its answer, with the task's answer keys")


class TaskSpec(Strict):
    """What a task reads, what it answers, and how answers are judged."""

    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_-]*$", description="used in URLs and file names")
    kind: Literal["extraction", "classification", "faq"] = Field(
        ..., description="extraction: fill named fields; classification: pick one label; faq: pick a knowledge-base entry")
    instructions: str = Field(..., min_length=1, description="what the model is asked to do")
    input_field: str = Field("text", description="the input column; a list of lines is joined by newlines")
    fields: dict[str, FieldSpec] = Field(default_factory=dict, description="extraction: output fields")
    labels: list[str] = Field(default_factory=list, description="classification: the label set")
    faq_ids: list[str] = Field(default_factory=list, description="faq: the ids the answer may name (filled from knowledge_base)")
    knowledge_base: str | None = Field(
        None, description="faq: JSONL of {id, question, answers} the query is matched against "
        "(relative to the recipe, or to the task file in a bundle)"
    )
    top_k: int = Field(5, gt=0, description="faq: how many retrieved FAQ entries the prompt lists as candidates")
    few_shot: list[FewShot] = Field(default_factory=list, description="worked examples placed in every prompt; none by "
                                    "default: they lengthen every prompt, and the trained student learns the format "
                                    "without them")
    template: str = Field(PLAIN_TEMPLATE, description="prompt template with {instructions} and {input}; "
                          "left at the default, the plain format in the task's language")
    language: Literal["auto", "en", "zh"] = Field(
        "auto", description="language of the toolkit's own prompt text around the instructions (plain template, FAQ "
        "candidate block, teacher system and retry turns): en, zh, or auto = zh when at least 30% of the letters of "
        "the instructions and examples (and of the data's inputs, when a recipe loads) are Chinese. A bundle stores "
        "the resolved value, so the device renders exactly what the student was trained on"
    )
    student_prompt: Literal["auto", "full", "short"] = Field(
        "auto", description="the prompt the student is trained on and served with: full (the teacher's: instructions, "
        "examples, the input), short (a task tag in place of the instructions and examples, then the input; FAQ "
        "candidates stay), or auto = the kind's measured better one (short for extraction and classification, full "
        "for faq; docs/results.md, \"Short student prompts\"). Teachers always get the full prompt. Short saves the instructions' tokens at every training "
        "step and every uncached request; the student learns the task from its rows, not from the instructions. A "
        "bundle stores it, so the device renders what the student was trained on")
    _kb: Any = PrivateAttr(default=None)  # a knowledge base pinned at load (a bundle's, from verified bytes)

    @model_validator(mode="after")
    def _kind_needs(self) -> "TaskSpec":
        if self.kind == "extraction" and not self.fields:
            raise ValueError("an extraction task needs `fields` (e.g. fields: {total: {type: amount}})")
        if self.kind == "classification" and len(self.labels) < 2:
            raise ValueError("a classification task needs `labels` with at least two labels")
        if self.kind == "classification" and len(set(self.labels)) != len(self.labels):
            raise ValueError("classification `labels` contain duplicates")
        if self.knowledge_base and self.kind != "faq":
            raise ValueError("`knowledge_base` is for faq tasks only; remove it or set kind: faq")
        if "{input}" not in self.template:
            raise ValueError("`template` must contain {input}")
        if self.student_prompt == "auto":  # resolved at once, so a bundle stores what the student saw
            self.student_prompt = STUDENT_PROMPT_BY_KIND[self.kind]
        return self

    # ---- rendering -------------------------------------------------------------
    @property
    def prompt_language(self) -> str:
        """`en` or `zh`: `language`, or for `auto` what the instructions and examples are written in."""
        if self.language != "auto":
            return self.language
        return detect_language([self.instructions, *(self.input_text(s.input) for s in self.few_shot
                                                     if self.input_field in s.input)])

    @property
    def prompt_strings(self) -> dict[str, str]:
        """The toolkit's prompt strings in this task's language (edge_runtime/prompt_text.py)."""
        return prompt_text(self.prompt_language)

    def prompt_template(self) -> str:
        """The template rendered: `template`, or the language's plain format when it is left at the default."""
        return self.prompt_strings["plain_template"] if self.template == PLAIN_TEMPLATE else self.template

    def resolve_language(self, inputs: list[str] = ()) -> str:
        """Fix `language: auto` to `en` or `zh`, counting `inputs` (e.g. the data's) with the
        instructions and examples, so what is trained, stored in the bundle and served agree."""
        if self.language == "auto":
            lang = self.prompt_language
            if inputs and lang == "en":
                lang = detect_language([self.instructions, *inputs])
            self.language = lang
        if self.template == PLAIN_TEMPLATE:
            self.template = self.prompt_template()  # the resolved recipe and task.json show the text rendered
        return self.language

    def input_text(self, example: dict[str, Any]) -> str:
        """The task input of one example as text (a list of OCR lines becomes lines)."""
        if self.input_field not in example:
            raise KeyError(
                f"example has no input field {self.input_field!r} (it has {sorted(example)}); "
                f"set task.input_field to the column that holds the input"
            )
        value = example[self.input_field]
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        return str(value)

    def context_for(self, example: dict[str, Any]) -> str:
        """Retrieved FAQ candidates for a faq task with a knowledge base; "" otherwise."""
        if self.kind != "faq" or not self.knowledge_base:
            return ""
        from edge_runtime.retrieval import candidates_for

        return candidates_for(self.knowledge(), self.input_text(example), self.top_k, self.prompt_language)

    def knowledge(self):
        """The task's knowledge base: the one pinned at load (`pin_knowledge_base`; a bundle's,
        never re-read), else read from `knowledge_base` (re-read when the file changes)."""
        if self._kb is not None:
            return self._kb
        from edge_runtime.retrieval import load_knowledge_base

        return load_knowledge_base(self.knowledge_base)

    def pin_knowledge_base(self, kb, name: str) -> None:
        """Serve `kb` from now on, whatever happens to the file `name`; fills `faq_ids` from it."""
        self._kb, self.knowledge_base = kb, name
        unknown = sorted(set(self.faq_ids) - set(kb.ids))
        if unknown:
            raise ValueError(f"task.faq_ids: {unknown[:5]} not in the knowledge base {name}")
        if not self.faq_ids:
            self.faq_ids = kb.ids

    def attach_knowledge_base(self, base_dir: str | Path) -> list[str]:
        """Resolve `knowledge_base` against `base_dir`, load it and fill `faq_ids` from it, so
        the answer schema's enum is the knowledge base's ids. Returns problems (empty if fine)."""
        if not self.knowledge_base:
            return []
        from edge_runtime.retrieval import load_knowledge_base

        path = Path(self.knowledge_base)
        resolved = path if path.is_absolute() else (Path(base_dir) / path).resolve()
        try:
            kb = load_knowledge_base(resolved)
        except (OSError, ValueError) as exc:
            return [f"task.knowledge_base: {exc}"]
        self.knowledge_base = str(resolved)
        unknown = sorted(set(self.faq_ids) - set(kb.ids))
        if unknown:
            return [f"task.faq_ids: {unknown[:5]} not in the knowledge base {resolved.name}; leave faq_ids out to take them from it"]
        if not self.faq_ids:
            self.faq_ids = kb.ids
        return []

    def render_prompt(self, example: dict[str, Any], context: str = "") -> str:
        """The exact prompt the student sees (and is trained on): `student_prompt` full or short.
        `context` carries retrieved FAQ candidates for faq tasks; when not given, a faq task with
        a knowledge base retrieves them itself, so training, eval and runtime build the same prompt."""
        if self.student_prompt == "short":
            return self.prompt_template().format(instructions=f"[{self.name}]", input=self._input_with(example, context))
        return self.render_teacher_prompt(example, context)

    def render_teacher_prompt(self, example: dict[str, Any], context: str = "") -> str:
        """The full prompt (instructions, examples, input): what a teacher reads, whatever the student's."""
        text = self._input_with(example, context)
        template = self.prompt_template()
        shots = "".join(
            template.format(instructions="", input=self.input_text(s.input)).lstrip()
            + self.render_answer(s.output)
            + "\n\n"
            for s in self.few_shot
        )
        return template.format(instructions=self.instructions + ("\n\n" + shots.rstrip() if shots else ""), input=text)

    def _input_with(self, example: dict[str, Any], context: str = "") -> str:
        text = self.input_text(example)
        context = context or self.context_for(example)
        return f"{text}\n\n{context}" if context else text

    def render_answer(self, answer: dict[str, Any]) -> str:
        """The canonical JSON text of an answer: the training target and the grammar's output."""
        ordered = {k: answer.get(k, "") for k in self.answer_keys()}
        return json.dumps(ordered, ensure_ascii=False)

    def copied_fields(self) -> list[str]:
        """Extraction fields whose values the decoder restricts to text of the input."""
        return [k for k, f in self.fields.items() if f.copied] if self.kind == "extraction" else []

    def answer_keys(self) -> list[str]:
        if self.kind == "extraction":
            return list(self.fields)
        if self.kind == "classification":
            return ["label"]
        return ["faq_id"]

    # ---- schema and parsing ----------------------------------------------------
    def json_schema(self) -> dict[str, Any]:
        """JSON schema of a valid answer: sent to API teachers, compiled to a grammar locally."""
        if self.kind == "extraction":
            props: dict[str, Any] = {k: {"type": "string"} for k in self.fields}
        elif self.kind == "classification":
            props = {"label": {"type": "string", "enum": list(self.labels)}}
        else:
            props = {"faq_id": {"type": "string", "enum": [*self.faq_ids, NO_ANSWER] if self.faq_ids else None}}
            if props["faq_id"]["enum"] is None:
                del props["faq_id"]["enum"]
        return {
            "type": "object",
            "properties": props,
            "required": list(props),
            "additionalProperties": False,
        }

    def validate_answer(self, answer: Any, language: str = "en") -> list[str]:
        """Problems with an answer object, in `language` (the retry turn speaks the task's);
        empty when it is valid."""
        text = prompt_text(language)
        if not isinstance(answer, dict):
            return [text["problem_not_object"].format(kind=type(answer).__name__)]
        problems = []
        keys = self.answer_keys()
        for k in keys:
            if k not in answer:
                problems.append(text["problem_missing_key"].format(key=k))
            elif not isinstance(answer[k], str):
                problems.append(text["problem_not_string"].format(key=k, kind=type(answer[k]).__name__))
        extra = sorted(set(answer) - set(keys))
        if extra:
            problems.append(text["problem_extra_keys"].format(keys=extra))
        if self.kind == "classification" and isinstance(answer.get("label"), str) and answer["label"] not in self.labels:
            problems.append(text["problem_bad_label"].format(label=answer["label"], n=len(self.labels)))
        if self.kind == "faq" and self.faq_ids and isinstance(answer.get("faq_id"), str):
            if answer["faq_id"] not in self.faq_ids and answer["faq_id"] != NO_ANSWER:
                problems.append(text["problem_bad_faq_id"].format(faq_id=answer["faq_id"]))
        return problems

    def parse(self, text: str, language: str = "en") -> tuple[dict[str, Any] | None, list[str]]:
        """Parse a model's raw output into an answer: (answer, problems in `language`).

        Tolerates text around one JSON object (reasoning, code fences) but never guesses:
        the answer is None whenever no valid object is found.
        """
        candidate = extract_json_object(text)
        if candidate is None:
            return None, [prompt_text(language)["problem_no_json"]]
        problems = self.validate_answer(candidate, language)
        return (candidate if not problems else None), problems

    # ---- normalisation ---------------------------------------------------------
    def normalise(self, key: str, value: Any) -> str:
        """Comparable form of one answer value, by the field's type."""
        if value is None:
            return ""
        spec = self.fields.get(key) if self.kind == "extraction" else None
        if spec is not None and spec.type == "date":
            return normalise_date(str(value), spec.date_order)
        return NORMALISERS[spec.type if spec is not None else "text"](str(value))

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_stored(cls, data: str | bytes) -> "TaskSpec":
        """A task.json written by the toolkit (a bundle's). One written before `language`
        existed was trained on English prompt text, so it is read as `en`, never re-detected."""
        raw = json.loads(data)
        if isinstance(raw, dict):
            raw.setdefault("language", "en")
            raw.setdefault("student_prompt", "full")  # before the setting, every student was trained on full
        return cls.model_validate(raw)

    @classmethod
    def from_file(cls, path) -> "TaskSpec":
        """Load a task file (e.g. a bundle's); a relative knowledge_base is relative to it."""
        with open(path, encoding="utf-8") as fh:
            task = cls.from_stored(fh.read())
        problems = task.attach_knowledge_base(Path(path).parent)
        if problems:
            raise ValueError(f"{path}: " + "; ".join(problems))
        return task


def extract_json_object(text: str) -> Any | None:
    """The first decodable JSON object in `text`, after any reasoning block."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text[match.start():])
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None




def complete_json_prefix(text: str) -> bool:
    """True when the text's first `{` opens a JSON object that has closed (and no `<think>` block is
    still open): where an unconstrained generator can stop early."""
    if "<think>" in text and "</think>" not in text:
        return False
    start = text.find("{")
    if start < 0:
        return False
    try:
        json.JSONDecoder().raw_decode(text[start:])
        return True
    except json.JSONDecodeError:
        return False


def example_score(task: TaskSpec, pred: dict[str, Any] | None, ref: dict[str, Any] | None) -> float:
    """One example's headline score in [0, 1]: the share of fields right (extraction),
    or 1/0 for the label (classification) or the chosen FAQ entry (faq), after the task's
    normalisation. Evaluation (`distill.eval.metrics`) and `quantize sweep` both score with it."""
    keys = task.answer_keys()
    if ref is None:
        raise ValueError("example_score needs a reference answer")
    if pred is None:
        return 0.0
    right = sum(task.normalise(k, pred.get(k)) == task.normalise(k, ref.get(k)) for k in keys)
    return right / len(keys)
