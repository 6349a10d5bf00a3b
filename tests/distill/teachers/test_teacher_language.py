"""A Chinese task's teacher requests are Chinese around the task: the system turn, the retry
complaint, the plain format's marker and the synthesis request, as sent over real HTTP."""

from __future__ import annotations

import json
import re

from distill.teachers import run_teach
from distill.teachers.loopback import FixedLatencyServer
from distill.teachers.prompting import build_messages, flatten, retry_messages
from distill.teachers.synthesize import messages_for
from edge_runtime.task import TaskSpec

INTENTS_ZH = {"name": "intents", "kind": "classification", "input_field": "text",
              "instructions": "判断这条请求属于哪个领域。", "labels": ["weather", "flight"]}
REQUESTS = ["明天上海会下雨吗", "帮我查一下去北京的航班", "周末天气怎么样", "订一张飞成都的机票"]


class RecordingServer(FixedLatencyServer):
    """The fixed-answer loopback endpoint, keeping every request body it was sent."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.bodies: list[dict] = []

    async def handle(self, req, writer) -> bool:
        self.bodies.append(json.loads(req[3]))
        return await super().handle(req, writer)


def english(text: str) -> set[str]:
    """English words outside the JSON schema (whose keys and type names are JSON, not prose)."""
    return {w.lower() for w in re.findall(r"[A-Za-z]{2,}", re.sub(r"\{.*\}", "", text, flags=re.S))}


def teacher(url):
    return {"kind": "openai", "base_url": url, "model": "loopback-model", "max_tokens": 16, "concurrency": 1}


def test_recipe_load_resolves_auto_from_the_data(make_recipe):
    task = {**INTENTS_ZH, "instructions": "Which domain is this request about?"}
    recipe, _, _ = make_recipe(teacher("http://127.0.0.1:9/v1"), texts=REQUESTS, task=task)
    assert recipe.task.language == "zh"  # English instructions, Chinese inputs
    recipe, _, _ = make_recipe(teacher("http://127.0.0.1:9/v1"), task={**task, "language": "en"}, texts=REQUESTS)
    assert recipe.task.language == "en"  # an explicit setting wins
    recipe, _, _ = make_recipe(teacher("http://127.0.0.1:9/v1"))
    assert recipe.task.language == "en"  # English reviews


def test_the_teacher_is_asked_in_chinese_and_retried_in_chinese(make_recipe, tmp_path):
    with RecordingServer(latency_s=0.0, content='{"label": "music"}') as srv:  # not a label: every answer retried
        recipe, rows, _ = make_recipe(teacher(srv.url), texts=REQUESTS[:1], task=INTENTS_ZH)
        summary = run_teach(recipe, rows, tmp_path / "teach")
    assert summary["labelled"] == 0 and len(srv.bodies) == 2
    first, retry = srv.bodies[0]["messages"], srv.bodies[1]["messages"]
    assert first[0]["role"] == "system" and first[0]["content"].startswith("你在为一项任务标注数据。")
    assert english(first[0]["content"]) == {"json", "schema"}
    assert first[1]["content"] == "判断这条请求属于哪个领域。\n\n### 输入：\n明天上海会下雨吗\n\n### 输出（JSON）：\n"
    assert retry[-1]["content"].startswith("这个回答无效：") and retry[-1]["content"].endswith("不要输出其他任何内容。")
    assert "标签 'music' 不在给定的 2 个标签之中" in retry[-1]["content"]  # the reason too, in Chinese
    assert english(retry[-1]["content"]) == {"music", "json", "schema"}  # the answer's own value, and the format's names
    failures = [json.loads(line) for line in (tmp_path / "teach/failed.jsonl").read_text().splitlines()]
    assert "is not one of the 2 labels" in failures[0]["problems"][0]  # the operator's report stays English


def test_every_problem_is_written_in_each_language():
    from edge_runtime.prompt_text import PROMPT_TEXT

    task = TaskSpec(name="t", kind="classification", instructions="x", labels=["a", "b"])
    for language in PROMPT_TEXT:
        answers = [[], {"label": 3}, {"label": "c", "extra": "1"}, {}]
        problems = [p for a in answers for p in task.validate_answer(a, language)]
        problems += task.parse("no json here", language)[1]
        assert len(problems) == 6 and all(problems)
        if language == "zh":
            assert all(not english(p) - {"json", "label", "extra", "list", "int"} for p in problems), problems


def test_flatten_and_synthesis_are_chinese_for_a_chinese_task():
    task = TaskSpec.model_validate(INTENTS_ZH)
    msgs = retry_messages(build_messages(task, {"text": "放首歌"}), '{"label": "music"}', ["a", "b"], "zh")
    flat = flatten(msgs, task.prompt_language)
    assert flat.endswith("### 输出（JSON）：\n") and "这个回答无效：a；b。" in flat
    synth = messages_for(task, {"seeds": ["明天上海会下雨吗"], "count": 3, "topic": "出行", "persona": "老人", "label": "weather"})
    assert english(synth[0]["content"]) == {"json", "schema"}
    assert english(synth[1]["content"]) == {"weather"}  # the label the inputs must have
    assert synth[1]["content"].startswith("任务：判断这条请求属于哪个领域。\n\n示例 1：\n明天上海会下雨吗")
