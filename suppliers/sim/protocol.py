"""The request flow both protocols share: decide the fault, wait, maybe fail before committing, do the work,
maybe fail after committing. The protocol modules supply the work and their own error and signature shapes.

"Commit" is the point where a purchase is charged and recorded in the ledger. Faults before it (drop,
timeout, uncommitted errors) leave no order; faults after it (lost answer, 5xx, committed errors, broken
answers) leave an order the client does not know about — the ambiguous case the daemon must survive.
"""

from __future__ import annotations

import abc
import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from aiohttp import web

from suppliers.sim.fault_spec import Fault
from suppliers.sim.faults import NO_FAULT
from suppliers.sim.state import SimState

# Faults that answer in place of the work unless configured `committed: true`.
_ERROR_KINDS = frozenset({"http_5xx", "html_error", "system_error"})
# Faults that spoil a real answer; uncommitted on an order, they spoil the system-error answer instead.
_SPOIL_KINDS = frozenset({"truncated_json", "bad_signature"})

_HTML = (
    "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\n"
    "<body><center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>\n"
)
# What acg-faka answers, with HTTP 200, for an unknown route or an internal error (a failed insert included).
NOT_FOUND_PAGE = (
    '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>404 Not Found</title></head>\n'
    "<body><h1>404</h1><p>页面不存在 (page not found)</p></body></html>\n"
)


@dataclass(frozen=True)
class Target:
    """What the fault decision needs to know about a request."""

    op: str | None  # order | query | stock | account; None: not an operation faults can target
    number: str | None = None  # our number (customer_order_no / request_no) or the supplier's (tradeNo)
    product: str | None = None
    label: str | None = None  # what the request log calls the operation (the fulu method, the acg path)


@dataclass(frozen=True)
class Reply:
    body: dict[str, Any]
    code: int | None = None  # protocol result code, for the request log
    committed: bool = False  # whether this request committed a new order
    page: str | None = None  # an HTML page answered with HTTP 200 in place of `body` (acg-faka's error page)


Work = Callable[[Fault | None], Awaitable[Reply]]


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=encode(body), status=status, content_type="application/json", charset="utf-8")


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def abort(request: web.Request) -> NoReturn:
    """Close the connection without an answer; the client sees a disconnect."""
    if request.transport is not None:
        request.transport.abort()
    # aiohttp turns this into a response it can no longer send: nothing reaches the client, nothing is logged.
    raise web.HTTPServiceUnavailable()


class ProtocolHandler(abc.ABC):
    def __init__(self, state: SimState) -> None:
        self.state = state

    @abc.abstractmethod
    def error_reply(self, fault: Fault) -> Reply:
        """The protocol's "system error" answer."""

    @abc.abstractmethod
    def tamper(self, reply: Reply) -> Reply:
        """The same answer with a signature that does not verify."""

    async def serve(self, request: web.Request, target: Target, work: Work) -> web.StreamResponse:
        state = self.state
        decision = state.faults.decide(target.op, target.product) if target.op else NO_FAULT
        fault = decision.fault
        entry = state.log_request(
            method=request.method,
            path=request.path,
            op=target.label or target.op,
            number=target.number,
            product=target.product,
            fault=fault,
            delay=decision.delay,
        )
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if fault is not None:
            early = await self._before_commit(request, target, fault, entry)
            if early is not None:
                return early
        reply = await work(fault)
        entry["code"] = reply.code
        entry["committed"] = reply.committed
        return self._after_commit(request, fault, reply, entry)

    async def _before_commit(
        self, request: web.Request, target: Target, fault: Fault, entry: dict[str, Any]
    ) -> web.StreamResponse | None:
        kind = fault.kind
        if kind == "drop_before_commit":
            entry["outcome"] = "dropped before commit"
            abort(request)
        if kind == "timeout_before_commit":
            entry["outcome"] = "hung without committing"
            await asyncio.sleep(fault.duration)
            abort(request)
        if kind in _ERROR_KINDS and not fault.committed:
            return self._error(fault, entry)
        if kind in _SPOIL_KINDS and not fault.committed and target.op == "order":
            return self._spoil(fault, self.error_reply(fault), entry)
        return None

    def _after_commit(
        self, request: web.Request, fault: Fault | None, reply: Reply, entry: dict[str, Any]
    ) -> web.StreamResponse:
        kind = fault.kind if fault else None
        if kind == "lost_after_commit":
            entry["outcome"] = "lost after commit"
            abort(request)
        if kind in _ERROR_KINDS:
            assert fault is not None
            return self._error(fault, entry)
        if kind in _SPOIL_KINDS:
            assert fault is not None
            return self._spoil(fault, reply, entry)
        entry["http_status"] = 200
        if reply.page is not None:
            entry["outcome"] = "html page 200"
            return web.Response(text=reply.page, content_type="text/html")
        entry["outcome"] = "answered"
        return json_response(reply.body)

    def _error(self, fault: Fault, entry: dict[str, Any]) -> web.Response:
        entry["http_status"] = fault.status or 200
        if fault.kind == "http_5xx":
            entry["outcome"] = f"http {fault.status}"
            return web.Response(status=fault.status, text="Internal Server Error\n")
        if fault.kind == "html_error":
            entry["outcome"] = f"html page {fault.status}"
            if fault.status == 200:
                return web.Response(text=NOT_FOUND_PAGE, content_type="text/html")
            reason = web.Response(status=fault.status).reason
            page = _HTML.format(status=fault.status, reason=reason)
            return web.Response(status=fault.status, text=page, content_type="text/html")
        reply = self.error_reply(fault)
        entry["outcome"] = "system error"
        entry["code"] = reply.code
        return json_response(reply.body)

    def _spoil(self, fault: Fault, reply: Reply, entry: dict[str, Any]) -> web.Response:
        entry["http_status"] = 200
        entry["code"] = reply.code
        if fault.kind == "bad_signature":
            entry["outcome"] = "bad signature"
            return json_response(self.tamper(reply).body)
        entry["outcome"] = "truncated json"
        body = encode(reply.body)
        return web.Response(body=body[: len(body) // 2], content_type="application/json", charset="utf-8")
