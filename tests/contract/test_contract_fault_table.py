"""Every simulator fault kind → the outcome class the adapter must give it, for every protocol it applies to.

The kinds come from the simulator itself (`suppliers.sim.fault_spec.KINDS`), and the `*_table_is_complete`
tests fail when a kind, a protocol, or a `committed` variant has no row: a new fault kind needs a decided class.

Each row runs against a fresh simulator with only that fault, over both HTTP transports, and is checked
three ways: the class the adapter gave; the simulator's ledger (did the supplier charge?); and, where the
adapter can query, what a later query finds. The money rule is what ties them together: TRANSIENT is only
allowed when nothing was charged, and every answer the client could not trust is AMBIGUOUS, even when the
simulator happens not to have charged, because the client cannot know that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import pytest
from contractkit import (
    KEY_PATTERN,
    SCENARIOS,
    card_set,
    charged_units,
    leaks,
    new_number,
    settle,
    sim_supplier,
    wait_for_order,
)

from fulfil.validation import check_cards
from suppliers.base import Balance, PlaceRequest, StockCheck, Supplier
from suppliers.http import TRANSPORTS, HttpSettings
from suppliers.registry import supplier_class
from suppliers.sim import Simulator, running_sim
from suppliers.sim.fault_spec import KINDS, PROTOCOLS
from suppliers.taxonomy import Card, ErrorClass, OrderState, Outcome, SupplierError

QTY: Final = 2
PRODUCT: Final = {"fulu": "10001", "acg_faka": "steam-100"}  # password-only keys matching KEY_PATTERN
CALL_TIMEOUT: Final = 3.0  # the engine's cap on one call (PlaceRequest.timeout): ample on a loaded machine
SHORT_TIMEOUT: Final = 0.15  # the cap in rows about timing out, kept small so they stay fast
HANG: Final = "0.35s"  # how long timeout_before_commit hangs, and how late a slow answer comes: > SHORT_TIMEOUT
SYSTEM_ERROR_CODES: Final = (4008, 4009, 4012, 5000)  # fulu's "system error" codes; all may have executed
# Faults in how the bytes arrive (or do not): the two HTTP transports fail differently underneath, so these
# run over both. The rest are well-formed HTTP answers whose content is the fault: the default transport.
WIRE_KINDS: Final = frozenset(
    {"latency", "refuse", "drop_before_commit", "timeout_before_commit", "lost_after_commit", "http_5xx",
     "html_error", "truncated_json"}
)  # fmt: skip
DEFAULT_TRANSPORT: Final = HttpSettings().transport

SUCCEEDED: Final = (OrderState.SUCCEEDED, None)
PENDING: Final = (OrderState.PENDING, None)
AMBIGUOUS: Final = (OrderState.ERROR, ErrorClass.AMBIGUOUS)
TRANSIENT: Final = (OrderState.ERROR, ErrorClass.TRANSIENT)


def failed(error: ErrorClass) -> tuple[OrderState, ErrorClass]:
    return OrderState.FAILED, error


@dataclass(frozen=True)
class Row:
    """One fault on a purchase, and what must come of it."""

    protocol: str
    fault: Mapping[str, Any]
    place: tuple[OrderState, ErrorClass | None]  # what `place` answers
    final: tuple[OrderState, ErrorClass | None] | None = None  # after polling a PENDING answer
    charged: bool = False  # whether the supplier holds our money for it in the end
    charged_late: bool = False  # charged after the client gave up (a slow answer): waited for
    keys: str | None = None  # "valid" | "invalid": what the engine's validation says of the goods
    prime: bool = False  # buy once cleanly first (a "resold" fault needs keys sold before)
    timeout: float = CALL_TIMEOUT
    reason: str | None = None  # the supplier's own words the final failure's evidence message must keep
    no_goods: bool = False  # SUCCEEDED and charged, with the supplier's text and no card (acg-faka)
    maybe_charged: bool = False  # FAILED with a text the supplier also gives after charging: re-send to learn
    label: str = ""

    @property
    def kind(self) -> str:
        return str(self.fault["kind"])

    @property
    def committed(self) -> bool | None:
        """The `committed` variant this row exercises (None where the kind has no such setting)."""
        default = KINDS[self.kind].committed
        return None if default is None else bool(self.fault.get("committed", default))

    @property
    def id(self) -> str:
        variant = self.label or ("" if self.committed is None else ("committed" if self.committed else "uncommitted"))
        return "-".join(part for part in (self.protocol, self.kind, variant) if part)


def _rows() -> list[Row]:
    rows: list[Row] = []
    for protocol in PROTOCOLS:
        fulu = protocol == "fulu"
        # A synchronous supplier answers with the goods; fulu accepts (PENDING) and is polled for them.
        ok = PENDING if fulu else SUCCEEDED
        ok_final = SUCCEEDED if fulu else None

        def add(
            fault: dict[str, Any], place: tuple[OrderState, ErrorClass | None], *, protocol: str = protocol, **kw: Any
        ) -> None:
            rows.append(Row(protocol, fault, place, **kw))

        add({"kind": "latency", "delay": "0.05s"}, ok, final=ok_final, charged=True, keys="valid", label="short")
        # Beyond the client's timeout: the request was sent and the supplier still commits it afterwards.
        add(
            {"kind": "latency", "delay": HANG},
            AMBIGUOUS,
            charged=True,
            charged_late=True,
            timeout=SHORT_TIMEOUT,
            label="beyond-timeout",
        )
        add({"kind": "refuse"}, TRANSIENT)
        # Nothing committed in the next two, but the client saw only "sent, no answer": ambiguous.
        add({"kind": "drop_before_commit"}, AMBIGUOUS)
        add({"kind": "timeout_before_commit", "duration": HANG}, AMBIGUOUS, timeout=SHORT_TIMEOUT)
        add({"kind": "lost_after_commit"}, AMBIGUOUS, charged=True)
        for committed in (True, False):
            add({"kind": "http_5xx", "committed": committed}, AMBIGUOUS, charged=committed)
            add({"kind": "html_error", "committed": committed}, AMBIGUOUS, charged=committed)
            add({"kind": "truncated_json", "committed": committed}, AMBIGUOUS, charged=committed)
            if fulu:
                add({"kind": "bad_signature", "committed": committed}, AMBIGUOUS, charged=committed)
        if fulu:
            for code in SYSTEM_ERROR_CODES:
                add({"kind": "system_error", "code": code}, AMBIGUOUS, label=f"code-{code}")
            add({"kind": "system_error", "code": 5000, "committed": True}, AMBIGUOUS, charged=True)
        else:
            add({"kind": "system_error", "committed": False}, AMBIGUOUS)  # {"code": 0, "msg": "系统繁忙…"}
            add({"kind": "system_error", "committed": True}, AMBIGUOUS, charged=True)
        # acg-faka: any unavailable/account text may come from a reselling shop's upstream after our charge.
        add({"kind": "out_of_stock"}, failed(ErrorClass.PRODUCT_UNAVAILABLE), reason="库存不足", maybe_charged=not fulu)
        if fulu:
            # No code for it: the order is taken, then fails saying 余额不足; confirmed not charged.
            add({"kind": "balance_exhausted"}, PENDING, final=failed(ErrorClass.SUPPLIER_ACCOUNT), reason="余额不足")
            add({"kind": "processing", "duration": "0.2s"}, PENDING, final=SUCCEEDED, charged=True, keys="valid",
                label="then-success")  # fmt: skip
            # Failed after processing: refunded, so failing over is safe; "充值失败" names no cause.
            add({"kind": "processing", "duration": "0.2s", "then": "failure"}, PENDING,
                final=failed(ErrorClass.PRODUCT_UNAVAILABLE), reason="充值失败", label="then-failure")  # fmt: skip
        else:
            add({"kind": "balance_exhausted"}, failed(ErrorClass.SUPPLIER_ACCOUNT), reason="余额不足",
                maybe_charged=True)  # fmt: skip
            # Charged, `code: 200`, and the shop's words where keys should be: the engine claims the units.
            add({"kind": "grabbed"}, SUCCEEDED, charged=True, no_goods=True, reason="有人在你付款之前抢走了商品")
            add({"kind": "manual_delivery"}, SUCCEEDED, charged=True, no_goods=True, reason="正在发货中")
            # Caps this offer cannot serve the order under (nothing charged): fail over.
            for mode, limit, text in (
                ("per_person", 1, "该商品每人只能购买1件"),
                ("per_trade", 1, "本商品单次最多购买1个"),
                ("minimum", QTY + 1, f"本商品最少购买{QTY + 1}个"),
            ):
                add({"kind": "purchase_limit", "mode": mode, "limit": limit},
                    failed(ErrorClass.PRODUCT_UNAVAILABLE), reason=text, label=mode, maybe_charged=True)  # fmt: skip
            # Charged by a reselling shop, then its own upstream's check failed: the same texts as "not
            # charged", so the outcome says maybe_charged and a re-send under the number tells (EXISTS).
            for text in ("商品不存在", "当前商品已停售"):
                add({"kind": "charged_then_error", "message": text}, failed(ErrorClass.PRODUCT_UNAVAILABLE),
                    charged=True, maybe_charged=True, reason=text, label=text)  # fmt: skip
            # An auth text after the charge (the reseller's own account at its upstream) is maybe_charged too:
            # the engine's re-send under the same number finds the charge.
            add({"kind": "charged_then_error", "message": "You have been banned"},
                failed(ErrorClass.SUPPLIER_ACCOUNT), charged=True, maybe_charged=True, reason="banned",
                label="banned")  # fmt: skip
        # The adapter reports what the supplier said, SUCCEEDED; the engine's validation rejects the keys.
        add({"kind": "invalid_keys", "mode": "not_matching"}, ok, final=ok_final, charged=True, keys="invalid",
            label="not-matching")  # fmt: skip
        add({"kind": "invalid_keys", "mode": "resold", "requests": "2-"}, ok, final=ok_final, charged=True,
            keys="invalid", prime=True, label="resold")  # fmt: skip
    return rows


ROWS: Final = _rows()


def _applicable(op: str) -> set[tuple[str, str]]:
    """(kind, protocol) pairs the simulator can inject on `op`."""
    return {(kind, protocol) for kind, spec in KINDS.items() for protocol in spec.protocols if op in spec.ops}


def test_fault_table_is_complete() -> None:
    assert WIRE_KINDS.issubset(KINDS)
    for protocol in PROTOCOLS:  # every simulated protocol has its adapter
        assert supplier_class(protocol).type_name == protocol
    assert {(row.kind, row.protocol) for row in ROWS} == _applicable("order")
    for kind, spec in KINDS.items():
        if spec.committed is None:
            continue
        for protocol in spec.protocols:  # a kind that can fire before or after the commit: both sides
            variants = {row.committed for row in ROWS if (row.kind, row.protocol) == (kind, protocol)}
            assert variants == {True, False}, (kind, protocol, variants)
    assert len({row.id for row in ROWS}) == len(ROWS)


# --- running a row --------------------------------------------------------------------------------------


async def place_clean(supplier: Supplier) -> tuple[PlaceRequest, Outcome]:
    request = PlaceRequest(new_number(), "contract-sku", PRODUCT[supplier.type_name], QTY, "card")
    outcome = await settle(supplier, request, await supplier.place(request))
    assert outcome.state is OrderState.SUCCEEDED, outcome
    return request, outcome


def _fingerprint(card: Card) -> str:
    return f"{card.number}\x00{card.password}"


async def _without_faults(sim: Simulator) -> None:
    sim.set_faults([])
    await sim.sync_listener()


def _transports(kind: str) -> tuple[str, ...]:
    return TRANSPORTS if kind in WIRE_KINDS else (DEFAULT_TRANSPORT,)


@pytest.mark.parametrize(
    ("row", "transport"),
    [pytest.param(row, t, id=f"{row.id}-{t}") for row in ROWS for t in _transports(row.kind)],
)
async def test_fault_maps_to_its_class(row: Row, transport: str) -> None:
    async with running_sim(SCENARIOS[row.protocol]([dict(row.fault)])) as sim:
        supplier = sim_supplier(sim, transport=transport)
        try:
            await _check_row(row, sim, supplier)
        finally:
            await supplier.aclose()


async def _check_row(row: Row, sim: Simulator, supplier: Supplier) -> None:
    sold_before: tuple[Card, ...] = ()
    if row.prime:
        sold_before = (await place_clean(supplier))[1].cards
    request = PlaceRequest(new_number(), "contract-sku", PRODUCT[row.protocol], QTY, "card", timeout=row.timeout)

    outcome = await supplier.place(request)  # never raises: a raise fails the row

    assert (outcome.state, outcome.error) == row.place, outcome
    if outcome.state in (OrderState.FAILED, OrderState.ERROR):
        assert outcome.evidence.message, outcome  # every failure says why
    if row.place == TRANSIENT:
        assert sim.ledger.by_number(request.number) is None  # transient: certainly not executed
    final = outcome
    if row.kind == "processing":  # asked while it processes: still PENDING, never a guess
        assert (await supplier.query(request)).state is OrderState.PENDING
    if row.final is not None:
        final = await settle(supplier, request, outcome)
        assert (final.state, final.error) == row.final, final
    if row.charged_late:
        await wait_for_order(sim, request.number)
    assert charged_units(sim, request.number) == (QTY if row.charged else 0)
    if row.reason is not None:
        assert row.reason in (final.evidence.message or ""), final.evidence
    assert outcome.maybe_charged is row.maybe_charged, outcome
    if row.no_goods:
        assert final.cards == () and final.supplier_order_id, final
        assert "charged without goods" in (final.evidence.message or ""), final.evidence
    # Neither the answer nor its evidence shows a key, even when the answer was broken mid-card.
    order = sim.ledger.by_number(request.number)
    issued = tuple(order.cards) if order is not None else ()
    assert leaks(outcome, issued) == [] and leaks(final, issued) == []
    if row.keys is not None:
        assert final.state is OrderState.SUCCEEDED and len(final.cards) == QTY
        verdict = check_cards(
            final.cards,
            qty=QTY,
            pattern=KEY_PATTERN,
            delivered_before={_fingerprint(card) for card in sold_before},
            fingerprint=_fingerprint,
        )
        assert verdict.ok is (row.keys == "valid"), verdict.reasons()
    if outcome.state is OrderState.ERROR or outcome.maybe_charged:
        await _check_recovery(sim, supplier, request, row)


async def _check_recovery(sim: Simulator, supplier: Supplier, request: PlaceRequest, row: Row) -> None:
    """What the engine does next with an ERROR, once the supplier behaves: query where it can, and re-send
    the same attempt where a repeated number is safe. Both must agree with the supplier's books."""
    await _without_faults(sim)
    request = replace(request, timeout=CALL_TIMEOUT)
    order = sim.ledger.by_number(request.number)
    assert (order is not None) is row.charged
    if supplier.can_query:
        found = await settle(supplier, request, await supplier.query(request))
        if order is not None:
            assert found.state is OrderState.SUCCEEDED, found
            assert card_set(found.cards) == card_set(order.cards)
        else:
            assert found.state is OrderState.NOT_FOUND, found
    if supplier.idempotent_place:
        again = await supplier.place(request)
        assert again.state is not OrderState.FAILED, again
        again = await settle(supplier, request, again)
        if order is not None:  # bought already: the re-send must not buy again, nor bring other goods
            assert again.state is not OrderState.SUCCEEDED or card_set(again.cards) == card_set(order.cards)
            if not supplier.can_query:  # the re-send is how such a supplier tells "you were charged"
                assert again.state is OrderState.EXISTS, again
        else:  # never bought: the re-send buys, once
            assert again.state is OrderState.SUCCEEDED and len(again.cards) == QTY, again
        assert charged_units(sim, request.number) == QTY
        assert len(sim.ledger.orders) == (2 if row.prime else 1)


