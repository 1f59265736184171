"""The /_sim/ control and observation endpoints."""

from __future__ import annotations

from typing import Any

import httpx
from simkit import FuluClient

from suppliers.sim import running_sim


async def test_ledger_lists_charged_orders_with_plaintext_cards(fulu: FuluClient, http: httpx.AsyncClient) -> None:
    await fulu.add("L-1", qty=2)
    await fulu.add("L-2", product=10003, charge_account="acct-9")
    ledger = (await http.get(fulu.sim.url + "/_sim/ledger")).json()
    assert ledger["balance"] == "800.20"
    first, second = ledger["orders"]
    assert {k: first[k] for k in ("number", "product_id", "qty", "price", "total", "state", "charged")} == {
        "number": "L-1",
        "product_id": "10001",
        "qty": 2,
        "price": "95.00",
        "total": "190.00",
        "state": "success",
        "charged": True,
    }
    assert [c["password"] for c in first["cards"]] == [p for _, p in fulu.cards(await fulu.info("L-1"))]
    assert second["account"] == "acct-9" and second["cards"] == []
    assert ledger["stock"]["10001"] == 48


async def test_request_log(fulu: FuluClient, http: httpx.AsyncClient) -> None:
    await fulu.add("Q-1")
    await fulu.info("Q-1")
    await fulu.info("missing")
    log = (await http.get(fulu.sim.url + "/_sim/requests")).json()
    assert log["count"] == 3
    first, second, third = log["requests"]
    assert (first["op"], first["number"], first["product_id"], first["code"], first["committed"]) == (
        "fulu.order.card.add",
        "Q-1",
        "10001",
        0,
        True,
    )
    assert (second["op"], second["product_id"], second["committed"]) == (
        "fulu.order.info.get",
        "10001",
        False,
    )
    assert (third["code"], third["outcome"], third["fault"]) == (4011, "answered", None)
    later = (await http.get(fulu.sim.url + "/_sim/requests", params={"since": 2})).json()
    assert [e["seq"] for e in later["requests"]] == [3]
    assert (await http.get(fulu.sim.url + "/_sim/requests", params={"since": "x"})).status_code == 400


async def test_replacing_faults_validates_first(fulu: FuluClient, http: httpx.AsyncClient) -> None:
    url = fulu.sim.url + "/_sim/scenario"
    bad = await http.post(url, json={"faults": [{"kind": "system_error", "probability": 2}], "balance": "x", "y": 1})
    assert bad.status_code == 400
    assert sorted(bad.json()["errors"]) == [
        "balance: expected a non-negative amount, got 'x'",
        "faults[0].probability: must be a number between 0 and 1, got 2",
        "y: unknown field (allowed: balance, faults)",
    ]
    assert (await fulu.add("F-1")).code == 0  # nothing changed
    good = await http.post(url, json={"faults": [{"kind": "system_error", "code": 5000}], "balance": "20"})
    assert good.json() == {"ok": True, "faults": 1, "balance": "20"}
    assert (await fulu.add("F-2")).code == 5000
    assert (await http.post(url, content=b"[")).status_code == 400


async def test_reset(fulu: FuluClient, http: httpx.AsyncClient) -> None:
    fulu.sim.set_faults([{"kind": "system_error", "requests": "2"}])
    await fulu.add("X-1")
    assert (await fulu.add("X-2")).code == 5000
    assert (await http.post(fulu.sim.url + "/_sim/reset")).json() == {"ok": True}
    ledger = (await http.get(fulu.sim.url + "/_sim/ledger")).json()
    assert ledger["orders"] == [] and ledger["balance"] == "1000.00" and ledger["stock"]["10001"] == 50
    assert (await http.get(fulu.sim.url + "/_sim/requests")).json() == {"count": 0, "requests": []}
    assert (await fulu.add("X-1")).code == 0  # numbers are free again; counters restarted
    assert (await fulu.add("X-2")).code == 5000


async def test_control_is_never_faulted_and_has_its_own_listener(
    fulu_data: dict[str, Any], http: httpx.AsyncClient
) -> None:
    fulu_data["faults"] = [{"kind": "drop_before_commit", "on": ["order", "query", "stock", "account"]}]
    async with running_sim(fulu_data) as sim:
        assert sim.control_url is not None and sim.control_url != sim.url
        for base in (sim.url, sim.control_url):
            status = (await http.get(base + "/_sim/status")).json()
            assert status == {"protocol": "fulu", "refusing": False, "orders": 0, "requests": 0, "faults": 1}
        with_no_control = running_sim(fulu_data, control_port=None)
        async with with_no_control as quiet:
            assert quiet.control_url is None
