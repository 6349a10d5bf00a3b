"""Comparable forms of answer values, by a field's type: `text`, `date` (YYYY-MM-DD) and `amount`
(a number with two decimals). A value that is not a valid date or amount is compared as text
(upper-cased, spaces collapsed), never guessed into one.

Dates: numeric day/month/year in any separator (`25/12/2018`, `2024-3-5`, `24.03.05`), English
month names (`25 Dec 2018`, `Dec 25, 2018`), and Chinese dates (`2024年3月5日`, `二〇二四年三月五日`).
When the year has two digits, the order of a numeric date is ambiguous (`24.03.05`): the field's
`date_order` decides (`dmy` by default, `ymd` for Chinese documents, `mdy` for American ones).

Amounts: currency marks and codes (`RM`, `$`, `¥`, `RMB`, `CNY`, `人民币`, `元`), thousands separators
in their proper places, and Chinese numerals with 元/角/分, upper-case as printed on invoices
(`壹仟贰佰叁拾肆元伍角` -> 1234.50) or lower-case (`一百元零五分`). Chinese numerals are read by cn2an,
imported only when a value holds them. Only the standard library and cn2an: the runtime imports this.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime

DATE_ORDERS = ("dmy", "mdy", "ymd")
DEFAULT_DATE_ORDER = "dmy"


def norm_text(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip().upper()


# ---------------------------------------------------------------------------- Chinese numerals
_CN_YEAR_DIGITS = "〇零一二三四五六七八九"  # a year is written digit by digit: 二〇二四
_CN_DIGITS = _CN_YEAR_DIGITS + "壹贰叁肆伍陆柒捌玖两"
_CN_NUMERAL = f"[{_CN_DIGITS}十拾百佰千仟万萬亿億]"
_CN_DIGIT_VALUE = {c: str(i) for i, c in enumerate("〇一二三四五六七八九")} | {
    c: str(i) for i, c in enumerate("零壹贰叁肆伍陆柒捌玖")} | {"两": "2"}


def _cn_number(text: str) -> int | None:
    """An integer written in Chinese numerals (`二十五`, `壹仟贰佰叁拾肆`, `两千`), or None."""
    if not re.fullmatch(f"{_CN_NUMERAL}+", text):
        return None
    import cn2an  # pure Python; only values holding Chinese numerals need it

    try:
        value = cn2an.cn2an(text.replace("两", "二"), "strict")
    except ValueError:
        return None
    return int(value) if float(value).is_integer() else None


def _number(text: str) -> int | None:
    """Arabic digits or Chinese numerals as an integer."""
    return int(text) if text.isdigit() else _cn_number(text)


# ---------------------------------------------------------------------------- dates
_DATE_FORMATS = (  # with month names; all-numeric dates are read by _numeric_date
    "%d %b %Y", "%d %B %Y", "%d-%b-%Y", "%d-%b-%y", "%d %b %y", "%b %d, %Y", "%B %d, %Y", "%d%b%Y", "%d/%b/%Y",
)
_NUMERIC_DATE = re.compile(r"(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})")
_CN_DATE = re.compile(rf"(\d{{2}}|\d{{4}}|[{_CN_YEAR_DIGITS}]{{2}}|[{_CN_YEAR_DIGITS}]{{4}})\s*年\s*"
                      rf"(\d{{1,2}}|{_CN_NUMERAL}{{1,3}})\s*月\s*(\d{{1,2}}|{_CN_NUMERAL}{{1,3}})\s*[日号]")


def _year(y: str) -> int:
    n = int(y) if y.isdigit() else int("".join(_CN_DIGIT_VALUE[c] for c in y))
    return n if len(y) == 4 else 2000 + n if n < 70 else 1900 + n


def _iso(y: int, m: int | None, d: int | None) -> str | None:
    if m is None or d is None:
        return None
    try:
        return date(y, m, d).isoformat()
    except ValueError:  # month 13, 30 February, ...
        return None


def _numeric_date(s: str, order: str) -> str | None:
    match = _NUMERIC_DATE.fullmatch(s)
    if not match:
        return None
    a, _, b, c = match.groups()
    if 3 in (len(a), len(c)) or (len(a) == 4 and len(c) == 4):
        return None
    if len(a) == 4 or (order == "ymd" and len(c) <= 2):
        y, m, d = a, b, c
    elif order == "mdy":
        m, d, y = a, b, c
    else:
        d, m, y = a, b, c
    if len(y) not in (2, 4):
        return None
    return _iso(_year(y), int(m), int(d))


def normalise_date(value: str, order: str = DEFAULT_DATE_ORDER) -> str:
    """YYYY-MM-DD when `value` is a valid date in a known form, else its text form."""
    if order not in DATE_ORDERS:
        raise ValueError(f"date order must be one of {DATE_ORDERS}, got {order!r}")
    s = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", value)).strip()
    iso = _numeric_date(s, order)
    if iso is None:
        match = _CN_DATE.fullmatch(s)
        if match:
            y, m, d = match.groups()
            iso = _iso(_year(y), _number(m), _number(d))
    if iso is None:
        for fmt in _DATE_FORMATS:
            try:
                return datetime.strptime(s, fmt).strftime("%Y-%m-%d")
            except ValueError:
                continue
    return iso if iso is not None else norm_text(s)


# ---------------------------------------------------------------------------- amounts
# ⊗ is printed before the uppercase total on Chinese VAT invoices (⊗壹仟贰佰叁拾伍元伍角)
_CURRENCY = re.compile(r"(?i)(?<![a-z])(rm|myr|usd|eur|sgd|rmb|cny)(?![a-z])|人民币|[$€£¥⊗]|\s")
_PLAIN = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
# [integer part 元] [零] [n 角] [零] [n 分] [整]: at least one part, in this order
_YUAN_JIAO_FEN = re.compile(
    rf"(?:(?P<yuan>[\d,.]+|{_CN_NUMERAL}+)(?:[元圆]|(?=$)))?零?"
    rf"(?:(?P<jiao>[\d{_CN_DIGITS}])角)?零?(?:(?P<fen>[\d{_CN_DIGITS}])分)?[整正]?"
)


def _plain(s: str) -> float | None:
    return float(s.replace(",", "")) if _PLAIN.fullmatch(s) else None


def _yuan_jiao_fen(s: str) -> float | None:
    match = _YUAN_JIAO_FEN.fullmatch(s)
    if not match or not any(match.groups()):
        return None
    yuan, jiao, fen = match.group("yuan", "jiao", "fen")
    total = 0.0
    if yuan:
        value = _plain(yuan) if re.fullmatch(r"[\d,.]+", yuan) else _cn_number(yuan)
        if value is None or ((jiao or fen) and not float(value).is_integer()):
            return None  # "1.5元5角" is not an amount
        total = float(value)
    for digit, unit in ((jiao, 0.1), (fen, 0.01)):
        if digit:
            n = _number(digit)
            if n is None:
                return None
            total += n * unit
    return round(total, 2)


def normalise_amount(value: str) -> str:
    """The amount with two decimals (`1234.50`) when `value` is one, else its text form."""
    s = _CURRENCY.sub("", unicodedata.normalize("NFKC", value))
    number = _plain(s)
    if number is None and s:
        number = _yuan_jiao_fen(s)
    return f"{number:.2f}" if number is not None else norm_text(value)


NORMALISERS = {"text": norm_text, "date": normalise_date, "amount": normalise_amount}


# ---------------------------------------------------------------------------- spans
# Where in a text a date or an amount may be written, in the forms above: a value that was
# normalised rather than copied (2024-03-05 for 2024年3月5日, 1234.50 for 壹仟贰佰叁拾肆元伍角)
# is grounded when one of these spans normalises to it.
_SPANS = {
    "date": (_NUMERIC_DATE, _CN_DATE, re.compile(
        r"\d{1,2}[ \-/]?[A-Za-z]{3,9}[ \-/,]*\d{2,4}|[A-Za-z]{3,9} \d{1,2}, \d{4}")),
    "amount": (re.compile(rf"\d+(?:,\d{{3}})*(?:\.\d+)?|{_CN_NUMERAL}+[元圆](?:零?[{_CN_DIGITS}]角)?(?:零?[{_CN_DIGITS}]分)?"
                          rf"|[{_CN_DIGITS}]角(?:零?[{_CN_DIGITS}]分)?|[{_CN_DIGITS}]分"),),
}


def value_spans(text: str, kind: str) -> list[str]:
    """The substrings of `text` (NFKC-normalised) that may be a value of `kind` (`date` or
    `amount`; none for `text`), in the forms the normalisers read."""
    s = unicodedata.normalize("NFKC", text)
    return [m.group(0) for pattern in _SPANS.get(kind, ()) for m in pattern.finditer(s)]