# --- faults on the query --------------------------------------------------------------------------------

# A query that fails says nothing about the purchase: "ask again" (TRANSIENT or AMBIGUOUS), never FAILED
# nor NOT_FOUND, or the engine might buy elsewhere while this purchase stands.
QUERY_EXPECTED: Final[Mapping[str, tuple[OrderState, ErrorClass | None]]] = {
    "latency": SUCCEEDED,  # short: the answer arrives
    "refuse": TRANSIENT,
    "drop_before_commit": AMBIGUOUS,
    "timeout_before_commit": AMBIGUOUS,
    "lost_after_commit": AMBIGUOUS,
    "http_5xx": AMBIGUOUS,
    "system_error": AMBIGUOUS,
    "bad_signature": AMBIGUOUS,
    "html_error": AMBIGUOUS,
    "truncated_json": AMBIGUOUS,
}
QUERY_FAULT_OPTIONS: Final[Mapping[str, Mapping[str, Any]]] = {
    "latency": {"delay": "0.05s"},
    "timeout_before_commit": {"duration": HANG},
}
QUERY_ROWS: Final = sorted(
    (kind, protocol) for kind, protocol in _applicable("query") if supplier_class(protocol).can_query
)


def test_query_fault_table_is_complete() -> None:
    assert {kind for kind, _ in QUERY_ROWS} == set(QUERY_EXPECTED)
    assert QUERY_ROWS  # at least one adapter can query


