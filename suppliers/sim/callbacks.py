"""fulu callbacks: when an order finishes, POST the signed notice to the scenario's `callback_url`.

Like the real platform, the notice is re-sent until the merchant answers the plain text `success`
(a few tries here). A callback is only a hint; the daemon confirms it with `fulu.order.info.get`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from suppliers.fulu_codec import canonical_json, format_timestamp, sign
from suppliers.sim.ledger import LedgerOrder
from suppliers.sim.state import SimState

ATTEMPTS = 3
INTERVAL = 1.0  # seconds between tries
TIMEOUT = 5.0


def notice(order: LedgerOrder, secret: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": order.supplier_order_id,
        "charge_finish_time": format_timestamp(order.finished_at or order.ready_at),
        "customer_order_no": order.number,
        "order_status": order.state,
        "recharge_description": order.description or ("充值成功" if order.state == "success" else "充值失败"),
        "product_id": int(order.product.id),
        "price": str(order.total),
        "buy_num": order.qty,
        "operator_serial_number": "",
    }
    body["sign"] = sign(body, secret)
    return body


class CallbackSender:
    def __init__(self, state: SimState, url: str, secret: str) -> None:
        self.state = state
        self.url = url
        self.secret = secret
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def schedule(self, order: LedgerOrder) -> None:
        task = asyncio.get_running_loop().create_task(self._run(order))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, order: LedgerOrder) -> None:
        wait = (order.ready_at - self.state.now()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        self.state.ledger.settle(order, self.state.now())
        payload = canonical_json(notice(order, self.secret)).encode("utf-8")
        entry = self.state.log_request(
            method="POST", path=self.url, op="callback", number=order.number, product=order.product.id,
            fault=None, delay=0.0,
        )  # fmt: skip
        entry["outcome"] = "not acknowledged"
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(INTERVAL)
            status, text = await self._post(payload)
            entry["http_status"] = status
            if text.strip() == "success":
                entry["outcome"] = "acknowledged"
                return

    async def _post(self, payload: bytes) -> tuple[int | None, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        try:
            async with self._session.post(
                self.url, data=payload, headers={"Content-Type": "application/json; charset=utf-8"}
            ) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None, ""

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
