"""The shared segmentation: Chinese words by jieba, other scripts by letter/digit runs, mixed
text kept apart at script changes, jieba loaded lazily and without printing."""

import subprocess
import sys

from edge_runtime.text import has_cjk, words


def test_chinese_is_cut_into_words_not_kept_as_one_run():
    assert words("我的信用卡丢了怎么办") == ["我", "的", "信用卡", "丢", "了", "怎么办"]
    assert words("转账限额是多少？") == ["转账", "限额", "是", "多少"]


def test_mixed_chinese_and_english_keeps_product_names_and_numbers():
    assert words("手机银行APP登录不了") == ["手机", "银行", "app", "登录", "不了"]
    assert words("银联62开头的卡和VISA卡") == ["银联", "62", "开头", "的", "卡", "和", "visa", "卡"]


def test_full_width_forms_and_punctuation():
    assert words("ＡＰＰ版本１２．５，好用！") == ["app", "版本", "12", "5", "好用"]


def test_english_and_other_scripts_are_letter_runs():
    assert words("How do I delete my_account?") == ["how", "do", "i", "delete", "my", "account"]
    assert words("Café AU lait") == ["café", "au", "lait"]
    assert words("") == [] and words(" ，。 ") == []


def test_has_cjk():
    assert has_cjk("VISA卡") and not has_cjk("VISA card 62") and not has_cjk("")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_jieba_is_imported_only_for_chinese_text_and_prints_nothing():
    out = _run("import sys; from edge_runtime.retrieval import tokenize; tokenize('lost card'); "
               "print('jieba' in sys.modules); tokenize('信用卡丢了'); print('jieba' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
    assert out.stderr == ""  # jieba's "Building prefix dict ..." banner is silenced
