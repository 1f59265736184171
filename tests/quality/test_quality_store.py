"""Quality windows as SQL aggregates, on SQLite and PostgreSQL: what counts, the time range, percentiles,
claims, per-offer grouping, the call counts' additive upsert, and the snapshot."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from qualitykit import attempt, invalid_keys

from fulfil.domain import AttemptState, ClaimReason
from fulfil.storage import Store
from fulfil.storage.store_quality import CallCount, QualityEvent, SupplierHealth

HOUR = timedelta(hours=1)


async def test_attempt_outcomes_make_fulfilment_keys_and_on_time(store: Store, now: datetime) -> None:
    t = now - timedelta(minutes=30)
    for seconds in (1, 2, 3, 4, 200):  # delivered; the last one later than the 120 s promise
        await attempt(store, "main", t, seconds=seconds)
    await attempt(store, "main", t, state=AttemptState.FAILED, error_class="product_unavailable")
    await attempt(store, "main", t, state=AttemptState.FAILED, error_class="transient")
    await attempt(store, "main", t, state=AttemptState.FAILED, error_class="order_rejected")  # the buyer's
    await attempt(store, "main", t, state=AttemptState.FAILED, error_class="our_bug")  # ours
    await attempt(store, "main", t, state=AttemptState.SENT)  # still open: not counted yet
    await invalid_keys(store, "main", t, qty=2, amount="19.90")
    await attempt(store, "main", t, error_class="ambiguous")  # delivered after an ambiguous answer
    await attempt(store, "other", t, qty=3)

    found = await store.supplier_windows(now - HOUR, now)
    main = found["main"]
    assert (main.finished, main.fulfilled) == (9, 6)  # 5 + ambiguous delivered; 2 failed; 1 invalid
    assert (main.units, main.invalid_units) == (8, 2)  # 6 delivered + 2 invalid
    assert main.on_time == 5
    assert (main.claims, main.claims_amount) == (1, Decimal("19.90"))
    assert found["other"].units == 3 and found["other"].fulfilled == 1


async def test_only_the_time_range_counts(store: Store, now: datetime) -> None:
    await attempt(store, "main", now - 2 * HOUR)
    await attempt(store, "main", now - HOUR)  # the first instant of the window is in it
    await attempt(store, "main", now)  # the end is not
    await invalid_keys(store, "main", now - 3 * HOUR)
    found = await store.supplier_windows(now - HOUR, now)
    assert found["main"].finished == 1
    assert found["main"].claims == 0
    day = await store.supplier_windows(now - 24 * HOUR, now)
    assert (day["main"].finished, day["main"].claims) == (3, 1)  # not the one at `now`


async def test_latency_percentiles_are_nearest_rank(store: Store, now: datetime) -> None:
    t = now - timedelta(minutes=10)
    for seconds in range(1, 21):  # 1..20 s
        await attempt(store, "main", t, seconds=seconds)
    await attempt(store, "main", t, seconds=999, state=AttemptState.FAILED, error_class="transient")
    await invalid_keys(store, "main", t)  # took 1 s but its keys were bad: not a delivery
    await attempt(store, "solo", t, seconds=7.5)
    found = await store.supplier_windows(now - HOUR, now)
    assert found["main"].latency_p50 == pytest.approx(10.0, abs=0.01)  # rank ceil(0.5*20) = 10
    assert found["main"].latency_p95 == pytest.approx(19.0, abs=0.01)  # rank ceil(0.95*20) = 19
    assert found["solo"].latency_p50 == pytest.approx(7.5, abs=0.01)
    assert found["solo"].latency_p95 == pytest.approx(7.5, abs=0.01)


async def test_promises_per_sku_decide_on_time(store: Store, now: datetime) -> None:
    t = now - timedelta(minutes=10)
    await attempt(store, "main", t, seconds=30, sku="fast")
    await attempt(store, "main", t, seconds=30, sku="slow")
    found = await store.supplier_windows(now - HOUR, now, promises={"fast": 10, "slow": 60}, default_promise=5)
    assert found["main"].on_time == 1
    found = await store.supplier_windows(now - HOUR, now, promises={}, default_promise=5)
    assert found["main"].on_time == 0


async def test_windows_per_offer(store: Store, now: datetime) -> None:
    t = now - timedelta(minutes=10)
    await attempt(store, "main", t, sku="a", offer_index=0)
    await attempt(store, "main", t, sku="a", offer_index=0, state=AttemptState.FAILED, error_class="transient")
    await attempt(store, "main", t, sku="b", offer_index=1, seconds=5)
    record = await attempt(store, "main", t, sku="b", offer_index=1, error_class="invalid_key")
    await store.open_claim(record.id, ClaimReason.INVALID_KEY, Decimal("5"), 1, {}, t)
    await store.record_quality([CallCount("main", t.replace(second=0, microsecond=0), 10, 9)])
    found = await store.offer_windows(now - HOUR, now)
    assert set(found) == {("main", "a", 0), ("main", "b", 1)}
    a, b = found[("main", "a", 0)], found[("main", "b", 1)]
    assert (a.finished, a.fulfilled, a.claims) == (2, 1, 0)
    assert (b.finished, b.fulfilled, b.claims, b.invalid_units, b.claims_amount) == (2, 1, 1, 1, Decimal(5))
    assert b.latency_p50 == pytest.approx(5.0, abs=0.01)
    assert a.calls == 0  # calls are only counted per supplier
    assert (await store.supplier_windows(now - HOUR, now))["main"].calls == 10


async def test_claims_amounts_sum_exactly(store: Store, now: datetime) -> None:
    t = now - timedelta(minutes=5)
    for amount in ("0.10", "0.20", "95.05", "1234.5678"):
        await invalid_keys(store, "main", t, amount=amount)
    found = await store.supplier_windows(now - HOUR, now)
    assert found["main"].claims_amount == Decimal("1329.9178")


async def test_call_counts_add_up_across_flushes_and_daemons(store: Store, now: datetime) -> None:
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    await store.record_quality([CallCount("main", minute, 10, 8, 5.0, 2.0), CallCount("b", minute, 1, 1, 0.1, 0.1)])
    await store.record_quality([CallCount("main", minute, 5, 1, 1.0, 3.5)])
    await store.record_quality([CallCount("main", minute - 2 * HOUR, 100, 0)])  # outside the hour
    found = await store.supplier_windows(now - HOUR, now)
    assert (found["main"].calls, found["main"].calls_ok) == (15, 9)
    assert found["main"].call_latency_avg == pytest.approx(6.0 / 15)
    assert found["main"].call_latency_max == pytest.approx(3.5)
    assert (found["b"].calls, found["b"].calls_ok) == (1, 1)
    day = await store.supplier_windows(now - 24 * HOUR, now)
    assert day["main"].calls == 115
    assert await store.prune_call_counts(now - HOUR) == 1
    day = await store.supplier_windows(now - 24 * HOUR, now)
    assert day["main"].calls == 15


async def test_events_go_with_the_counts(store: Store, now: datetime) -> None:
    await store.record_quality([], [QualityEvent("supplier.breaker_opened", now, "main", {"reason": "x"})])
    events = await store.events(name="supplier.breaker_opened")
    assert [(e.supplier, e.data, e.at) for e in events] == [("main", {"reason": "x"}, now)]


async def test_snapshot_round_trip_and_update(store: Store, now: datetime) -> None:
    row = SupplierHealth(
        supplier="main",
        score=87.5,
        components={"score": 87.5, "components": {"fulfilment": 0.9}},
        breaker="open",
        opened_until=now + timedelta(seconds=30),
        ejections=2,
        demoted=False,
        balance=Decimal("1000.50"),
        balance_at=now,
        detail={"breaker_reason": "5 consecutive failures"},
        updated_at=now,
    )
    await store.save_supplier_health([row])
    assert await store.supplier_health() == [row]
    later = SupplierHealth(**{**row.__dict__, "breaker": "closed", "opened_until": None, "demoted": True})
    await store.save_supplier_health([later])
    assert await store.supplier_health() == [later]


async def test_cooldown_list_has_reasons(store: Store, now: datetime) -> None:
    await store.set_cooldown("main", "10001", now + timedelta(minutes=5), "stock check: empty", now)
    await store.set_cooldown("main", "10002", now - timedelta(minutes=5), "old", now)
    found = await store.cooldown_list(now)
    assert [(c.supplier, c.product_id, c.reason) for c in found] == [("main", "10001", "stock check: empty")]
