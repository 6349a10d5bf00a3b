"""Curation: the rules a labelled row must pass before it is trained on.

Each rule drops rows for one reason; the report (`report.json`) says how many each rule
dropped, with examples (id, a snippet of the input and why), so a user sees what the
teacher's data really looked like. Rules, in order: schema and label set, empty/short/long
input, answer length, self-consistency agreement, exact duplicates, near duplicates
(MinHash over character shingles, shorter ones for Chinese text), overlap with the eval split
(n-grams of the words `edge_runtime.text.words` cuts, jieba words for Chinese). Optional
PII masking rewrites kept rows, inputs and answers alike, so the student learns to copy the
mask rather than invent a value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from distill.data.io import write_jsonl
from edge_runtime.layout import TRAIN_ROWS_FILE
from edge_runtime.pii import luhn_ok
from edge_runtime.text import CJK, words

EXAMPLES = 5

# PII kinds. Deliberately precise: a mask in the wrong place damages a training row (receipts
# are full of long digit runs: GST ids, barcodes, invoice numbers, VAT invoice codes), so cards
# must pass the Luhn check, IBANs the mod-97 check, Chinese resident ID numbers their check digit,
# birth date and region (python-stdnum), and phones need a keyword (tel, 电话, ...), a leading +,
# or the shape of a mainland mobile (11 digits, 1[3-9]...). Digit runs are delimited by ASCII
# letters and digits, not by \b: in Chinese text a number follows a word character (卡号6222...).
def _iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _resident_id_ok(text: str) -> bool:
    from stdnum.cn import ric

    return ric.is_valid(text)


_B, _E = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"  # word edges for ASCII numbers inside any script
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+" + _E)
_CARD = re.compile(_B + r"[3-6]\d{3}(?:[ -]?\d{1,4}){2,4}" + _E)  # 13-19 digits, in groups of up to 4
_RESIDENT_ID = re.compile(_B + r"\d{6}(?:19|20)\d{9}[\dXx]" + _E)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_IP = re.compile(_B + r"(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)" + _E)
_PHONE_KW = re.compile(r"(?i)\b(tel|phone|fax|mobile|mob|hp|h/p)\b(\s*(?:no)?\.?\s*[:#.]?\s*)(\+?\d[\d ()-]{5,}\d)")
# 电话 (phone), 手机 (mobile), 联系方式 (contact), 传真 (fax), 座机 (landline), then 号码/号, a colon
_PHONE_KW_ZH = re.compile(r"(电话|手机|联系方式|传真|座机)((?:号码|号)?\s*[:：]?\s*)([+(（]?\d[\d ()（）-]{5,}\d)" + _E)
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}[ -]?\(?\d{1,4}\)?(?:[ -]?\d{2,4}){2,4}\b")
_MOBILE_CN = re.compile(_B + r"(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _E)
# an 11-digit number after one of these is a document number, not a mobile (RECEIPT NO : 18010500047)
_DOC_NUMBER_BEFORE = re.compile(r"(?i)(?:\bno|#|单号|编号|票号|代码|号码|流水号)\s*[.:：#]?\s*$")


def _mask_mobiles(text: str) -> tuple[str, int]:
    """Mainland mobiles without a keyword, except where a document-number label precedes them."""
    count = 0

    def repl(m):
        nonlocal count
        if _DOC_NUMBER_BEFORE.search(m.string[max(0, m.start() - 12) : m.start()]):
            return m.group(0)
        count += 1
        return "[PHONE]"

    return _MOBILE_CN.sub(repl, text), count


def _sub(pattern, mask, check=None, keep_groups=0):
    def repl(m):
        value = m.group(keep_groups + 1) if keep_groups else m.group(0)
        if check and not check(value):
            return m.group(0)
        return "".join(m.group(i) for i in range(1, keep_groups + 1)) + mask

    return lambda text: pattern.subn(repl, text)


PII_MASKERS = {
    "email": [_sub(_EMAIL, "[EMAIL]")],
    "id": [_sub(_RESIDENT_ID, "[ID]", check=_resident_id_ok)],
    "card": [_sub(_CARD, "[CARD]", check=lambda v: 13 <= len(re.sub(r"\D", "", v)) <= 19 and luhn_ok(re.sub(r"\D", "", v)))],
    "iban": [_sub(_IBAN, "[IBAN]", check=_iban_ok)],
    "ip": [_sub(_IP, "[IP]")],
    "phone": [_sub(_PHONE_KW, "[PHONE]", keep_groups=2), _sub(_PHONE_KW_ZH, "[PHONE]", keep_groups=2),
              _sub(_PHONE_INTL, "[PHONE]"), _mask_mobiles],
}
PII_KINDS = ("email", "id", "card", "iban", "ip", "phone")  # the order they are masked in: specific before general
PII_ORDER = PII_KINDS


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(max(0, len(tokens) - n + 1))}


def _overlap(grams: set, eval_grams: set) -> float:
    """Fraction of a row's n-grams that occur in the eval split. A fraction, not "any":
    receipts of one shop chain share their header, and that is not contamination."""
    return len(grams & eval_grams) / len(grams) if grams else 0.0


_CJK_CHARS = re.compile(f"[{CJK}]")
_WORD_CHARS = re.compile(r"[^\W_]")


def shingles(text: str, k: int, k_cjk: int) -> set[str]:
    """Character shingles for near-duplicate search: `k` characters long, or `k_cjk` when most of
    the text's letters are Chinese characters (one carries about as much as a short English word,
    so a k-character shingle spans several words and one small edit breaks too many of them)."""
    norm = re.sub(r"\s+", " ", text.lower()).strip()
    letters = len(_WORD_CHARS.findall(norm))
    if letters and 2 * len(_CJK_CHARS.findall(norm)) >= letters:
        k = k_cjk
    return {norm[i : i + k] for i in range(max(1, len(norm) - k + 1))}


def _minhash(text: str, k: int, num_perm: int, k_cjk: int | None = None):
    from datasketch import MinHash

    mh = MinHash(num_perm=num_perm)
    mh.update_batch(s.encode("utf-8") for s in shingles(text, k, k if k_cjk is None else k_cjk))
    return mh


def mask_pii(text: str, kinds: list[str], counts: dict[str, int] | None = None) -> str:
    for kind in PII_ORDER:
        if kind in kinds:
            for masker in PII_MASKERS[kind]:
                before = text
                text, _ = masker(text)
                n = text.count(f"[{kind.upper()}]") - before.count(f"[{kind.upper()}]")
                if counts is not None and n:
                    counts[kind] = counts.get(kind, 0) + n
    return text


def _mask_row(row: dict[str, Any], field: str, kinds: list[str], counts: dict[str, int]) -> dict[str, Any]:
    def mask(value: Any) -> Any:
        if isinstance(value, str):
            return mask_pii(value, kinds, counts)
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    out = dict(row)
    out[field] = mask(row[field])
    out["answer"] = {k: mask(v) for k, v in row["answer"].items()}
    return out


def curate(recipe, rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    task, cfg = recipe.task, recipe.curate
    dropped: dict[str, list[dict[str, Any]]] = {}
    kept: list[dict[str, Any]] = []

    def drop(rule: str, row: dict[str, Any], text: str, **why: Any) -> None:
        dropped.setdefault(rule, []).append({"id": row["id"], "input": text[:160], **why})

    eval_texts = {task.input_text(r).strip() for r in eval_rows}
    eval_grams: set = set()
    if cfg.decontaminate:
        for r in eval_rows:
            eval_grams |= _ngrams(task.input_text(r), cfg.ngram)
    lsh = None
    if cfg.dedup:
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=cfg.near_duplicate_threshold, num_perm=cfg.minhash_perm)
    seen: dict[str, str] = {}
    hashes: dict[str, Any] = {}
    for row in rows:
        text = task.input_text(row).strip()
        problems = task.validate_answer(row.get("answer"))
        if problems:
            drop("invalid answer", row, text, problems=problems)
            continue
        if not text:
            drop("empty input", row, text)
            continue
        if len(text) < cfg.min_input_chars:
            drop("input too short", row, text, chars=len(text))
            continue
        if len(text) > cfg.max_input_chars:
            drop("input too long", row, text, chars=len(text))
            continue
        answer_chars = len(task.render_answer(row["answer"]))
        if cfg.max_answer_chars and answer_chars > cfg.max_answer_chars:
            drop("answer too long", row, text, chars=answer_chars)
            continue
        if row.get("agreement", 1.0) < cfg.min_agreement:
            drop("low teacher agreement", row, text, agreement=row.get("agreement"))
            continue
        if cfg.dedup and text in seen:
            drop("exact duplicate", row, text, duplicate_of=seen[text])
            continue
        mh = None
        if lsh is not None:
            mh = _minhash(text, cfg.shingle_chars, cfg.minhash_perm, cfg.shingle_chars_cjk)
            close = [(mh.jaccard(hashes[k]), k) for k in lsh.query(mh)]
            close = [(j, k) for j, k in close if j >= cfg.near_duplicate_threshold]
            if close:
                j, other = max(close)
                drop("near duplicate", row, text, duplicate_of=other, jaccard=round(j, 3))
                continue
        if cfg.decontaminate:
            share = 1.0 if text in eval_texts else _overlap(_ngrams(text, cfg.ngram), eval_grams)
            if share > cfg.max_eval_overlap:
                drop("overlaps the eval split", row, text, overlap=round(share, 3))
                continue
        seen[text] = row["id"]
        if mh is not None:
            lsh.insert(row["id"], mh)
            hashes[row["id"]] = mh
        kept.append(row)
    if not kept:
        raise ValueError(
            f"curation kept no rows out of {len(rows)} (dropped: "
            + ", ".join(f"{k}: {len(v)}" for k, v in dropped.items())
            + "); check the teacher's answers in teach/labelled.jsonl or loosen `curate`"
        )
    pii: dict[str, int] = {}
    if cfg.pii_mask:
        kept = [_mask_row(r, task.input_field, cfg.pii_mask, pii) for r in kept]
    write_jsonl(out_dir / TRAIN_ROWS_FILE, kept)
    report = {
        "input_rows": len(rows),
        "kept": len(kept),
        "dropped": {rule: {"count": len(ex), "examples": ex[:EXAMPLES]} for rule, ex in dropped.items()},
        "pii_masked": pii,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return {"kept": len(kept), "dropped": {k: len(v) for k, v in dropped.items()}, "pii_masked": pii}
