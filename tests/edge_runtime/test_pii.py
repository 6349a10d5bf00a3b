"""The runtime's PII masker (what `serve --log-inputs masked` writes)."""

from __future__ import annotations

import pytest

from edge_runtime.pii import cn_id_ok, luhn_ok, mask_pii


@pytest.mark.parametrize("text, masked", [
    ("mail me at jane.doe+x@example.co.uk today", "mail me at [EMAIL] today"),
    ("card 4111 1111 1111 1111 please", "card [CARD] please"),
    ("card 4111-1111-1111-1111", "card [CARD]"),
    ("call 13812345678 now", "call [PHONE] now"),
    ("call +86 138 1234 5678 now", "call [PHONE] now"),
    ("我的手机号是13912345678，谢谢", "我的手机号是[PHONE]，谢谢"),
    ("ID 11010519491231002X here", "ID [ID] here"),
    ("Tel: 03-5555 1234", "Tel: [PHONE]"),
    ("reach me on +44 20 7946 0958", "reach me on [PHONE]"),
])
def test_pii_values_are_masked(text, masked):
    assert mask_pii(text) == masked


@pytest.mark.parametrize("text", [
    "invoice 4111 1111 1111 1112",  # fails Luhn: not a card
    "GST ID 001234567890123456",  # 18 digits failing the ID check digit and Luhn
    "order 12812345678",  # 11 digits but not a mobile prefix
    "total 1,234.50 on 2024-05-01",
])
def test_lookalikes_are_kept(text):
    assert mask_pii(text) == text


def test_check_digits():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert cn_id_ok("11010519491231002X") and not cn_id_ok("110105194912310021")
