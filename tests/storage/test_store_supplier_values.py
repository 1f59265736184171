"""Supplier values as adapters hand them over always fit the store, PostgreSQL included.

A supplier order id of 10,000 characters (or with a NUL) written as it came would fail the attempt's update on
PostgreSQL every time the engine retried it: delivery would never happen. `Outcome` bounds it at the edge.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import pytest

from fulfil.domain import AttemptState
from fulfil.storage import Store
from fulfil.storage.errors import StoreError
from suppliers import values
from suppliers.taxonomy import Evidence, OrderState, Outcome

if TYPE_CHECKING:
    from tests.storage.conftest import Claimed

LONG_ID = "T" * 10_000 + "\x00"


async def test_an_outcomes_supplier_values_are_stored(store: Store, now: datetime, claimed: Claimed) -> None:
    order = await claimed("r1")
    attempt = await store.open_attempt(order.id, "w1", "acg", 0, 1, None, now)
    outcome = Outcome(
        OrderState.SUCCEEDED,
        supplier_order_id=LONG_ID,
        evidence=Evidence(code="c" * 500, message="m\x00" * 5_000 + "\ud800", response="r" * 50_000),
    )
    done = await store.mark_attempt(
        attempt.id,
        AttemptState.SUCCEEDED,
        now,
        supplier_order_id=outcome.supplier_order_id,
        evidence=outcome.evidence.as_dict(),
    )
    assert done.supplier_order_id == values.supplier_order_id(LONG_ID)
    assert done.supplier_order_id is not None and len(done.supplier_order_id) == 128
    assert len(done.evidence["message"]) == values.MAX_MESSAGE


async def test_unbounded_the_same_id_fails_on_postgresql(
    store: Store, db_url: str, now: datetime, claimed: Claimed
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    order = await claimed("r1")
    attempt = await store.open_attempt(order.id, "w1", "acg", 0, 1, None, now)
    with pytest.raises(StoreError, match="too long"):
        await store.mark_attempt(attempt.id, AttemptState.SUCCEEDED, now, supplier_order_id="T" * 10_000)
