"""The toolkit's own prompt text, per language, kept as data in one place.

A task's instructions, labels and examples are the user's; everything the toolkit wraps around
them (the plain prompt format for base models, the FAQ candidate block, the teacher's system and
retry turns, the synthesis request) comes from here, in the task's `language`. A Chinese task
then reads as one Chinese prompt instead of Chinese instructions inside English scaffolding.

The English strings are the ones the toolkit always used, byte for byte: changing one changes
every English prompt, so it would need every English student retrained. The FAQ "none" id and
JSON keys are not prompt text (they are answer values in gold data, schemas and metrics) and
stay the same in every language. Only the standard library: the runtime imports this.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

from edge_runtime.text import has_cjk

LANGUAGES = ("en", "zh")
# `language: auto` picks zh when at least this share of the letters is Chinese. Letters only:
# digits, amounts and punctuation say nothing about the language, and a Chinese character is
# counted as one letter, like one Latin letter, so a Chinese receipt with an English brand name
# (`APP`, `VISA`) stays zh while an English text quoting one Chinese name stays en.
ZH_SHARE = 0.30
SAMPLE_CHARS = 20_000  # enough text to decide; a data set is not read to its end for this

PROMPT_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "plain_template": "{instructions}\n\n### Input:\n{input}\n\n### Output (JSON):\n",
        "output_marker": "### Output (JSON):\n",
        "candidates_header": "Candidate FAQ entries:",
        "no_candidates": "(none found)",
        "teacher_system": "You label data for a task. Reply with exactly one JSON object and nothing else. "
                          "It must match this JSON schema: {schema}",
        "teacher_retry": "That answer is invalid: {problems}. "
                         "Reply again with one JSON object that matches the schema, and nothing else.",
        "list_sep": "; ",
        "synth_system": "You write training inputs for a task. Reply with one JSON object "
                        "and nothing else, matching this JSON schema: {schema}",
        "synth_task": "The task: {instructions}",
        "synth_example": "Example {n}:\n{text}",
        "synth_count": "Write {count} new, realistic and varied inputs for this task, different from the examples.",
        "synth_topic": "They are about: {topic}.",
        "synth_persona": "Write them as: {persona}.",
        "synth_label": "For each of them the correct answer must be the label {label!r}.",
        "sentence_sep": " ",
        # why an answer is invalid: shown to the teacher in the retry turn and to the operator
        "problem_no_json": "no JSON object in the output",
        "problem_not_object": "answer must be a JSON object, got {kind}",
        "problem_missing_key": "missing key {key!r}",
        "problem_not_string": "{key!r} must be a string, got {kind}",
        "problem_extra_keys": "unexpected keys {keys}",
        "problem_bad_label": "label {label!r} is not one of the {n} labels",
        "problem_bad_faq_id": "faq_id {faq_id!r} is not a known FAQ id",
        "problem_cut": "the reply was cut at max_tokens={max_tokens}",
    },
    "zh": {
        "plain_template": "{instructions}\n\n### 输入：\n{input}\n\n### 输出（JSON）：\n",
        "output_marker": "### 输出（JSON）：\n",
        "candidates_header": "候选常见问题：",
        "no_candidates": "（未找到）",
        "teacher_system": "你在为一项任务标注数据。只回复一个 JSON 对象，不要输出其他任何内容。"
                          "它必须符合这个 JSON schema：{schema}",
        "teacher_retry": "这个回答无效：{problems}。请重新回复一个符合该 schema 的 JSON 对象，不要输出其他任何内容。",
        "list_sep": "；",
        "synth_system": "你在为一项任务编写训练输入。只回复一个 JSON 对象，不要输出其他任何内容，"
                        "它必须符合这个 JSON schema：{schema}",
        "synth_task": "任务：{instructions}",
        "synth_example": "示例 {n}：\n{text}",
        "synth_count": "为这个任务写 {count} 条新的输入，要真实、多样，并且与示例不同。",
        "synth_topic": "内容关于：{topic}。",
        "synth_persona": "以这样的身份来写：{persona}。",
        "synth_label": "每一条的正确答案都必须是标签 {label!r}。",
        "sentence_sep": "",
        "problem_no_json": "输出中没有 JSON 对象",
        "problem_not_object": "答案必须是一个 JSON 对象，而不是 {kind}",
        "problem_missing_key": "缺少键 {key!r}",
        "problem_not_string": "{key!r} 必须是字符串，而不是 {kind}",
        "problem_extra_keys": "多出了这些键：{keys}",
        "problem_bad_label": "标签 {label!r} 不在给定的 {n} 个标签之中",
        "problem_bad_faq_id": "faq_id {faq_id!r} 不是已知的常见问题编号",
        "problem_cut": "回复在 max_tokens={max_tokens} 处被截断",
    },
}


def prompt_text(language: str) -> dict[str, str]:
    """The prompt strings of one resolved language (`en` or `zh`)."""
    if language not in PROMPT_TEXT:
        raise ValueError(f"prompt language must be one of {LANGUAGES} (auto is resolved first), got {language!r}")
    return PROMPT_TEXT[language]


def cjk_share(texts: Iterable[str]) -> float:
    """Share of Chinese characters among the letters of `texts` (0.0 when there are none),
    reading at most SAMPLE_CHARS characters."""
    cjk = letters = seen = 0
    for text in texts:
        for ch in unicodedata.normalize("NFKC", str(text)[: SAMPLE_CHARS - seen]):
            if ch.isalpha():
                letters += 1
                cjk += has_cjk(ch)
        seen += len(str(text))
        if seen >= SAMPLE_CHARS:
            break
    return cjk / letters if letters else 0.0


def detect_language(texts: Iterable[str]) -> str:
    """`zh` when at least ZH_SHARE of the letters are Chinese, else `en`."""
    return "zh" if cjk_share(texts) >= ZH_SHARE else "en"

