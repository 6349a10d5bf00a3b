"""What a teacher is asked, and how its reply is split into reasoning and answer.

The user turn is the task's full prompt (`task.render_teacher_prompt`: the student's own with
the default `student_prompt: full`), so the teacher and the student see the same input; the
system turn adds the answer's JSON schema for chat models. A reply's reasoning (`reasoning_content`, or `<think>` blocks in the content) is
separated here, before parsing, so it is never mistaken for the answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge_runtime.prompt_text import prompt_text
from edge_runtime.task import TaskSpec

_THINK = re.compile(r"<think>(.*?)</think>", re.S)


def system_message(task: TaskSpec) -> str:
    schema = json.dumps(task.json_schema(), ensure_ascii=False)
    return task.prompt_strings["teacher_system"].format(schema=schema)


def build_messages(task: TaskSpec, row: dict[str, Any]) -> list[dict[str, str]]:
    """The system turn (schema, in the task's prompt language) and the student's own prompt."""
    return [
        {"role": "system", "content": system_message(task)},
        {"role": "user", "content": task.render_teacher_prompt(row)},
    ]


def retry_messages(messages: list[dict[str, str]], bad_reply: str, problems: list[str],
                   language: str = "en") -> list[dict[str, str]]:
    """The conversation again, with the invalid reply and what was wrong with it."""
    text = prompt_text(language)
    complaint = text["teacher_retry"].format(problems=text["list_sep"].join(problems))
    return [*messages, {"role": "assistant", "content": bad_reply}, {"role": "user", "content": complaint}]


def flatten(messages: list[dict[str, str]], language: str = "en") -> str:
    """A plain prompt for base models without a chat template.

    The first attempt is the student's own prompt (the user turn; the schema is enforced by
    a grammar instead of the system turn). A retry appends the bad reply and the complaint."""
    turns = [m for m in messages if m["role"] != "system"]
    text = turns[0]["content"]
    for m in turns[1:]:
        text += m["content"] + "\n\n"
    if len(turns) > 1:
        text += prompt_text(language)["output_marker"]
    return text


def split_reasoning(content: str | None, reasoning_content: str | None = None) -> tuple[str, str]:
    """(answer_text, reasoning) from a reply.

    Handles `reasoning_content` (DeepSeek-R1 API), `<think>...</think>` blocks, a closing
    `</think>` whose opening tag was in the prompt, and an unclosed `<think>` (the reply was
    cut while thinking: there is no answer, and none is invented from the reasoning)."""
    content = content or ""
    parts = [reasoning_content] if reasoning_content else []
    parts += [m.strip() for m in _THINK.findall(content)]
    answer = _THINK.sub("", content)
    if "</think>" in answer:  # opened in the prompt template
        head, answer = answer.rsplit("</think>", 1)
        parts.append(head.strip())
    if "<think>" in answer:  # never closed: all of it is reasoning
        answer, tail = answer.split("<think>", 1)
        parts.append(tail.strip())
    return answer.strip(), "\n\n".join(p for p in parts if p)


def estimate_tokens(messages: list[dict[str, str]], tokens_per_byte: float = 1.0) -> int:
    """An upper estimate of prompt tokens: byte-level tokenizers never use more than one
    token per byte, plus a few per message for the chat template's markers."""
    size = sum(len(m["content"].encode("utf-8")) for m in messages)
    return int(size * tokens_per_byte) + 8 * len(messages) + 8
