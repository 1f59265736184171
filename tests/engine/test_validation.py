"""Card validation: every way a supplier's 'success' can still be a loss."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from fulfil.validation import check_cards
from suppliers.taxonomy import Card

PATTERN = r"^[A-Z0-9]{16}$"


def fp(card: Card) -> str:
    return hashlib.sha256(f"{card.number}\x00{card.password}".encode()).hexdigest()


def good(i: int) -> Card:
    return Card(password=f"{i:016d}")


def test_a_clean_batch_is_ok() -> None:
    verdict = check_cards([good(1), good(2)], qty=2, pattern=PATTERN, delivered_before=set(), fingerprint=fp)
    assert verdict.ok
    assert verdict.valid == (good(1), good(2))


def test_each_kind_of_invalid_key_is_named() -> None:
    cards = [good(1), Card(password=""), Card(password="short"), good(1), good(9)]
    verdict = check_cards(cards, qty=5, pattern=PATTERN, delivered_before={fp(good(9))}, fingerprint=fp)
    assert not verdict.ok
    assert verdict.reasons() == {"empty": 1, "pattern": 1, "duplicate_in_batch": 1, "delivered_before": 1}
    assert verdict.valid == (good(1),)
    assert verdict.bad_units == 4


def test_number_is_checked_against_the_pattern_when_given() -> None:
    verdict = check_cards(
        [Card(password="A" * 16, number="bad number")],
        qty=1,
        pattern=PATTERN,
        delivered_before=set(),
        fingerprint=fp,
    )
    assert verdict.reasons() == {"pattern": 1}


def test_missing_units_count_as_bad() -> None:
    verdict = check_cards([good(1)], qty=3, pattern=PATTERN, delivered_before=set(), fingerprint=fp)
    assert verdict.missing == 2
    assert verdict.bad_units == 2
    assert not verdict.ok


def test_surplus_is_kept_not_dropped() -> None:
    verdict = check_cards([good(1), good(2), good(3)], qty=2, pattern=None, delivered_before=set(), fingerprint=fp)
    assert verdict.ok
    assert verdict.surplus == (good(3),)


@given(
    st.lists(st.sampled_from([good(i) for i in range(5)] + [Card(password="")]), max_size=8),
    st.integers(1, 8),
)
def test_every_card_is_accounted_for(cards: list[Card], qty: int) -> None:
    verdict = check_cards(cards, qty=qty, pattern=PATTERN, delivered_before=set(), fingerprint=fp)
    assert len(verdict.valid) + len(verdict.invalid) + len(verdict.surplus) == len(cards)
    assert len(verdict.valid) <= qty
    assert verdict.ok == (len(verdict.valid) == qty)


def test_numbers_follow_their_own_pattern_when_given() -> None:
    card = Card(password="ABCD1234", number="123456789012")
    mixed = check_cards(
        [card], qty=1, pattern=r"^[A-Z0-9]{8}$", number_pattern=r"^[0-9]{12}$", delivered_before=set(), fingerprint=fp
    )
    assert mixed.ok
    one_rule = check_cards([card], qty=1, pattern=r"^[A-Z0-9]{8}$", delivered_before=set(), fingerprint=fp)
    assert one_rule.reasons() == {"pattern": 1}