@pytest.mark.parametrize(
    ("kind", "protocol", "transport"),
    [pytest.param(k, p, t, id=f"{p}-{k}-{t}") for k, p in QUERY_ROWS for t in _transports(k)],
)
async def test_query_fault_maps_to_its_class(kind: str, protocol: str, transport: str) -> None:
    async with running_sim(SCENARIOS[protocol]()) as sim:
        supplier = sim_supplier(sim, transport=transport)
        try:
            request, placed = await place_clean(supplier)
            fault: dict[str, Any] = {"kind": kind, **QUERY_FAULT_OPTIONS.get(kind, {})}
            if kind != "refuse":  # refuse closes the whole listener; it takes no `on`
                fault["on"] = ["query"]
            sim.set_faults([fault])
            await sim.sync_listener()
            # Let the connections the simulator dropped finish closing: a request racing onto a pooled
            # connection the server is just closing fails after sending, and is (rightly) AMBIGUOUS instead.
            await asyncio.sleep(0.05)

            timeout = SHORT_TIMEOUT if kind == "timeout_before_commit" else CALL_TIMEOUT
            asked = await supplier.query(replace(request, timeout=timeout))

            assert (asked.state, asked.error) == QUERY_EXPECTED[kind], asked
            if asked.state is OrderState.SUCCEEDED:
                assert card_set(asked.cards) == card_set(placed.cards)
            else:
                assert asked.evidence.message
            assert leaks(asked, placed.cards) == []  # a broken answer (truncated, unsigned) holds the keys
            assert charged_units(sim) == QTY  # asking never buys
        finally:
            await supplier.aclose()


