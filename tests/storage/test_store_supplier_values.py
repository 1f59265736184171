"""Supplier values as adapters hand them over always fit the store, PostgreSQL included.

A supplier order id of 10,000 characters (or with a NUL) written as it came would fail the attempt's update on
PostgreSQL every time the engine retried it: delivery would never happen. `Outcome` bounds it at the edge.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fulfil.domain import AttemptState
from fulfil.storage import Store
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


async def test_the_store_bounds_what_reaches_it_unbounded(store: Store, now: datetime, claimed: Claimed) -> None:
    """Defence in depth: a value that did not come through `Outcome` (a plug-in, a resolver path) is bounded by
    the store too, instead of failing on PostgreSQL (SQLite would keep it whole)."""
    order = await claimed("r1")
    attempt = await store.open_attempt(order.id, "w1", "acg", 0, 1, None, now)
    done = await store.mark_attempt(attempt.id, AttemptState.SUCCEEDED, now, supplier_order_id="T" * 10_000)
    assert done.supplier_order_id is not None and len(done.supplier_order_id) == 128
    assert done.supplier_order_id.startswith("T" * 100)
