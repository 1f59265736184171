"""Control and observation endpoints under /_sim/, served beside the protocol and on the control listener.

GET  /_sim/ledger            balance, stock, every order taken (cards in plaintext: it is a simulator)
GET  /_sim/requests?since=N  the request log after entry N
GET  /_sim/status            protocol, whether the listener is refusing, counts
POST /_sim/scenario          {"faults": [...], "balance": "..."}: replace the faults (clock and counters
                             restart) and/or set the balance; 400 with {"errors": [...]} naming the field.
                             The listener is opened/closed before it answers, so the change is in force.
POST /_sim/reset             books, log, balance, stock and fault counters back to the start
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from aiohttp import web

from suppliers.sim.scenario import ScenarioError, faults_from_data
from suppliers.sim.state import SimState

_SCENARIO_FIELDS = {"faults", "balance"}


class Listener(Protocol):
    """The server side of the protocol listener, which `refuse` faults open and close."""

    @property
    def refusing(self) -> bool: ...

    async def sync_listener(self) -> None:
        """Open or close the listener now, as the faults in force say."""


def _ok(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def add_control_routes(app: web.Application, state: SimState, listener: Listener) -> None:
    async def ledger(request: web.Request) -> web.Response:
        return _ok(state.ledger.snapshot(state.now()))

    async def requests(request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return _ok({"errors": ["since: expected an integer"]}, 400)
        return _ok({"count": state.log.count, "requests": state.log.since(since)})

    async def status(request: web.Request) -> web.Response:
        return _ok(
            {
                "protocol": state.scenario.protocol,
                "refusing": listener.refusing,
                "orders": len(state.ledger.orders),
                "requests": state.log.count,
                "faults": len(state.faults.faults),
            }
        )

    async def scenario(request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            return _ok({"errors": ["body: expected a JSON object"]}, 400)
        errors = _apply(state, data)
        if errors:
            return _ok({"errors": errors}, 400)
        await listener.sync_listener()  # when this answers, the supplier is up (or down) as asked
        return _ok({"ok": True, "faults": len(state.faults.faults), "balance": str(state.ledger.balance)})

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return _ok({"ok": True})

    app.router.add_get("/_sim/ledger", ledger)
    app.router.add_get("/_sim/requests", requests)
    app.router.add_get("/_sim/status", status)
    app.router.add_post("/_sim/scenario", scenario)
    app.router.add_post("/_sim/reset", reset)


def _apply(state: SimState, data: Any) -> list[str]:
    """Validate everything first, then change: a bad request changes nothing."""
    if not isinstance(data, dict):
        return ["body: expected a JSON object with `faults` and/or `balance`"]
    errors = [f"{key}: unknown field (allowed: balance, faults)" for key in data if key not in _SCENARIO_FIELDS]
    faults = None
    if "faults" in data:
        try:
            faults = faults_from_data(data["faults"], state.scenario)
        except ScenarioError as exc:
            errors.extend(exc.errors)
    balance = None
    if "balance" in data:
        try:
            balance = Decimal(str(data["balance"]))
            if not balance.is_finite() or balance < 0 or isinstance(data["balance"], bool):
                raise InvalidOperation
        except InvalidOperation:
            errors.append(f"balance: expected a non-negative amount, got {data['balance']!r}")
    if errors:
        return errors
    if faults is not None:
        state.replace_faults(faults)
    if balance is not None:
        state.ledger.balance = balance
    return []
