"""After-sales over real loopback HTTP on real SQLite and PostgreSQL: a buyer's report, L1's reissue bought by
the real engine from the other supplier with a claim against the first, the order's view, the proof guard."""

from __future__ import annotations

from datetime import timedelta

import httpx

from fulfil.crypto import CardCipher
from fulfil.storage import Store
from tests.aftersales.askit import AUTH, make_shop, serving, shop_config

PROOF = "Buyer@Example.com"


async def _report(client: httpx.AsyncClient, ref: str, key: str, proof: str = PROOF) -> httpx.Response:
    body = {
        "ref": ref,
        "proof": f"  {proof.upper()} ",
        "problem": "key_invalid",
        "keys": [key],
        "text": "does not work",
    }
    return await client.post("/aftersales", json=body)


async def test_an_invalid_key_is_reissued_from_the_other_supplier_with_a_claim(
    store: Store, cipher: CardCipher
) -> None:
    shop = make_shop(store, cipher)
    view = await shop.delivered_order("o-1")
    bad = view.cards[0].password
    async with serving(shop) as client:
        first = await _report(client, "o-1", bad)
        assert first.status_code == 201, first.text
        case = first.json()
        assert (case["status"], case["level"]) == ("open", "L1")
        again = await _report(client, "o-1", bad)  # the buyer presses the button twice
        assert again.status_code == 200 and again.json()["case_no"] == case["case_no"]
        reissued = await shop.run_pending()
        assert [v.order.ref for v in reissued] == [f"RE-{case['case_no']}-1"]
        assert await shop.run_pending() == []  # one reissue, bought once
        shown = (await client.get(f"/aftersales/{case['case_no']}", params={"proof": PROOF})).json()
        assert (shown["status"], shown["level"], shown["outcome"]) == ("resolved", "L1", "reissued")
        new_key = reissued[0].cards[0].password
        assert shown["keys"] == [new_key] and new_key != bad
        order = (await client.get("/orders/o-1", params={"reveal": "1"}, headers=AUTH)).json()
    assert order["status"] == "delivered"
    assert [(c["password"], c.get("replaced"), c.get("reissued")) for c in order["cards"]] == [
        (bad, True, None),
        (new_key, None, True),
    ]
    # Never the supplier that sold the bad key while another is there; the claim is against that one.
    assert reissued[0].attempts[0].supplier == "backup"
    assert len(shop.main.ledger) == 1 and len(shop.backup.ledger) == 1
    claims = [c for c in await store.list_claims() if str(c.reason) == "invalid_key_reported"]
    assert [(c.supplier, c.order_ref, c.qty) for c in claims] == [("main", "o-1", 1)]
    assert claims[0].evidence["case_no"] == case["case_no"]
    assert bad not in str(claims[0].evidence)  # masked
    ledger = await store.reissue_ledger()
    assert [
        (e.ref, e.case_no, e.original_supplier, e.new_supplier, e.units, e.claim_no, e.decided_by) for e in ledger
    ] == [("o-1", case["case_no"], "main", "backup", 1, claims[0].claim_no, "L1")]
    assert ledger[0].new_supplier_order_no == reissued[0].attempts[0].number


async def test_the_supplier_that_sold_the_bad_key_is_used_when_it_is_the_only_one(
    store: Store, cipher: CardCipher
) -> None:
    shop = make_shop(store, cipher)
    view = await shop.delivered_order("o-1")
    await store.set_cooldown(
        "backup", "p-backup", shop.clock.now() + timedelta(hours=1), "test: paused", shop.clock.now()
    )
    async with serving(shop) as client:
        assert (await _report(client, "o-1", view.cards[0].password)).status_code == 201
    reissued = await shop.run_pending()
    assert reissued[0].attempts[0].supplier == "main" and str(reissued[0].order.status) == "delivered"


async def test_reports_outside_the_rules_wait_in_l2_with_the_reason(store: Store, cipher: CardCipher) -> None:
    shop = make_shop(store, cipher, shop_config(window="1h", l1={"min_credit": 60}))
    view = await shop.delivered_order("o-1")
    other = await shop.delivered_order("o-2")
    async with serving(shop) as client:
        # A key that is not this order's
        r = await _report(client, "o-1", other.cards[0].password)
        assert r.status_code == 201 and r.json()["level"] == "L2"
        shop.clock.shift = timedelta(hours=2)  # past the product's window
        r = await _report(client, "o-2", other.cards[0].password)
        assert r.json()["level"] == "L2"
        # not_received on a delivered order: L1 confirms and re-sends
        r = await client.post("/aftersales", json={"ref": "o-1", "proof": PROOF, "problem": "not_received"})
        assert (r.json()["status"], r.json()["level"], r.json()["outcome"]) == ("resolved", "L1", "confirmed")
    cases = {c.order_ref + ":" + str(c.problem): c for c in await store.list_cases()}
    assert cases["o-1:key_invalid"].reason == "1 of 1 named keys are not this order's"
    assert "after-sales window" in (cases["o-2:key_invalid"].reason or "")
    assert await shop.run_pending() == [] and await store.reissue_ledger() == []
    assert view.cards  # the order kept its keys


