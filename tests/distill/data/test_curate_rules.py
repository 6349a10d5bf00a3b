"""Curation rules on real receipts and on small hand-made rows: each rule drops what it
should, the report names the rule with examples, and PII masking is precise."""

import json

import pytest

from distill.data.curate import _ngrams, curate, mask_pii, shingles
from distill.pipeline.stages import load_splits
from distill.recipe import load_recipe


@pytest.fixture
def receipts(receipts_recipe):
    recipe = load_recipe(receipts_recipe)
    train, evals = load_splits(recipe)
    for row in train:
        row["answer"] = row["gold"]
    return recipe, train, evals


def report(out_dir):
    return json.loads((out_dir / "report.json").read_text())


def test_every_rule_drops_its_rows_with_examples(receipts, tmp_path):
    recipe, train, evals = receipts
    base = train[:20]
    curate(recipe, base, evals, tmp_path)
    clean = [json.loads(l) for l in (tmp_path / "train.jsonl").read_text().splitlines()]
    src = clean[1]  # a row every rule keeps on its own
    near = dict(src, id="near", ocr_lines=src["ocr_lines"] + ["THANK YOU AGAIN"])  # one line more
    rows = [
        *base,
        dict(base[0], id="exact"),
        near,
        dict(base[2], id="bad", answer={"company": "X"}),
        dict(base[3], id="empty", ocr_lines=[]),
        dict(base[4], id="long", ocr_lines=["x" * 9000]),
        dict(base[5], id="unsure", agreement=0.4),
        dict(evals[0], id="leak", answer=evals[0]["gold"]),
    ]
    recipe.curate.min_agreement = 0.5
    summary = curate(recipe, rows, evals, tmp_path)
    got = report(tmp_path)["dropped"]
    expected = {"exact duplicate": "exact", "near duplicate": "near", "invalid answer": "bad", "empty input": "empty",
                "input too long": "long", "low teacher agreement": "unsure", "overlaps the eval split": "leak"}
    for rule, row_id in expected.items():
        assert row_id in [e["id"] for e in got[rule]["examples"]], rule
    assert got["near duplicate"]["examples"][0]["duplicate_of"] == src["id"]
    assert got["near duplicate"]["examples"][0]["jaccard"] >= 0.9
    assert "missing key 'date'" in got["invalid answer"]["examples"][0]["problems"]
    assert summary["kept"] == len(base) - sum(1 for e in got.values() for x in e["examples"] if x["id"] in
                                               {r["id"] for r in base})
    kept = [json.loads(l)["id"] for l in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert set(kept).isdisjoint(expected.values())


def test_real_receipts_keep_nearly_all_rows(receipts, tmp_path):
    recipe, train, evals = receipts
    summary = curate(recipe, train, evals, tmp_path)
    # distinct receipts: no near duplicates; a few share a shop chain's long header with eval receipts
    assert summary["kept"] >= 0.9 * len(train) and "near duplicate" not in summary["dropped"]


def test_length_limits_and_answer_length(receipts, tmp_path):
    recipe, train, evals = receipts
    recipe.curate.min_input_chars = 400
    recipe.curate.max_answer_chars = 150
    recipe.curate.decontaminate = False
    summary = curate(recipe, train, evals, tmp_path)
    assert summary["dropped"]["input too short"] > 0 and summary["dropped"]["answer too long"] > 0
    for row in map(json.loads, (tmp_path / "train.jsonl").read_text().splitlines()):
        assert len("\n".join(row["ocr_lines"]).strip()) >= 400 and len(json.dumps(row["answer"])) <= 160


def test_pii_masking_is_precise_and_applies_to_inputs_and_answers(receipts, tmp_path):
    kinds = ["email", "phone", "card", "iban", "ip"]
    assert mask_pii("TEL: 03-55423228 FAX NO: 03-79807585", kinds) == "TEL: [PHONE] FAX NO: [PHONE]"
    assert mask_pii("call +44 20 7946 0958", kinds) == "call [PHONE]"
    assert mask_pii("pay 4111 1111 1111 1111", kinds) == "pay [CARD]"
    assert mask_pii("IBAN GB82 WEST 1234 5698 7654 32", kinds) == "IBAN [IBAN]"
    assert mask_pii("EMAIL : SHOP@ELKEN.COM.MY", kinds) == "EMAIL : [EMAIL]"
    # digit runs that are not PII stay: GST ids, invoice numbers, a non-Luhn number, dates, amounts
    for text in ["GST ID: 000381399040", "INVOICE # : OR18040902160299", "4111111111111112", "25/12/2018", "RM 60.30"]:
        assert mask_pii(text, kinds) == text
    recipe, train, evals = receipts
    row = dict(train[0], id="pii", ocr_lines=["ACME SDN BHD", "TEL: 03-55423228", "NO 1 JALAN X"],
               answer={**train[0]["answer"], "address": "NO 1 JALAN X TEL: 03-55423228"})
    recipe.curate.pii_mask = ["phone"]
    summary = curate(recipe, [row], evals, tmp_path)
    out = json.loads((tmp_path / "train.jsonl").read_text())
    assert out["ocr_lines"][1] == "TEL: [PHONE]" and out["answer"]["address"] == "NO 1 JALAN X TEL: [PHONE]"
    assert summary["pii_masked"] == {"phone": 2}


def test_nothing_kept_is_a_clear_error(receipts, tmp_path):
    recipe, train, evals = receipts
    rows = [dict(r, answer=None) for r in train[:3]]
    with pytest.raises(ValueError, match="kept no rows.*invalid answer: 3"):
        curate(recipe, rows, evals, tmp_path)


# Chinese receipt-like texts, written for these tests (about 60 characters each).
ZH_A = "上海市某某餐饮有限公司 发票代码031001900111 开票日期2024年3月5日 项目餐费 金额叁佰贰拾元整 收款人王明 谢谢惠顾欢迎再次光临"
ZH_B = "北京市某某科技有限公司 增值税普通发票 购买方名称北京某某学校 货物名称办公用品一批 合计金额壹仟贰佰叁拾肆元伍角 开票人李华"


def _zh_rows(train, texts):
    return [dict(train[i], id=name, ocr_lines=[text], answer=train[i]["gold"]) for i, (name, text) in enumerate(texts)]


# one character changed (Jaccard over 2-character shingles 0.944, over 5-character ones 0.865)
@pytest.mark.parametrize("edit", [ZH_A.replace("王明", "王敏"), ZH_A.replace("餐费 ", "餐费，")])
def test_chinese_near_duplicates_are_found_and_distinct_texts_kept(receipts, tmp_path, edit):
    recipe, train, evals = receipts
    recipe.curate.decontaminate = False
    rows = _zh_rows(train, [("a", ZH_A), ("near", edit), ("b", ZH_B)])
    summary = curate(recipe, rows, evals, tmp_path)
    assert summary["kept"] == 2 and summary["dropped"] == {"near duplicate": 1}
    assert report(tmp_path)["dropped"]["near duplicate"]["examples"][0]["id"] == "near"
    # the English shingle size would miss it: exact Jaccard below the 0.9 threshold
    def jaccard(k):
        a, b = shingles(ZH_A, k, k), shingles(edit, k, k)
        return len(a & b) / len(a | b)

    assert jaccard(recipe.curate.shingle_chars_cjk) >= 0.9 > jaccard(recipe.curate.shingle_chars)


def test_shingle_size_follows_the_script():
    assert shingles("abcdefg", 5, 2) == {"abcde", "bcdef", "cdefg"}
    assert shingles("信用卡丢了", 5, 2) == {"信用", "用卡", "卡丢", "丢了"}
    assert all(len(s) == 2 for s in shingles("手机银行APP登录", 5, 2))  # 6 of 9 letters are Chinese
    assert all(len(s) == 5 for s in shingles("Mobile APP 登录", 5, 2))  # mostly English


def test_chinese_decontamination_uses_words(receipts, tmp_path):
    recipe, train, evals = receipts
    assert recipe.curate.ngram == 13 and len(_ngrams(ZH_A, 13)) > 10  # jieba words, not one "word" per clause
    # an eval receipt with a name and its closing words changed: 73% of its word 13-grams are the
    # eval receipt's (with whole clauses as words, as before, none were and it was kept)
    leak = ZH_A.replace("王明", "王敏").replace("谢谢惠顾欢迎再次光临", "请妥善保管")
    eval_rows = [dict(evals[0], ocr_lines=[ZH_A])]
    summary = curate(recipe, _zh_rows(train, [("leak", leak), ("b", ZH_B)]), eval_rows, tmp_path)
    assert summary["dropped"] == {"overlaps the eval split": 1} and summary["kept"] == 1
    assert report(tmp_path)["dropped"]["overlaps the eval split"]["examples"][0]["id"] == "leak"


def test_chinese_length_rules_count_characters(receipts, tmp_path):
    recipe, train, evals = receipts
    recipe.curate.min_input_chars = 10
    summary = curate(recipe, _zh_rows(train, [("short", "谢谢惠顾"), ("a", ZH_A)]), evals, tmp_path)
    assert summary["dropped"] == {"input too short": 1} and summary["kept"] == 1


ZH_KINDS = ["email", "phone", "card", "iban", "ip", "id"]


@pytest.mark.parametrize("text, expected", [
    ("手机：13800138000", "手机：[PHONE]"),
    ("我的手机号是138 0013 8000请回电", "我的手机号是[PHONE]请回电"),  # a mobile needs no keyword
    ("客户13912345678已签收", "客户[PHONE]已签收"),
    ("+86 138-0013-8000", "[PHONE]"),
    ("联系电话：021-62345678", "联系电话：[PHONE]"),
    ("电话 0755-8888 6666", "电话 [PHONE]"),
    ("联系方式:010 8765 4321", "联系方式:[PHONE]"),
    ("传真号码：(021)62345679", "传真号码：[PHONE]"),
    ("身份证号11010519491231002X", "身份证号[ID]"),  # the sample number of GB 11643-1999
    ("证件号码：360426199101010071，", "证件号码：[ID]，"),
    ("银联卡号6222021234567890128", "银联卡号[CARD]"),
    ("卡号 6222 0212 3456 7890 128", "卡号 [CARD]"),
    ("邮箱abc.d@example.com.cn谢谢", "邮箱[EMAIL]谢谢"),
])
def test_chinese_pii_is_masked(text, expected):
    assert mask_pii(text, ZH_KINDS) == expected


@pytest.mark.parametrize("text", [
    "12345678901", "10086", "13800138000123", "138001380001", "2138001380000",  # not mobiles: prefix 12, short, long runs
    "发票号码13800138000123", "订单号A13800138000", "RECEIPT NO : 18010500047", "订单号：13800138000", "发票号码 15900001111", "电话费100元", "手机型号 P60", "联系方式：见背面", "客服电话：95588",
    "身份证号110105194912310021",  # check digit wrong (X is right)
    "11010519491331002X",  # month 13
    "纳税人识别号913100007178001234",  # an 18-digit company tax code is not a resident ID
    "卡号6222021234567890123",  # Luhn fails
    "2024年3月5日", "金额：1,234.50元", "开票日期20240305", "发票代码031001900111",
])
def test_chinese_near_misses_are_not_masked(text):
    assert mask_pii(text, ZH_KINDS) == text


def test_random_18_digit_numbers_are_not_masked_as_ids():
    import random

    from stdnum.cn import ric

    rng = random.Random(19)
    numbers = [str(rng.randrange(10**17, 10**18)) for _ in range(2000)]
    masked = [n for n in numbers if mask_pii(n, ["id"]) == "[ID]"]
    assert all(ric.is_valid(n) for n in masked) and len(masked) <= 2
    # and with the right check digit and a real region and birth date, they are
    valid = [n[:17] + ric.calc_check_digit(n) for n in ("110101199003070010", "440305200012310020")]
    assert [mask_pii(n, ["id"]) for n in valid] == ["[ID]", "[ID]"]


def test_chinese_pii_counts_by_kind():
    counts: dict = {}
    text = "姓名张三，身份证11010519491231002X，手机13800138000，卡号6222021234567890128"
    assert mask_pii(text, ZH_KINDS, counts) == "姓名张三，身份证[ID]，手机[PHONE]，卡号[CARD]"
    assert counts == {"id": 1, "phone": 1, "card": 1}
    assert mask_pii(text, ["email"]) == text  # only the kinds asked for
