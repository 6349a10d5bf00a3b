"""A small PII masker for the device: what `edge-runtime serve --log-inputs masked` writes
instead of the raw input.

`distill/data/curate.py` has the training side's masker; `edge_runtime` must not import
`distill` (a router installs only the runtime), so this is the runtime's own, kept to what a
request log needs and precise on purpose (a receipt is full of long digit runs that are not
PII):

| kind | matched | placeholder |
|---|---|---|
| email | `name@host.tld` | `[EMAIL]` |
| card | 13-19 digits starting 2-6 (spaces/dashes allowed) passing the Luhn check | `[CARD]` |
| cn_id | 18-character mainland resident ID whose check character is right (ISO 7064 mod 11-2) | `[ID]` |
| cn_mobile | 11-digit mainland mobile `1[3-9]x xxxx xxxx` (optionally `+86`/`86`) | `[PHONE]` |
| phone | a number after a keyword (tel, phone, fax, mobile, ...) or starting with `+` | `[PHONE]` |

Placeholders match distill's curate masks (`[EMAIL]`, `[CARD]`, `[PHONE]`), so a masked log
reads like masked training data.
"""

from __future__ import annotations

import re
from typing import Callable

PLACEHOLDERS = {"email": "[EMAIL]", "card": "[CARD]", "cn_id": "[ID]", "cn_mobile": "[PHONE]", "phone": "[PHONE]"}
ORDER = ("email", "cn_id", "card", "cn_mobile", "phone")  # specific before general


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def cn_id_ok(value: str) -> bool:
    """The check character of an 18-character mainland resident ID (GB 11643)."""
    v = value.upper()
    if len(v) != 18 or not v[:17].isdigit():
        return False
    return _CN_ID_CHECK[sum(int(c) * w for c, w in zip(v[:17], _CN_ID_WEIGHTS)) % 11] == v[17]


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<![\d+-])[2-6](?:[ -]?\d){12,18}(?![\d-])")  # IINs start 2-6 (Mastercard 2-series to UnionPay 62)
_CN_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_CN_MOBILE = re.compile(r"(?<![\d+])(?:\+?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
_PHONE_KW = re.compile(r"(?i)\b(tel|phone|fax|mobile|mob|cell)\b(\s*(?:no)?\.?\s*[:#.]?\s*)(\+?\d[\d ()-]{5,}\d)")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}[ -]?\(?\d{1,4}\)?(?:[ -]?\d{2,4}){2,4}\b")


# kind -> [(pattern, check on the value, groups kept before the value)]: the detectors, as data
DETECTORS: dict[str, list[tuple[re.Pattern, Callable[[str], bool] | None, int]]] = {
    "email": [(_EMAIL, None, 0)],
    "card": [(_CARD, lambda v: 13 <= len(_digits(v)) <= 19 and luhn_ok(_digits(v)), 0)],
    "cn_id": [(_CN_ID, cn_id_ok, 0)],
    "cn_mobile": [(_CN_MOBILE, None, 0)],
    "phone": [(_PHONE_KW, None, 2), (_PHONE_INTL, None, 0)],
}


def _digits(v: str) -> str:
    return re.sub(r"\D", "", v)


def replace_pii(text: str, replace: Callable[[str, str], str], kinds: tuple[str, ...] = ORDER) -> str:
    """`text` with every PII value of `kinds` replaced by `replace(kind, value)` (the
    reversible masker of `edge_runtime.privacy` numbers them; `mask_pii` does not)."""
    for kind in ORDER:
        if kind not in kinds:
            continue
        for pattern, check, keep in DETECTORS[kind]:
            def repl(m: re.Match, kind=kind, check=check, keep=keep) -> str:
                value = m.group(keep + 1) if keep else m.group(0)
                if check and not check(value):
                    return m.group(0)
                return "".join(m.group(i) for i in range(1, keep + 1)) + replace(kind, value)

            text = pattern.sub(repl, text)
    return text


def mask_pii(text: str, kinds: tuple[str, ...] = ORDER) -> str:
    """`text` with every PII value of `kinds` replaced by its placeholder."""
    return replace_pii(text, lambda kind, _value: PLACEHOLDERS[kind], kinds)