async def test_wrong_proofs_leak_nothing_and_the_eleventh_in_a_minute_is_refused(
    store: Store, cipher: CardCipher
) -> None:
    shop = make_shop(store, cipher)
    await shop.delivered_order("o-1")
    async with serving(shop) as client:
        wrong = await client.post("/aftersales", json={"ref": "o-1", "proof": "x@y.z", "problem": "not_received"})
        unknown = await client.post("/aftersales", json={"ref": "nope", "proof": "x@y.z", "problem": "not_received"})
        assert wrong.status_code == unknown.status_code == 404
        assert wrong.json() == unknown.json() and "o-1" not in wrong.text
        assert dict(wrong.headers).keys() == dict(unknown.headers).keys()
        options = await client.get("/aftersales/options/o-1", params={"proof": "x@y.z"})
        assert options.status_code == 404 and options.json() == wrong.json()
        # 3 wrong tries so far from this address; 7 more are answered, the 11th is refused
        for i in range(7):
            r = await client.post("/aftersales", json={"ref": f"guess-{i}", "proof": "x", "problem": "not_received"})
            assert r.status_code == 404
        refused = await client.post("/aftersales", json={"ref": "o-1", "proof": PROOF, "problem": "not_received"})
        assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert await store.list_cases() == []


async def test_options_put_the_automatic_reissue_first(store: Store, cipher: CardCipher) -> None:
    shop = make_shop(store, cipher)
    view = await shop.delivered_order("o-1", qty=2)
    async with serving(shop) as client:
        r = await client.get("/aftersales/options/o-1", params={"proof": PROOF})
        assert r.status_code == 200, r.text
        first = r.json()["options"][0]
        assert (first["problem"], first["action"], first["automatic"]) == ("key_invalid", "reissue", True)
        assert view.cards[0].password not in r.text  # masked
        bad = await client.post("/aftersales", json={"ref": "o-1", "proof": PROOF, "problem": "key_invalid"})
        assert bad.status_code == 422 and bad.json()["field"] == "keys"


async def test_behind_a_trusted_proxy_each_buyer_has_their_own_limit(store: Store, cipher: CardCipher) -> None:
    shop = make_shop(store, cipher, shop_config(rate_limit={"trusted_proxies": ["127.0.0.1"]}))
    await shop.delivered_order("o-1")
    async with serving(shop) as client:
        for i in range(10):
            headers = {"X-Forwarded-For": "203.0.113.7"}
            r = await client.post(
                "/aftersales", json={"ref": f"g{i}", "proof": "x", "problem": "not_received"}, headers=headers
            )
            assert r.status_code == 404
        blocked = await client.post(
            "/aftersales",
            json={"ref": "g", "proof": "x", "problem": "not_received"},
            headers={"X-Forwarded-For": "203.0.113.7"},
        )
        other = await client.post(
            "/aftersales",
            json={"ref": "o-1", "proof": PROOF, "problem": "not_received"},
            headers={"X-Forwarded-For": "198.51.100.2"},
        )
    assert blocked.status_code == 429
    assert other.status_code == 201


async def test_bad_bodies_are_refused_naming_the_field_and_odd_refs_are_not_found(
    store: Store, cipher: CardCipher
) -> None:
    shop = make_shop(store, cipher)
    await shop.delivered_order("o-1")
    async with serving(shop) as client:
        cases = [
            (b"not json", 400, None),
            (b"[1]", 400, "body"),
            (b'{"ref": "o-1", "proof": "p", "problem": "lost"}', 400, "problem"),
            (b'{"ref": "o-1", "proof": "p", "problem": "other"}', 422, "text"),
            (b'{"ref": "o-1", "proof": "p", "problem": "other", "text": "x\\u0000y"}', 422, "text"),
            (b'{"ref": "o-1", "proof": "p", "problem": "other", "text": "\\ud800"}', 400, None),  # not JSON text
            (b'{"ref": "o-1", "proof": "p", "problem": "not_received", "colour": 1}', 400, "body"),
            (b'{"ref": "o-1", "proof": "p", "problem": "key_invalid", "keys": "ABC"}', 422, "keys"),
        ]
        for body, status, field in cases:
            r = await client.post("/aftersales", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == status, (body, r.text)
            if field is not None:
                assert r.json()["field"] == field
        for ref in ("a%00b", "x" * 300):
            r = await client.get(f"/aftersales/options/{ref}", params={"proof": "p"})
            assert r.status_code == 404
    assert await store.list_cases() == []


async def test_a_case_is_shown_only_with_its_orders_proof_and_repeats_add_attachments(
    store: Store, cipher: CardCipher
) -> None:
    shop = make_shop(store, cipher)
    await shop.delivered_order("o-1")
    await shop.delivered_order("o-2", contact="other@example.com")
    async with serving(shop) as client:
        body = {"ref": "o-1", "proof": PROOF, "problem": "other", "text": "the key shows 'used'"}
        first = await client.post("/aftersales", json={**body, "attachments": ["https://img.example/1.png"]})
        again = await client.post("/aftersales", json={**body, "attachments": ["https://img.example/2.png"]})
        assert (first.status_code, again.status_code) == (201, 200)
        case_no = first.json()["case_no"]
        mine = await client.get(f"/aftersales/{case_no}", params={"proof": PROOF})
        theirs = await client.get(f"/aftersales/{case_no}", params={"proof": "other@example.com"})
        nothing = await client.get("/aftersales/AS-20000101-000001", params={"proof": PROOF})
    assert mine.status_code == 200 and mine.json()["level"] == "L2" and "reason" not in mine.json()
    assert theirs.status_code == nothing.status_code == 404 and theirs.json() == nothing.json()
    (case,) = await store.list_cases()
    assert case.reports == 2 and case.attachments == ("https://img.example/1.png", "https://img.example/2.png")
