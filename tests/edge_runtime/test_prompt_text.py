"""task.language: the toolkit's own prompt text in Chinese for Chinese tasks, English kept byte for
byte, and the resolved language carried by the stored task so the device renders what was trained."""

import json
import re
from pathlib import Path

import pytest

from edge_runtime.prompt_text import PROMPT_TEXT, cjk_share, detect_language
from edge_runtime.task import PLAIN_TEMPLATE, TaskSpec

ROOT = Path(__file__).resolve().parents[2]
ZH_FAQ = ROOT / "data" / "zh-faq" / "knowledge_base.jsonl"

RECEIPT_ZH = dict(name="r", kind="extraction", instructions="从这张发票的文字中提取销售方名称、开票日期和价税合计。",
                  fields={"company": {}, "total": {"type": "amount"}},
                  few_shot=[{"input": {"text": "深圳市青禾贸易有限公司\n合计：¥88.00"},
                             "output": {"company": "深圳市青禾贸易有限公司", "total": "88.00"}}])


def english_words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]{2,}", text)}


@pytest.mark.parametrize("texts,lang", [
    (["判断这条请求属于哪个领域。"], "zh"),
    (["手机银行APP登录不了"], "zh"),  # 8 of 11 letters are Chinese
    (["Extract the company name, e.g. 深圳市青禾贸易有限公司, from the receipt."], "en"),
    (["Classify the review."], "en"),
    (["¥1,234.50 2024-03-05"], "en"),  # no letters at all: nothing says Chinese
    ([], "en"),
])
def test_detect_language_counts_letters(texts, lang):
    assert detect_language(texts) == lang


def test_the_threshold_is_thirty_percent_of_letters():
    assert cjk_share(["中中中abcdefg"]) == pytest.approx(0.3)
    assert detect_language(["中中中abcdefg"]) == "zh" and detect_language(["中中abcdefgh"]) == "en"


def test_english_prompt_text_is_the_old_text_byte_for_byte():
    assert PLAIN_TEMPLATE == "{instructions}\n\n### Input:\n{input}\n\n### Output (JSON):\n"
    task = TaskSpec(name="s", kind="classification", instructions="Classify.", labels=["a", "b"])
    assert task.prompt_language == "en"
    assert task.render_teacher_prompt({"text": "hi"}) == "Classify.\n\n### Input:\nhi\n\n### Output (JSON):\n"


def test_every_language_has_every_string_with_the_same_placeholders():
    keys = set(PROMPT_TEXT["en"])
    for lang, text in PROMPT_TEXT.items():
        assert set(text) == keys, lang
        for key in keys:
            assert re.findall(r"\{\w+(?:!r)?\}", text[key]) == re.findall(r"\{\w+(?:!r)?\}", PROMPT_TEXT["en"][key]), (lang, key)


def test_a_chinese_task_gets_no_english_scaffolding():
    task = TaskSpec(**RECEIPT_ZH)
    assert task.language == "auto" and task.prompt_language == "zh"
    prompt = task.render_teacher_prompt({"text": "杭州云栖餐饮管理有限公司\n价税合计（小写）¥1,234.50"})
    assert prompt.endswith("### 输入：\n杭州云栖餐饮管理有限公司\n价税合计（小写）¥1,234.50\n\n### 输出（JSON）：\n")
    assert english_words(prompt) == {"json", "company", "total"}  # the format's name and the answer's keys only


def test_language_en_keeps_english_around_chinese_instructions():
    task = TaskSpec(**RECEIPT_ZH, language="en")
    assert "### Input:" in task.render_prompt({"text": "发票"})


def test_a_custom_template_is_never_replaced():
    task = TaskSpec(**RECEIPT_ZH, template="<任务>{instructions}</任务>\n{input}\n=>")
    assert task.resolve_language() == "zh" and task.template == "<任务>{instructions}</任务>\n{input}\n=>"
    assert task.render_prompt({"text": "发票"}).endswith("\n发票\n=>")


def test_a_chinese_faq_prompt_lists_its_candidates_under_a_chinese_header():
    task = TaskSpec(name="faq", kind="faq", instructions="从候选问题中选出与客户问题相同的一条，都不相同时回答 none。",
                    knowledge_base=str(ZH_FAQ), top_k=3)
    assert task.attach_knowledge_base(ROOT) == []
    prompt = task.render_prompt({"text": "我的信用卡找不到了，该怎么处理"})
    assert "候选常见问题：\n[zh-001] 信用卡丢失了怎么办？" in prompt
    assert english_words(prompt) <= {"none", "json", "zh"}  # `none` is the answer id the instructions name
    assert "none" in task.json_schema()["properties"]["faq_id"]["enum"]  # the id itself is not translated


def test_resolving_counts_the_data_and_the_stored_task_keeps_the_result():
    task = TaskSpec(name="r", kind="extraction", instructions="Extract the total.", fields={"total": {"type": "amount"}})
    assert task.prompt_language == "en"
    assert task.resolve_language(["合计金额：壹仟贰佰叁拾肆元伍角", "开票日期：2024年3月5日"]) == "zh"
    assert task.template == PROMPT_TEXT["zh"]["plain_template"]  # the resolved recipe shows what is rendered
    stored = TaskSpec.from_stored(task.to_json())
    assert stored.language == "zh" and stored.render_prompt({"text": "x"}) == task.render_prompt({"text": "x"})
    assert "### 输入：" in stored.render_prompt({"text": "x"})


def test_a_task_json_from_before_language_existed_is_rendered_in_english():
    """A bundle packed before this field was trained on English text, even for Chinese instructions."""
    old = json.loads(TaskSpec(**RECEIPT_ZH).to_json())
    del old["language"]
    task = TaskSpec.from_stored(json.dumps(old, ensure_ascii=False).encode())
    assert task.language == "en" and "### Input:" in task.render_prompt({"text": "发票"})


def test_an_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="language"):
        TaskSpec(**RECEIPT_ZH, language="fr")
