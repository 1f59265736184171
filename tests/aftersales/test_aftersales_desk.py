"""The desk on real SQLite and PostgreSQL: operators' actions, the clock's escalations with their alerts,
hotspots pausing an offer so later orders go to the backup, and the figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from fulfil.aftersales.model import Action, Problem, Report
from fulfil.aftersales.stats import figures
from fulfil.config import NotifyConfig
from fulfil.crypto import CardCipher
from fulfil.domain import NewOrder
from fulfil.notify.events import build_routes
from fulfil.storage import InvalidTransition, Store
from fulfil.storage.schema import outbox
from tests.aftersales.askit import make_shop, shop_config


def _alerting(store: Store) -> None:
    notify = NotifyConfig.model_validate(
        {
            "alerts": [
                {
                    "name": "ops",
                    "type": "webhook",
                    "url": "http://127.0.0.1:9/hook",
                    "secret": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1Q=",
                }
            ]
        }
    )
    store.notify_routes = build_routes(notify)


async def _alerts(store: Store) -> list[dict[str, object]]:
    async with store._read() as conn:  # noqa: SLF001 - reading the outbox the dispatcher would send
        rows = await conn.execute(
            select(outbox.c.type, outbox.c.data)
            .where(outbox.c.type.in_(("system.alert", "supplier.alert")))
            .order_by(outbox.c.id)
        )
        return [dict(data) for _, data in rows]


async def _open(shop, ref: str, problem: Problem = Problem.OTHER, keys: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    found = await shop.store.order_for_proof(ref)
    assert found is not None
    return (await shop.desk.report(found[0], found[1], Report(problem, keys, "help"), reporter="buyer")).case


async def test_an_operator_reissues_once_and_a_second_click_is_refused(store: Store, cipher: CardCipher) -> None:
    shop = make_shop(store, cipher)
    await shop.delivered_order("o-1", qty=2)
    case = await _open(shop, "o-1")
    assert str(case.level) == "L2"
    after = await shop.desk.act(case.case_no, Action.REISSUE, "buyer sent a screenshot", "alice")
    assert len(after.reissue_refs) == 1
    with pytest.raises(InvalidTransition, match="still under way"):
        await shop.desk.act(case.case_no, Action.REISSUE, None, "bob")
    done = await shop.run_pending()
    assert [v.order.qty for v in done] == [2]
    closed = await store.get_case(case.case_no)
    assert closed is not None and (str(closed.status), str(closed.level), str(closed.outcome)) == (
        "resolved",
        "L2",
        "reissued",
    )
    with pytest.raises(InvalidTransition):
        await shop.desk.act(case.case_no, Action.RESOLVE, None, "alice")
    events = await store.events(name="aftersales.reissue")
    assert [(e.operator, e.data["case_no"]) for e in events] == [("alice", case.case_no)]
    ledger = await store.reissue_ledger()
    assert [(e.decided_by, e.units, e.claim_no) for e in ledger] == [("alice", 2, None)]  # not a key_invalid case


async def test_reject_costs_the_buyer_credit_and_resolve_keeps_the_note(store: Store, cipher: CardCipher) -> None:
    shop = make_shop(store, cipher)
    first = await shop.delivered_order("o-1")
    await shop.delivered_order("o-2")  # the same buyer (contact)
    start = await store.order_credit(first.order.id)
    rejected = await shop.desk.act((await _open(shop, "o-1")).case_no, Action.REJECT, "abusive", "alice")
    assert str(rejected.status) == "rejected"
    assert await store.order_credit(first.order.id) == start - 20  # the risk wing's credit, per buyer identity
    resolved = await shop.desk.act((await _open(shop, "o-2")).case_no, Action.RESOLVE, "told them how", "bob")
    assert (str(resolved.outcome), resolved.reason, resolved.decided_by) == ("answered", "told them how", "bob")
    # Rejected twice more: the buyer's credit is below l1.min_credit, and L1 no longer reissues for them.
    for ref in ("o-1", "o-2"):
        await shop.desk.act((await _open(shop, ref)).case_no, Action.REJECT, "abusive again", "alice")
    view = await store.get_order("o-2")
    assert view is not None
    case = await _open(shop, "o-2", Problem.KEY_INVALID, (view.cards[0].password,))
    assert str(case.level) == "L2" and case.reason == f"buyer credit {start - 60} is below 60"
    assert await shop.run_pending() == []


async def test_without_a_credit_record_every_buyer_is_neutral_and_a_penalty_is_an_event(store: Store) -> None:
    from datetime import UTC, datetime

    from fulfil.aftersales.credit import NEUTRAL_CREDIT, NeutralCredit

    book = NeutralCredit(store)
    assert await book.order_credit(12345) == NEUTRAL_CREDIT == 100
    await book.adjust_credit_for_order(12345, -20, "abusive", "alice", datetime.now(UTC))
    penalty = await store.events(name="aftersales.credit_penalty")
    assert [(e.operator, e.order_id, e.data["delta"], e.data["applied"]) for e in penalty] == [
        ("alice", 12345, -20, False)
    ]


async def test_l2_past_its_limit_goes_to_l3_with_an_alert_and_l3_past_its_limit_alerts(
    store: Store, cipher: CardCipher
) -> None:
    _alerting(store)
    shop = make_shop(store, cipher, shop_config(levels={"L2": {"time_limit": 7200}, "L3": {"time_limit": 86400}}))
    await shop.delivered_order("o-1")
    case = await _open(shop, "o-1")
    now = shop.clock.now()
    assert await store.escalate_overdue(shop.config.aftersales, now + timedelta(hours=1)) == []
    moved = await store.escalate_overdue(shop.config.aftersales, now + timedelta(hours=2, seconds=1))
    assert [(c.case_no, str(c.level)) for c in moved] == [(case.case_no, "L3")]
    assert [a["kind"] for a in await _alerts(store)] == ["aftersales.escalated"]
    later = now + timedelta(hours=2, seconds=1) + timedelta(hours=24, seconds=1)
    assert [c.case_no for c in await store.escalate_overdue(shop.config.aftersales, later)] == [case.case_no]
    assert await store.escalate_overdue(shop.config.aftersales, later + timedelta(hours=1)) == []  # alerted once
    assert [a["kind"] for a in await _alerts(store)] == ["aftersales.escalated", "aftersales.overdue"]
    escalations = await store.events(name="aftersales.escalated")
    assert {e.operator for e in escalations} == {"fulfil:clock"}


async def test_a_jump_in_reports_pauses_the_offer_and_later_orders_go_to_the_backup(
    store: Store, cipher: CardCipher
) -> None:
    _alerting(store)
    shop = make_shop(store, cipher, shop_config(hotspots={"min_cases": 3, "min_rate": 0.1}))
    for i in range(6):
        await shop.delivered_order(f"o-{i}")
    assert await shop.desk.hotspots(shop.clock.now()) == []
    for i in range(3):
        view = await store.get_order(f"o-{i}")
        assert view is not None
        await _open(shop, f"o-{i}", Problem.KEY_INVALID, (view.cards[0].password,))
    found = await shop.desk.hotspots(shop.clock.now())
    assert {(h.sku, h.supplier) for h in found} == {("sku", "main"), ("sku", None)}
    cooling = await store.active_cooldowns(shop.clock.now())
    assert ("main", "p-main") in cooling and ("backup", "p-backup") not in cooling
    kinds = sorted(a["kind"] for a in await _alerts(store))  # type: ignore[type-var]
    assert kinds == ["aftersales.hotspot", "supplier.aftersales_hotspot"]
    assert [e.supplier for e in await store.events(name="supplier.review")] == ["main"]
    await shop.run_pending()  # the three reissues
    await store.add_order(NewOrder("later", "sku", 1), shop.clock.now())
    later = await shop.harness.run("later")
    assert [a.supplier for a in later.attempts] == ["backup"]


async def test_figures(store: Store, cipher: CardCipher) -> None:
    shop = make_shop(store, cipher)
    a = await shop.delivered_order("o-1")
    await shop.delivered_order("o-2")
    await _open(shop, "o-1", Problem.KEY_INVALID, (a.cards[0].password,))
    await shop.run_pending()
    case = await _open(shop, "o-2")
    await shop.desk.act(case.case_no, Action.RESOLVE, "answered", "alice")
    claims = await store.list_claims()
    await store.set_claim_status(claims[0].claim_no, "submitted", None, "alice", shop.clock.now())  # type: ignore[arg-type]
    await store.set_claim_status(claims[0].claim_no, "accepted", None, "alice", shop.clock.now())  # type: ignore[arg-type]
    now = shop.clock.now()
    stats = figures(await store.case_figures(now - timedelta(days=1), now + timedelta(seconds=1)))
    assert stats["cases"] == 2 and stats["closed"] == 2
    assert stats["automation_rate"] == 0.5
    assert stats["supplier_caused_share"] == 0.5
    assert stats["reissue_cost"] == "9.50" and stats["recovered"] == "9.50"
    assert set(stats["handling_seconds"]) == {"L1", "L2"}


async def test_reports_feed_the_suppliers_key_validity(store: Store, cipher: CardCipher) -> None:
    shop = make_shop(store, cipher)
    views = [await shop.delivered_order(f"o-{i}") for i in range(4)]
    now = shop.clock.now()
    before = await store.supplier_windows(now - timedelta(hours=1), now + timedelta(seconds=1), promises={})
    assert before["main"].invalid_units == 0 and before["main"].key_validity_rate == 1.0
    await _open(shop, "o-0", Problem.KEY_INVALID, (views[0].cards[0].password,))
    now = shop.clock.now()
    after = await store.supplier_windows(now - timedelta(hours=1), now + timedelta(seconds=1), promises={})
    assert after["main"].invalid_units == 1 and after["main"].key_validity_rate == 0.75


async def test_a_topup_the_supplier_confirms_is_answered_and_a_failed_one_reissued(
    store: Store, cipher: CardCipher
) -> None:
    from suppliers.taxonomy import ErrorClass, Evidence
    from suppliers.taxonomy import Outcome as SupplierOutcome
    from tests.engine.enginekit import FakeSupplier, Harness, make_config, ok

    config = make_config([("main", 1), ("backup", 2)], kind="direct")
    shop = make_shop(store, cipher, config)
    main = FakeSupplier("main", [ok], [ok])
    shop.harness = Harness(store, cipher, config, {"main": main, "backup": shop.backup})
    shop.desk.suppliers = {"main": main, "backup": shop.backup}
    for ref in ("t-1", "t-2"):
        await store.add_order(NewOrder(ref, "sku", 1, account="12345", contact="b@example.com"), shop.clock.now())
        await shop.harness.run(ref)
    confirmed = await _open(shop, "t-1", Problem.TOPUP_NOT_ARRIVED)
    assert (str(confirmed.status), str(confirmed.level), str(confirmed.outcome)) == ("resolved", "L1", "confirmed")

    def failed(s: FakeSupplier, r: object) -> SupplierOutcome:
        return SupplierOutcome.failed(ErrorClass.ORDER_REJECTED, Evidence(code="9", message="top-up failed"))

    main.query_steps = [failed]
    reissued = await _open(shop, "t-2", Problem.TOPUP_NOT_ARRIVED)
    assert str(reissued.level) == "L1" and len(reissued.reissue_refs) == 1
    done = await shop.run_pending()
    assert [a.supplier for a in done[0].attempts] == ["backup"]
    case = await store.get_case(reissued.case_no)
    assert case is not None and str(case.outcome) == "reissued"
    claims = [c for c in await store.list_claims() if str(c.reason) == "topup_failed_after_charge"]
    assert [(c.supplier, c.order_ref) for c in claims] == [("main", "t-2")]


async def test_a_reissue_the_engine_cannot_buy_hands_the_case_to_a_person(store: Store, cipher: CardCipher) -> None:
    from suppliers.taxonomy import ErrorClass
    from tests.engine.enginekit import failed

    shop = make_shop(store, cipher)
    view = await shop.delivered_order("o-1")
    shop.backup.place_steps = [failed(ErrorClass.ORDER_REJECTED)]
    case = await _open(shop, "o-1", Problem.KEY_INVALID, (view.cards[0].password,))
    (child,) = await shop.run_pending()
    assert str(child.order.status) == "failed"
    after = await store.get_case(case.case_no)
    assert after is not None and (str(after.status), str(after.level)) == ("open", "L2")
    assert (after.reason or "").startswith("the reissue was not delivered: order_rejected")
    assert after.due_at is None  # written without the config; the next pass dates it
    await store.escalate_overdue(shop.config.aftersales, shop.clock.now())
    dated = await store.get_case(case.case_no)
    assert dated is not None and dated.due_at == after.level_at + timedelta(hours=2)
    # A person may try again; the claim on the original purchase is the same one.
    again = await shop.desk.act(case.case_no, Action.REISSUE, None, "alice")
    assert len(again.reissue_refs) == 2 and len(again.claim_nos) == 1


async def test_simultaneous_reports_of_one_order_open_one_case_and_buy_one_reissue(
    store: Store, cipher: CardCipher
) -> None:
    import asyncio

    shop = make_shop(store, cipher)
    view = await shop.delivered_order("o-1")
    found = await store.order_for_proof("o-1")
    assert found is not None
    report = Report(Problem.KEY_INVALID, (view.cards[0].password,))
    opened = await asyncio.gather(*(shop.desk.report(found[0], found[1], report, reporter="buyer") for _ in range(5)))
    assert len({o.case.case_no for o in opened}) == 1
    assert sorted(o.created for o in opened) == [False, False, False, False, True]
    (case,) = await store.list_cases()
    assert case.reports == 5 and len(case.reissue_refs) == 1
    assert len(await shop.run_pending()) == 1 and len(shop.backup.ledger) == 1


async def test_the_ledger_answers_support_staffs_searches(store: Store, cipher: CardCipher) -> None:
    from decimal import Decimal

    from fulfil.storage.store_reissues import LedgerFilter

    shop = make_shop(store, cipher)
    for ref, amount, account in (("o-1", "10.00", "acc-1"), ("o-2", "99.00", "acc-2")):
        await store.add_order(NewOrder(ref, "sku", 1, account=account, amount=Decimal(amount)), shop.clock.now())
        await shop.harness.run(ref)
    for ref in ("o-1", "o-2"):
        view = await store.get_order(ref)
        assert view is not None
        await _open(shop, ref, Problem.KEY_INVALID, (view.cards[0].password,))
    await shop.run_pending()

    async def refs(**where: object) -> list[str]:
        return [e.ref for e in await store.reissue_ledger(LedgerFilter(**where))]  # type: ignore[arg-type]

    assert await refs() == ["o-1", "o-2"]
    assert await refs(account="acc-2") == ["o-2"]
    assert await refs(min_amount=Decimal("50")) == ["o-2"] and await refs(max_amount=Decimal("50")) == ["o-1"]
    assert await refs(supplier="backup") == ["o-1", "o-2"] and await refs(supplier="nobody") == []
    assert await refs(sku="sku", ref="o-1") == ["o-1"] and await refs(sku="other") == []
    now = shop.clock.now()
    assert await refs(since=now - timedelta(minutes=1), until=now + timedelta(minutes=1)) == ["o-1", "o-2"]
    assert await refs(until=now - timedelta(minutes=1)) == []
    (entry, _) = await store.reissue_ledger()
    assert (entry.cost, entry.reissue_status, entry.claim_status) == (Decimal("9.50"), "delivered", "open")


async def test_pause_product_cools_every_offer_and_pause_none_only_alerts(store: Store, cipher: CardCipher) -> None:
    _alerting(store)
    shop = make_shop(store, cipher, shop_config(hotspots={"min_cases": 2, "min_rate": 0.1, "pause": "product"}))
    views = [await shop.delivered_order(f"o-{i}") for i in range(4)]
    for i in range(2):
        await _open(shop, f"o-{i}", Problem.KEY_INVALID, (views[i].cards[0].password,))
    await shop.desk.hotspots(shop.clock.now())
    cooling = await store.active_cooldowns(shop.clock.now())
    assert {("main", "p-main"), ("backup", "p-backup")} <= set(cooling)
    events = await store.events(name="aftersales.hotspot")
    assert {e.data["paused"] for e in events} >= {"main/p-main, backup/p-backup"}

    quiet = make_shop(store, cipher, shop_config(hotspots={"min_cases": 2, "min_rate": 0.1, "pause": "none"}))
    for supplier, product in (("main", "p-main"), ("backup", "p-backup")):  # lift the pause above
        await store.set_cooldown(supplier, product, shop.clock.now(), "lifted", shop.clock.now())
    found = await quiet.desk.hotspots(shop.clock.now())
    assert found and await store.active_cooldowns(shop.clock.now()) == {}


async def test_options_offer_no_automatic_reissue_outside_the_rules(store: Store, cipher: CardCipher) -> None:
    import httpx

    from tests.aftersales.askit import serving

    shop = make_shop(store, cipher, shop_config(l1={"min_credit": 100}))
    await shop.delivered_order("o-1")
    async with serving(shop) as client:
        fine = await client.get("/aftersales/options/o-1", params={"proof": "buyer@example.com"})
    assert isinstance(fine, httpx.Response) and fine.status_code == 200
    first = fine.json()["options"][0]
    assert (first["problem"], first["action"], first["automatic"]) == ("key_invalid", "reissue", True)  # credit 100
    strict = make_shop(store, cipher, shop_config(window="1ms"))
    async with serving(strict) as client:
        late = (await client.get("/aftersales/options/o-1", params={"proof": "buyer@example.com"})).json()
    key_invalid = next(o for o in late["options"] if o["problem"] == "key_invalid")
    assert (key_invalid["action"], key_invalid["automatic"]) == ("report", False)


async def test_a_failed_topup_under_refund_closes_refunded_with_a_claim(store: Store, cipher: CardCipher) -> None:
    from suppliers.taxonomy import ErrorClass, Evidence
    from suppliers.taxonomy import Outcome as SupplierOutcome
    from tests.engine.enginekit import FakeSupplier, Harness, make_config, ok

    config = make_config([("main", 1), ("backup", 2)], kind="direct", aftersales={"l1": {"topup_failed": "refund"}})
    shop = make_shop(store, cipher, config)

    def failed(s: FakeSupplier, r: object) -> SupplierOutcome:
        return SupplierOutcome.failed(ErrorClass.ORDER_REJECTED, Evidence(code="9", message="top-up failed"))

    main = FakeSupplier("main", [ok], [failed])
    shop.harness = Harness(store, cipher, config, {"main": main, "backup": shop.backup})
    shop.desk.suppliers = {"main": main}
    await store.add_order(NewOrder("t-1", "sku", 1, account="12345", contact="b@example.com"), shop.clock.now())
    await shop.harness.run("t-1")
    case = await _open(shop, "t-1", Problem.TOPUP_NOT_ARRIVED)
    assert (str(case.status), str(case.level), str(case.outcome)) == ("resolved", "L1", "refunded")
    assert not case.reissue_refs and await shop.run_pending() == []
    claims = [(c.supplier, str(c.reason), c.qty) for c in await store.list_claims()]
    assert claims == [("main", "topup_failed_after_charge", 1)]
    checked = await store.events(name="aftersales.topup_checked")
    assert checked[0].data["supplier_said"]["message"] == "top-up failed"
