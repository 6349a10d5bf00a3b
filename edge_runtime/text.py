"""Words of a text, in Chinese as in English: the one segmentation retrieval and curation share.

Chinese has no spaces between words, so splitting on `[a-z0-9]+` or whitespace leaves a
Chinese sentence with no words at all (or one giant "word" per clause). `words` cuts a text
into runs of one script first, then:

- runs of Chinese characters (CJK unified ideographs) are segmented by jieba, a well-kept
  dictionary + HMM segmenter, imported on first use and initialised without its stderr banner;
- any other run of letters and digits (English, numbers, product names such as `APP`, `62`,
  `VISA`) is one lower-cased word, as before.

Text is NFKC-normalised first, so full-width letters and digits (`ＡＰＰ`, `１２３`), common in
Chinese documents, become their ASCII forms. Punctuation and whitespace separate words and are
dropped. Only the standard library and jieba: the device runtime imports this.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata

# CJK unified ideographs: the basic block, extension A and the compatibility block.
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUNS = re.compile(rf"[{CJK}]+|[^\W_{CJK}]+")
_CJK_CHAR = re.compile(rf"[{CJK}]")

_jieba = None
_jieba_lock = threading.Lock()


def _segmenter():
    """jieba's tokenizer, loaded once. jieba logs "Building prefix dict ..." to stderr on first
    use; its logger is raised to WARNING before the dictionary loads, so nothing is printed."""
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                try:
                    import jieba
                except ImportError:
                    raise ImportError(
                        "Chinese text needs the jieba segmenter: pip install jieba "
                        "(it is part of edge-distill[runtime])"
                    ) from None
                jieba.setLogLevel(logging.WARNING)
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                _jieba = tokenizer
    return _jieba


def has_cjk(text: str) -> bool:
    """True when `text` holds at least one Chinese character."""
    return _CJK_CHAR.search(text) is not None


def words(text: str) -> list[str]:
    """The words of `text` in order, lower-cased: jieba words for Chinese runs, one word per run of
    other letters/digits. "手机银行APP登录不了" -> ["手机", "银行", "app", "登录", "不了"]."""
    out: list[str] = []
    for run in _RUNS.findall(unicodedata.normalize("NFKC", text).lower()):
        if _CJK_CHAR.match(run):
            out.extend(w for w in _segmenter().lcut(run) if w.strip())
        else:
            out.append(run)
    return out