# --- faults on the operator's calls ---------------------------------------------------------------------

OPERATOR_ROWS: Final = sorted((kind, protocol, op) for op in ("account", "stock") for kind, protocol in _applicable(op))


@pytest.mark.parametrize(("kind", "protocol", "op"), OPERATOR_ROWS, ids=["-".join(r) for r in OPERATOR_ROWS])
async def test_operator_calls_never_leak_transport_errors(kind: str, protocol: str, op: str) -> None:
    """balance() and check_stock() answer, or raise SupplierError: never an httpx/aiohttp/socket error, and
    never a value read from an answer that cannot be trusted."""
    fault: dict[str, Any] = {"kind": kind, **QUERY_FAULT_OPTIONS.get(kind, {})}
    if kind != "refuse":
        fault["on"] = [op]
    async with running_sim(SCENARIOS[protocol]([fault])) as sim:
        # These calls take no per-call cap: the supplier's own timeout applies.
        supplier = sim_supplier(sim, timeout=SHORT_TIMEOUT if kind == "timeout_before_commit" else CALL_TIMEOUT)
        try:
            try:
                if op == "account":
                    result: object = await supplier.balance()
                else:
                    result = await supplier.check_stock(PRODUCT[protocol], 1)
            except SupplierError:
                result = None  # the operator's problem, told as such
            if kind == "latency":  # short: the answer arrives
                assert isinstance(result, Balance if op == "account" else StockCheck)
            elif kind == "out_of_stock":
                assert result == StockCheck(available=False, level="empty")
            else:  # no answer, or none to trust: unknown (None / SupplierError), never a guess
                assert result is None, result
            assert charged_units(sim) == 0
        finally:
            await supplier.aclose()
