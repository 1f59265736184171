"""Admin-only console actions over real HTTP (SQLite, PostgreSQL): pausing an offer routes around it until resumed,
and no supplier trouble shortens the pause; replaying failed webhook deliveries; each recorded with the operator."""

from __future__ import annotations

from datetime import datetime, timedelta

from fulfil.crypto import CardCipher, identity_hash
from fulfil.storage import Store
from tests.console.consolekit import add_operator, browser, serving


async def test_an_admin_pauses_and_resumes_an_offer(store: Store, cipher: CardCipher, now: datetime) -> None:
    await add_operator(store, "root", "admin", now)
    await add_operator(store, "amy", "agent", now)
    async with serving(store, cipher) as server:
        async with browser(server, "amy") as agent:
            assert (await agent.post("/console/suppliers/fulu-main/pause", product_id="10001")).status_code == 403
        assert await store.active_cooldowns(now) == {}
        async with browser(server, "root") as admin:
            done = await admin.post("/console/suppliers/fulu-main/pause", product_id="10001")
            assert done.status_code == 303
            paused = await store.active_cooldowns(now + timedelta(days=3650))
            assert ("fulu-main", "10001") in paused
            # The engine cooling the offer down for a minute must not cut the pause short.
            await store.set_cooldown("fulu-main", "10001", now + timedelta(minutes=1), "out_of_stock", now)
            assert ("fulu-main", "10001") in await store.active_cooldowns(now + timedelta(days=3650))
            assert (await admin.post("/console/suppliers/fulu-main/resume", product_id="10001")).status_code == 303
            assert await store.active_cooldowns(now) == {}
    events = await store.events(name="offer.paused") + await store.events(name="offer.resumed")
    assert sorted((e.name, e.operator, e.supplier) for e in events) == [
        ("offer.paused", "root", "fulu-main"),
        ("offer.resumed", "root", "fulu-main"),
    ]


async def test_an_admin_replays_a_dead_delivery(store: Store, cipher: CardCipher, now: datetime) -> None:
    from sqlalchemy import insert

    from fulfil.storage.schema import outbox

    await add_operator(store, "root", "admin", now)
    async with store._write() as conn:  # noqa: SLF001 (a dead row as the dispatcher leaves one)
        await conn.execute(
            insert(outbox).values(
                event_id="evt_1", type="order.delivered", channel="webhook:shop", data={}, created_at=now,
                state="dead", attempts=8, next_at=now, last_status=500, last_error="HTTP 500", done_at=now,
            )
        )
    async with serving(store, cipher) as server, browser(server, "root") as admin:
        page = await admin.client.get("/console/webhooks")
        assert page.status_code == 200 and "HTTP 500" in page.text
        row_id = (await store.outbox_rows(state="dead"))[0].id
        assert (await admin.post("/console/webhooks/replay", id=str(row_id))).status_code == 303
    again = await store.outbox_rows()
    assert [(r.state, r.attempts) for r in again] == [("pending", 0)]
    assert [e.operator for e in await store.events(name="webhooks.replayed")] == ["root"]


def test_identity_hash_is_the_shared_definition() -> None:
    """HMAC-SHA256 under an HKDF-SHA256 subkey (no salt, info "fulfil buyer identity v1"), written out by hand."""
    import hashlib
    import hmac

    key = bytes(range(32))
    prk = hmac.new(b"\x00" * 32, key, hashlib.sha256).digest()  # HKDF-Extract with no salt
    subkey = hmac.new(prk, b"fulfil buyer identity v1" + b"\x01", hashlib.sha256).digest()  # Expand, 32 bytes
    want = hmac.new(subkey, b"contact:buyer@example.com", hashlib.sha256).hexdigest()
    assert identity_hash(key, "contact", "  Buyer@Example.COM ") == want
    assert identity_hash(key, "account", " 12345 ") == hmac.new(subkey, b"account:12345", hashlib.sha256).hexdigest()
    assert CardCipher(key).identity_hash("contact", "buyer@example.com") == want
