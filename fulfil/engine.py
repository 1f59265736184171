"""The fulfilment engine: one order from `processing` to an end state, never buying twice, losing nothing.

For each order the engine first settles every attempt that may still be open at a supplier (write-ahead rows
left `planned`, `sent` or `ambiguous` by an earlier run or a crash), then walks the product's offers in
routing order. Each attempt is written before its call; its outcome is classified by the adapter and acted on
here, by class only. The pure pieces live beside it: routing, placing (retry budget), validation.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from fulfil import failpoints, metrics
from fulfil.batching import BatchLoader
from fulfil.clock import Clock, SystemClock
from fulfil.config import Config, ProductConfig
from fulfil.domain import (
    OPEN_ATTEMPT_STATES,
    WAITING_REASON,
    AttemptRecord,
    AttemptState,
    ClaimReason,
    ClaimRecord,
    Cooldowns,
    Order,
    OrderStatus,
    Receipt,
    ReceiptKind,
    WorkContext,
)
from fulfil.health import Health, NullHealth
from fulfil.loopwatch import Stalls
from fulfil.placing import place_with_budget
from fulfil.risk.gate import RiskGate
from fulfil.routing import Offer, Skipped, avoid_last, offer_of, plan_offers
from fulfil.storage import DuplicateCard, LeaseLost, Store, StoreError
from fulfil.validation import CardVerdict, check_cards
from suppliers.base import PlaceRequest, Supplier
from suppliers.taxonomy import Card, ErrorClass, OrderState, Outcome

log = logging.getLogger("fulfil.engine")
T = TypeVar("T")

MAX_QUERY_INTERVAL = 30.0
ACKNOWLEDGED = "acknowledged"  # evidence flag: the supplier said it has the order (accepted / processing)
MAX_CRASHES = 3  # an order whose processing raised this many times goes to a person
RESEND_PROBES = 3  # sends under one number to settle an answer an unqueryable supplier left unclear
EXISTS_ANSWER = "exists"  # a receipt made from "already exists": charged, the answer itself lost
NOT_KEYS = frozenset({"empty", "pattern"})  # validation reasons that mean the answer was not keys at all
# Waits before each try of writing a receipt: a locked SQLite or a restarting PostgreSQL passes; the answer is
# only in memory until this lands, so it keeps trying for minutes rather than give up on goods paid for.
RECEIPT_TRIES = (0.0, 0.2, 1.0, 2.0, 5.0, *(10.0,) * 30)
# An order waiting for a blocked offer looks again at least this soon (a half-open breaker's probe usually
# answers within a second or two) and no sooner than this: a wait is a claim and a park, cheap but not free.
BLOCKED_RECHECK = (1.0, 10.0)
# A person sent the order back to work (retry, risk release) or the resolver reopened it: its wait starts again.
WAIT_RESTARTS = frozenset({"review.retry", "review.release", "order.reopened"})
# Attempts an order makes at one offer that all fail transient before it stops waiting for it: "never executed"
# is the adapter's word, and a wrong word would otherwise cost a purchase per look.
MAX_TRANSIENT_TRIES = 3


class LeaseLike(Protocol):
    owner: str


class Step(enum.Enum):
    NEXT_OFFER = "next_offer"  # this offer is done with for the order: route on
    DONE = "done"  # the order reached an end state, or was parked to be picked up again


@dataclass(frozen=True)
class Run:
    """One pass over one order by one worker."""

    order: Order
    owner: str
    product: ProductConfig
    retried_after: int | None  # last `review retry`: attempts up to this id came before it


async def finished_despite_cancel(work: Awaitable[T]) -> tuple[T, bool]:
    """`work` run to its end even if the calling task is cancelled meanwhile, however often; its result, and
    whether a cancel came (the caller stops after acting on the result).

    `work` failing after a cancel came raises the cancel, with the failure logged and as its cause: a task told
    to stop that ended with another error would be taken for a failure of its own (the worker logs it and goes
    on), and `asyncio.timeout` would not see its expiry."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
        except Exception as exc:
            if not cancelled:
                raise
            log.warning("write.failed_after_cancel", exc_info=True)  # told to stop: recovery reads what it left
            raise asyncio.CancelledError from exc


class Engine:
    """Implements the worker's `Processor`: `process`, `recover`, `periodic`."""

    def __init__(
        self,
        store: Store,
        config: Config,
        suppliers: Mapping[str, Supplier],
        *,
        fingerprint: Callable[[Card], str],
        clock: Clock | None = None,
        health: Health | None = None,
        stalls: Stalls | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.suppliers = dict(suppliers)
        self.fingerprint = fingerprint
        self.clock = clock or SystemClock()
        self.health: Health = health or NullHealth()
        self.stalls = stalls  # the daemon's own event-loop stalls (fulfil.loopwatch)
        self._wakers: dict[str, asyncio.Event] = {}
        # Consecutive answers per (supplier, product id) that were not keys; in memory, as a fast trip wire
        # in front of the cool-down that every daemon shares.
        self._non_keys: dict[tuple[str, str], int] = {}
        # Orders claimed together start together: their pasts and the cool-downs are read in one transaction.
        self._contexts: BatchLoader[int, tuple[WorkContext, Cooldowns]] = BatchLoader(self._load_contexts)
        self.risk = RiskGate(store, lambda: self.config, self.clock)
        store.risk_credit = config.risk.credit

    # --- the Processor interface --------------------------------------------------------------------

    async def process(self, order: Order, lease: LeaseLike) -> None:
        try:
            await self._process(order, lease.owner)
        except LeaseLost:
            # Another worker owns the order now; it will settle whatever we left written.
            log.warning("lease.lost", extra={"order": order.ref, "owner": lease.owner})
        except Exception as exc:  # a bug or a failing dependency: never a silent retry loop
            await self._crashed(order, lease.owner, exc)

    async def _crashed(self, order: Order, owner: str, exc: Exception) -> None:
        """Count the crash on the order; retry it a little later, and hand it to a person after a few."""
        log.exception("order.crashed", extra={"order": order.ref})
        now = self.clock.now()
        try:
            await self.store.record_event("order.crashed", now, order_id=order.id, data={"error": repr(exc)[:500]})
            retries = await self.store.events(name="review.retry", order_id=order.id, limit=1000)
            since = max((e.id for e in retries), default=0)  # an operator's retry starts the count again
            crashed = await self.store.events(name="order.crashed", order_id=order.id, limit=1000)
            crashes = sum(1 for e in crashed if e.id > since)
            if crashes >= MAX_CRASHES:
                reason = f"crashed {crashes} times while being fulfilled; last error: {exc!r}"[:1000]
                await self._finish(order, owner, OrderStatus.REVIEW, reason)
            else:
                # Open attempts are settled first on the next pass, so trying again is safe.
                why = f"retrying after a crash: {exc!r}"[:500]
                await self.store.park_for(order.id, owner, self.config.daemon.lease, why, now)
        except Exception:  # the database itself is failing: the lease expires and the order comes back
            log.exception("order.crash_not_recorded", extra={"order": order.ref})

    async def recover(self) -> None:
        from fulfil.resolver import resolve_orphans

        await resolve_orphans(self)

    async def periodic(self, now: datetime) -> None:
        await self.recover()
        await self.health.periodic(now)

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: new products, offers, budgets. Suppliers added or changed need a restart (their clients
        and credentials are built once); removed ones stop being routed to via `enabled`."""
        self.config = config
        self.store.risk_credit = config.risk.credit

    def notify(self, number: str) -> bool:
        """A verified callback arrived for `number`: wake the run waiting on it. False if none here."""
        event = self._wakers.get(number)
        if event is None:
            return False
        event.set()
        return True

    # --- one order ----------------------------------------------------------------------------------

    async def _process(self, order: Order, owner: str) -> None:
        product = self.config.products.get(order.sku)
        if product is None:
            await self._finish(order, owner, OrderStatus.REVIEW, f"unknown_sku: '{order.sku}' is no longer configured")
            return
        context, cooled = await self._contexts.get(order.id)
        # Risk decides once, before the first attempt; with no rules only orders of blocked or low-credit buyers.
        must_decide = not order.risk_passed and not context.attempts and (self.config.risk.rules or context.risk_check)
        if must_decide and not await self.risk.allows(order, owner):
            return  # held or refused before anything was bought
        run = Run(order, owner, product, context.retried_after)
        settled = False
        for attempt in context.attempts:
            if attempt.state not in OPEN_ATTEMPT_STATES:
                continue
            double = _possible_double_claim(attempt, context.claims)
            if double is not None:
                if self._may_move_on(run, attempt, context.attempts):
                    continue
                # Under policy `wait` a possible-double claim nobody retried past is the draft written on the
                # way to review (`_unsettled`, `_draft_claims`): a crash before the order got there must not
                # turn it into a failover. Finish what the crashed run was doing.
                why = double.evidence.get("why")
                reason = (
                    f"ambiguous: attempt {attempt.number} at {attempt.supplier} may have been charged (a "
                    f"possible-double claim names it{f': {why}' if why else ''}); check the supplier's records "
                    "before retrying"
                )
                await self._finish(order, owner, OrderStatus.REVIEW, reason)
                return
            settled = True
            if await self._settle(run, attempt) is Step.DONE:
                return
        while True:
            if settled:  # attempts moved since the context was read (settled, or an offer tried): read again
                context, cooled = await self._contexts.get(order.id)
            spent = _transient_tries(context.attempts, run.retried_after)
            attempts = [a for a in context.attempts if _counts(a, run.retried_after, context.waited_after, spent)]
            offers, skipped = plan_offers(
                product,
                attempts,
                cooldowns=cooled,
                enabled={s.name: s.enabled and s.name in self.suppliers for s in self.config.suppliers},
                health=self.health,
                now=self.clock.now(),
                strategy=self.config.routing.strategy,
            )
            offers = avoid_last(offers, order.avoid_supplier)
            if not offers:
                skipped = [_unless_spent(s, spent) for s in skipped]
                await self._nothing_to_try(run, skipped, context)
                return
            if await self._try_offer(run, offers[0]) is Step.DONE:
                return
            metrics.FAILOVERS.labels(offers[0].supplier).inc()
            settled = True

    async def _nothing_to_try(self, run: Run, skipped: Sequence[Skipped], context: WorkContext) -> None:
        """No offer can be tried now. When the ones left are blocked by a supplier's open breaker (an outage, a
        balance run out) or were tried and failed `transient` (never executed), the order is given back to wait,
        within `routing.blocked_wait` of its intake or a person's retry or release, and tries them again after:
        an outage then delays orders instead of filling review. A half-open breaker lets only its probes
        through, so the waiting orders do not all buy at once when it ends. Review at once when nothing it
        could wait for ends in time, or an attempt of it is still open (set aside under a possible-double
        claim: in review the resolver keeps asking about it)."""
        order, now, attempts = run.order, self.clock.now(), context.attempts
        limit = self.config.routing.blocked_wait
        ends = [s.until for s in skipped if s.until is not None]
        waited = left = 0.0
        if limit and ends and not any(a.state in OPEN_ATTEMPT_STATES for a in attempts):
            restarted = await self.store.last_event_at(order.id, WAIT_RESTARTS)
            since = max(order.created_at, restarted) if restarted is not None else order.created_at
            waited = (now - since).total_seconds()
            left = limit - waited
        if left <= 0 or (min(ends) - now).total_seconds() > left:
            reason = _exhausted_reason(skipped)
            if waited >= 1:
                reason += f" (blocked {_span(waited)} since it came or was retried)"
            await self._finish(order, run.owner, OrderStatus.REVIEW, reason)
            return
        shortest, longest = BLOCKED_RECHECK
        wait = min(max((min(ends) - now).total_seconds(), shortest), longest, left)
        blocked = "; ".join(f"{s.offer.supplier}#{s.offer.index} {s.why}" for s in skipped if s.until is not None)
        first = not (order.reason or "").startswith(WAITING_REASON)
        newest = max((a.id for a in attempts), default=0)
        await failpoints.pause("before_waiting")  # tests: a kill lands while the order is leased, about to wait
        await self.store.park_for(order.id, run.owner, wait, f"{WAITING_REASON}{blocked}"[:1000], now)
        metrics.ORDERS_WAITING.inc()
        extra = {"order": order.ref, "wait": round(wait, 3), "blocked": blocked}
        if first or newest > (context.waited_after or 0):
            # On the timeline when it begins to wait, and after each new attempt: the watermark that lets the
            # next pass try again what failed transient (lost in a crash, the next pass just waits again).
            data = {"blocked": blocked, "wait_limit": limit, "after_attempt": newest}
            await self.store.record_event("order.waiting", now, order_id=order.id, data=data)
            log.info("order.waiting", extra=extra)
        else:
            log.debug("order.waiting", extra=extra)

    def _may_move_on(self, run: Run, attempt: AttemptRecord, attempts: Sequence[AttemptRecord]) -> bool:
        """An open attempt under a possible-double claim no longer holds its order back where moving on while it
        is unresolved was allowed: policy `failover`, an operator's retry that came after it, or a later attempt
        already made (the order moved on under a policy since changed to `wait`; under `wait` the draft written
        on the way to review is always on the newest attempt)."""
        retried_past = run.retried_after is not None and attempt.id <= run.retried_after
        moved_on = any(other.id > attempt.id for other in attempts)
        return self.config.ambiguity.policy == "failover" or retried_past or moved_on

    async def _load_contexts(self, order_ids: Sequence[int]) -> dict[int, tuple[WorkContext, Cooldowns]]:
        contexts, cooled = await self.store.work_contexts(order_ids, self.clock.now(), self.config.risk.credit.start)
        return {order_id: (context, cooled) for order_id, context in contexts.items()}

    async def _try_offer(self, run: Run, offer: Offer) -> Step:
        supplier = self.suppliers[offer.supplier]
        now = self.clock.now()
        checkable = offer.product_id is not None and not supplier.local
        if checkable and not await self.health.in_stock(supplier, offer.product_id or "", run.order.qty, now):
            # Known empty: skip without spending an attempt; the cool-down makes routing pass it by.
            until = now + timedelta(seconds=self.config.cooldown.stock_empty)
            await self.store.set_cooldown(supplier.name, offer.product_id or "", until, "stock check: empty", now)
            return Step.NEXT_OFFER
        opening = self.store.open_attempt(
            run.order.id,
            run.owner,
            offer.supplier,
            offer.index,
            run.order.qty,
            offer.cost,
            self.clock.now(),
            sent=not supplier.local,
        )
        # Cancelled meanwhile, the write may still land (PostgreSQL's one INSERT is the server's to finish; SQLite's
        # group commits it with the others): let it end, and mark what it wrote as never sent, so that no one asks
        # a supplier about a purchase that never left, or claims for it.
        attempt, cancelled = await finished_despite_cancel(opening)
        if cancelled:
            if attempt.state is AttemptState.SENT:
                evidence = {**attempt.evidence, "message": "not sent: the order's work was cancelled first"}
                now = self.clock.now()
                await self.store.mark_attempt(
                    attempt.id, AttemptState.FAILED, now, error_class=ErrorClass.TRANSIENT, evidence=evidence
                )
                log.info("attempt.not_sent", extra=_ctx(run, attempt))
            raise asyncio.CancelledError
        if attempt.state is AttemptState.SENT:
            log.info("attempt.sent", extra=_ctx(run, attempt))
        return await self._drive(run, attempt, supplier, offer)

    def _request(self, run: Run, attempt: AttemptRecord, offer: Offer | None, timeout: float | None) -> PlaceRequest:
        return place_request(run.order, run.product.kind, attempt, offer, owner=run.owner, timeout=timeout)

    def _timeout(self, supplier: Supplier) -> float:
        return _seconds(supplier, "timeout", 10.0)

    # --- placing --------------------------------------------------------------------------------------

    async def _drive(self, run: Run, attempt: AttemptRecord, supplier: Supplier, offer: Offer | None) -> Step:
        if not supplier.local and attempt.state is AttemptState.PLANNED:
            sent = await self.store.mark_sent(attempt.id, run.order.id, run.owner, self.clock.now())
            if sent is None:
                # Someone else moved it past `planned` (a worker whose lease we took over): it may be out there.
                return await self._await_outcome(run, attempt, supplier, offer, ambiguous=True)
            attempt = sent
            log.info("attempt.sent", extra=_ctx(run, attempt))

        async def call(timeout: float) -> Outcome:
            return await self._call(supplier, "place", self._request(run, attempt, offer, timeout))

        def on_retry(outcome: Outcome, wait: float) -> None:
            metrics.RETRIES.labels(supplier.name).inc()
            log.info("attempt.retry", extra={**_ctx(run, attempt), "wait": round(wait, 3), **_code(outcome)})

        outcome = await place_with_budget(
            call,
            retry=self.config.retry,
            try_timeout=self._timeout(supplier),
            clock=self.clock,
            on_retry=on_retry,
        )
        return await self._handle(run, attempt, supplier, offer, outcome)

    async def _call(self, supplier: Supplier, what: str, request: PlaceRequest) -> Outcome:
        start = self.clock.monotonic()
        mark = self.stalls.mark() if self.stalls is not None else 0.0
        fn = supplier.place if what == "place" else supplier.query
        outcome = await fn(request)
        ok = outcome.state is not OrderState.ERROR
        elapsed = self.clock.monotonic() - start
        metrics.supplier_call(supplier.name, ok, elapsed)
        no_reply = not ok and outcome.evidence.http_status is None
        if self.stalls is not None and self.stalls.excuses(supplier.name, mark, failed_without_reply=no_reply):
            # No reply while this process stood still for most of the call (a timeout that fired late, an answer
            # not read in time): not the supplier's doing, so not held against its breaker or score.
            log.info("supplier.call_unjudged", extra={"supplier": supplier.name, "what": what, "s": round(elapsed, 3)})
            return outcome
        self.health.record(supplier.name, ok, elapsed, self.clock.now())
        return outcome

    async def _handle(
        self, run: Run, attempt: AttemptRecord, supplier: Supplier, offer: Offer | None, outcome: Outcome
    ) -> Step:
        if outcome.state is OrderState.SUCCEEDED:
            return await self._succeeded(run, attempt, offer, outcome)
        if outcome.state is OrderState.EXISTS:
            return await self._exists(run, attempt, supplier, offer, outcome)
        if outcome.state in (OrderState.PENDING, OrderState.NOT_FOUND):
            return await self._await_outcome(run, attempt, supplier, offer, ambiguous=False, outcome=outcome)
        if outcome.maybe_charged and supplier.idempotent_place:
            # "Failed" is also what this supplier says after charging: the same number again tells which.
            settled = await self._settle_by_resend(run, attempt, supplier, offer, first=outcome)
            if settled is not None:
                return settled
            attempt = await self._mark(attempt, AttemptState.AMBIGUOUS, outcome)
            return await self._unsettled(run, attempt, supplier)
        if outcome.error is ErrorClass.AMBIGUOUS:
            attempt = await self._mark(attempt, AttemptState.AMBIGUOUS, outcome)
            log.warning("attempt.ambiguous", extra={**_ctx(run, attempt), **_code(outcome)})
            return await self._await_outcome(run, attempt, supplier, offer, ambiguous=True)
        return await self._failed(run, attempt, supplier, offer, outcome)

    async def _failed(
        self, run: Run, attempt: AttemptRecord, supplier: Supplier, offer: Offer | None, outcome: Outcome
    ) -> Step:
        """A final 'not charged' answer, or a transient error that outlived the budget.

        Whatever ends the order is written before the attempt is marked final: a crash in between leaves the
        attempt open, and whoever takes over asks again instead of buying the order elsewhere."""
        error = outcome.error or ErrorClass.PRODUCT_UNAVAILABLE
        now = self.clock.now()
        log.info("attempt.failed", extra={**_ctx(run, attempt), "error_class": error.value, **_code(outcome)})
        step = Step.NEXT_OFFER
        if error is ErrorClass.ORDER_REJECTED:
            await self._finish(run.order, run.owner, OrderStatus.FAILED, f"order_rejected: {_said(outcome)}")
            step = Step.DONE
        elif error is ErrorClass.OUR_BUG:
            await self._alert("supplier.our_bug", supplier.name, run, outcome)
            reason = f"our_bug at {supplier.name}: {_said(outcome)}"
            await self._finish(run.order, run.owner, OrderStatus.REVIEW, reason, known=attempt)
            step = Step.DONE
        elif error is ErrorClass.SUPPLIER_ACCOUNT:
            self.health.trip(supplier.name, _said(outcome), now)
            await self._alert("supplier.account", supplier.name, run, outcome)
        elif error is ErrorClass.PRODUCT_UNAVAILABLE and offer is not None and not supplier.local:
            until = now + timedelta(seconds=self.config.cooldown.product_unavailable)
            await self.store.set_cooldown(supplier.name, offer.product_id or "", until, _said(outcome), now)
        await self._mark(attempt, AttemptState.FAILED, outcome)
        return step

    # --- waiting for an outcome ---------------------------------------------------------------------

    async def _await_outcome(
        self,
        run: Run,
        attempt: AttemptRecord,
        supplier: Supplier,
        offer: Offer | None,
        *,
        ambiguous: bool,
        outcome: Outcome | None = None,
    ) -> Step:
        """Query by our number until the outcome is final, for as long as this worker holds the order."""
        if not supplier.can_query:
            return await self._unqueryable(run, attempt, supplier, offer)
        interval = min(_seconds(supplier, "poll_interval", 1.0), self.config.ambiguity.query_interval)
        hold_until = self.clock.monotonic() + self.config.retry.budget
        if ambiguous and self.config.ambiguity.policy == "failover":
            hold_until = self.clock.monotonic()  # move on at once; the resolver keeps asking about this one
        exists = not ambiguous
        # The supplier has the order. That is written down only if the first query does not settle it: an
        # answer with the goods puts the same facts on the receipt, and a crash before either leaves the
        # attempt `sent`, which recovery asks about before anything else is bought.
        unwritten = exists and not attempt.evidence.get(ACKNOWLEDGED)
        accepted = outcome  # the answer that said so, with the supplier's order id if it gave one
        nap = min(_seconds(supplier, "first_query", 0.0), interval)
        waker = self._wakers.setdefault(attempt.number, asyncio.Event())
        try:
            while self.clock.monotonic() < hold_until:
                if unwritten:
                    await failpoints.pause("accepted_unwritten")  # tests: a kill lands before anything is written
                await self._nap(waker, nap)
                nap = interval
                outcome = await self._call(supplier, "query", self._request(run, attempt, offer, None))
                if outcome.state is OrderState.NOT_FOUND and not exists and self._may_resend(attempt, supplier):
                    # Safe: the supplier refuses a repeated number, so this can never buy twice. A refusal of
                    # the re-send says nothing about the first request, so only acceptance counts.
                    attempt = await self.store.mark_resent(attempt.id, self.clock.now())
                    resent = await self._resend(run, attempt, supplier, offer)
                    if resent.state in (OrderState.SUCCEEDED, OrderState.PENDING):
                        outcome = resent
                if outcome.state is OrderState.SUCCEEDED:
                    return await self._succeeded(run, attempt, offer, outcome)
                if outcome.state is OrderState.FAILED:
                    # The supplier's own record says the order failed: not charged, safe to move on.
                    return await self._failed(run, attempt, supplier, offer, outcome)
                # A query error or "not found" leaves the purchase as unknown as it was: ask again.
                if outcome.state is OrderState.PENDING and not exists:
                    exists = unwritten = True
                    accepted = outcome
                if unwritten:
                    unwritten, attempt = False, await self._acknowledge(attempt, _with_order_id(accepted, outcome))
                interval = min(interval * 1.5, MAX_QUERY_INTERVAL)
        finally:
            self._wakers.pop(attempt.number, None)
        if unwritten:
            attempt = await self._acknowledge(attempt, accepted)
        return await self._still_open(run, attempt, supplier, exists=exists)

    async def _nap(self, waker: asyncio.Event, seconds: float) -> None:
        if waker.is_set():
            waker.clear()
            return
        if seconds <= 0:  # no wait (a supplier asked at once): no task and timer made only to time out
            await asyncio.sleep(0)  # but still a turn for the others, as a loop of zero waits must not hog the loop
            return
        try:
            await asyncio.wait_for(waker.wait(), timeout=seconds)
        except TimeoutError:
            return
        waker.clear()

    async def _acknowledge(self, attempt: AttemptRecord, outcome: Outcome | None) -> AttemptRecord:
        """Remember that the supplier has this order, so a later run keeps waiting on it and never fails over
        (or claims a possible double) for a purchase known to exist; its order id goes on the receipt."""
        if attempt.evidence.get(ACKNOWLEDGED):
            return attempt
        if outcome is not None and outcome.supplier_order_id:
            await self._write_receipt(attempt, ReceiptKind.ACKNOWLEDGED, outcome)
        evidence = {**attempt.evidence, ACKNOWLEDGED: True}  # the order id went onto the attempt with the receipt
        return await self.store.mark_attempt(attempt.id, attempt.state, self.clock.now(), evidence=evidence)

    def _may_resend(self, attempt: AttemptRecord, supplier: Supplier) -> bool:
        # Any time, not only within the retry budget: a crash mid-send must not leave the order waiting hours
        # for a request the supplier never received. The supplier refuses a repeated number, so it is safe.
        return supplier.idempotent_place and attempt.sent_at is not None

    async def _resend(self, run: Run, attempt: AttemptRecord, supplier: Supplier, offer: Offer | None) -> Outcome:
        log.info("attempt.resend", extra=_ctx(run, attempt))
        timeout = min(self._timeout(supplier), self.config.retry.budget)
        return await self._call(supplier, "place", self._request(run, attempt, offer, timeout))

    async def _still_open(self, run: Run, attempt: AttemptRecord, supplier: Supplier, *, exists: bool) -> Step:
        now = self.clock.now()
        # From the first send: re-sends refresh `last_sent_at` (the resolver's "gone"), never this deadline.
        age = (now - (attempt.sent_at or attempt.started_at)).total_seconds()
        if not exists and self.config.ambiguity.policy == "failover":
            await self._possible_double(run, attempt, "failover policy: moved on while the attempt is unresolved")
            return Step.NEXT_OFFER
        if age >= self.config.ambiguity.give_up_after:
            what = "still processing" if exists else "unresolved"
            reason = f"ambiguous_unresolved: attempt {attempt.number} at {supplier.name} {what} after {int(age)}s"
            await self._finish(run.order, run.owner, OrderStatus.REVIEW, reason)
            return Step.DONE
        wait = self.config.ambiguity.query_interval
        reason = f"awaiting {supplier.name}: attempt {attempt.number} {'processing' if exists else 'ambiguous'}"
        await self.store.park_for(run.order.id, run.owner, wait, reason, now)
        log.info("order.parked", extra={**_ctx(run, attempt), "wait": wait})
        return Step.DONE

    async def _unqueryable(self, run: Run, attempt: AttemptRecord, supplier: Supplier, offer: Offer | None) -> Step:
        """A supplier that cannot be asked by our number: an idempotent one is asked by sending the same number
        again (a repeat is refused, never charged twice); only a genuinely unclear answer reaches a person."""
        if supplier.idempotent_place and attempt.sent_at is not None:
            settled = await self._settle_by_resend(run, attempt, supplier, offer)
            if settled is not None:
                return settled
        return await self._unsettled(run, attempt, supplier)

    async def _unsettled(self, run: Run, attempt: AttemptRecord, supplier: Supplier) -> Step:
        """Nothing the supplier said settles the attempt: a claim draft names the number either way."""
        why = f"{supplier.name} cannot be queried by our number {attempt.number}, and sending it again settled nothing"
        await self._possible_double(run, attempt, why)
        if self.config.ambiguity.policy == "failover":
            return Step.NEXT_OFFER
        reason = f"ambiguous: {why}; check the supplier's records (the claim names the number) before retrying"
        await self._finish(run.order, run.owner, OrderStatus.REVIEW, reason)
        return Step.DONE

    async def _settle_by_resend(
        self,
        run: Run,
        attempt: AttemptRecord,
        supplier: Supplier,
        offer: Offer | None,
        *,
        first: Outcome | None = None,
    ) -> Step | None:
        """Send the attempt's own number again to learn what became of it; None when nothing was learned.

        The number is unique at the supplier, so at most one send under it is ever charged: a success means no
        earlier send was recorded (deliver it); "already exists" means one was (charged, answer lost). A failure
        the supplier also gives after charging is asked again; if it stays the same for every probe, the earlier
        sends were refused before being recorded (a recorded one would make the next probe "already exists")."""
        last = first
        for probe in range(RESEND_PROBES - (1 if first is not None else 0)):
            if probe:
                await self.clock.sleep(self.config.retry.initial_backoff * 2**probe)
            attempt = await self.store.mark_resent(attempt.id, self.clock.now())
            outcome = await self._resend(run, attempt, supplier, offer)
            if outcome.state is OrderState.SUCCEEDED:
                return await self._succeeded(run, attempt, offer, outcome)
            if outcome.state is OrderState.EXISTS:
                return await self._exists(run, attempt, supplier, offer, outcome)
            if outcome.state is OrderState.PENDING and supplier.can_query:
                return await self._await_outcome(run, attempt, supplier, offer, ambiguous=False, outcome=outcome)
            # An error (even a lost answer) says nothing yet, and asking again under one number is always safe.
            if not (outcome.maybe_charged or outcome.state is OrderState.ERROR):
                return None  # refused for another reason (checked before the repeat is): nothing learned
            last = outcome
        if last is not None and last.maybe_charged:
            return await self._failed(run, attempt, supplier, offer, last)
        return None

    async def _exists(
        self, run: Run, attempt: AttemptRecord, supplier: Supplier, offer: Offer | None, outcome: Outcome
    ) -> Step:
        """The supplier holds a purchase under this number. Asked about when it can be; otherwise it is a charge
        whose answer is lost: claimed, and the order is bought from the next offer."""
        if supplier.can_query:
            return await self._await_outcome(run, attempt, supplier, offer, ambiguous=False, outcome=outcome)
        receipt = await self._write_receipt(attempt, ReceiptKind.CHARGED_NO_GOODS, outcome, answer=EXISTS_ANSWER)
        return await self._apply(run, attempt, offer, receipt)

    async def _possible_double(self, run: Run, attempt: AttemptRecord, why: str) -> None:
        claim = await self.store.open_claim(
            attempt.id,
            ClaimReason.POSSIBLE_DOUBLE,
            attempt.cost_of(attempt.qty),
            attempt.qty,
            {"why": why, "number": attempt.number, "evidence": attempt.evidence},
            self.clock.now(),
        )
        log.warning("claim.opened", extra={**_ctx(run, attempt), "claim": claim.claim_no, "reason": "possible_double"})

    # --- settling attempts left open ------------------------------------------------------------------

    async def _settle(self, run: Run, attempt: AttemptRecord) -> Step:
        supplier = self.suppliers.get(attempt.supplier)
        if supplier is None:
            reason = (
                f"attempt {attempt.number} at supplier '{attempt.supplier}' is {attempt.state.value} "
                "and that supplier is no longer configured"
            )
            await self._finish(run.order, run.owner, OrderStatus.REVIEW, reason)
            return Step.DONE
        offer = offer_of(run.product, attempt)
        log.info("attempt.settling", extra=_ctx(run, attempt))
        receipt = await self.store.receipt_for(attempt.id)
        if receipt is not None and receipt.settles:
            # The supplier answered and it was written down: finish from that, never ask or buy again.
            log.info("attempt.from_receipt", extra={**_ctx(run, attempt), "kind": receipt.kind.value})
            return await self._apply(run, attempt, offer, receipt)
        if attempt.state is AttemptState.PLANNED:
            # Written but never sent (the state moves to `sent` before any call): safe to drive as is.
            return await self._drive(run, attempt, supplier, offer)
        if run.retried_after is not None and attempt.id <= run.retried_after:
            # An operator asked to go ahead: one last look, then move on with the attempt under a claim.
            outcome = await self._call(supplier, "query", self._request(run, attempt, offer, None))
            if outcome.state is OrderState.SUCCEEDED:
                return await self._succeeded(run, attempt, offer, outcome)
            await self._possible_double(run, attempt, "operator retried the order while the attempt was open")
            return Step.NEXT_OFFER
        # Left `sent` by a crash, or ambiguous: unknown, unless the supplier had already acknowledged it.
        acknowledged = bool(attempt.evidence.get(ACKNOWLEDGED)) or receipt is not None
        return await self._await_outcome(run, attempt, supplier, offer, ambiguous=not acknowledged)

    # --- success: write the answer ahead, then validate, deliver or claim from it --------------------------

    async def _succeeded(self, run: Run, attempt: AttemptRecord, offer: Offer | None, outcome: Outcome) -> Step:
        if outcome.delivered_in_store:  # local stock: the goods moved inside the store's own transaction
            self._delivered(run, attempt, run.order.qty)
            return Step.DONE
        receipt = await self._write_receipt(attempt, receipt_kind(outcome, run.product.kind), outcome)
        await failpoints.pause("after_receipt")
        return await self._apply(run, attempt, offer, receipt)

    async def _write_receipt(
        self, attempt: AttemptRecord, kind: ReceiptKind, outcome: Outcome, *, answer: str | None = None
    ) -> Receipt:
        """Commit the answer before anything is done with it: not fenced by the lease, retried through a busy
        database, and finished even if this order's task is cancelled meanwhile."""

        async def write() -> Receipt:
            for wait in RECEIPT_TRIES:
                await asyncio.sleep(wait)
                try:
                    return await self.store.record_receipt(
                        attempt.id,
                        kind,
                        self.clock.now(),
                        cards=outcome.cards,
                        supplier_order_id=outcome.supplier_order_id,
                        cost=outcome.cost,
                        evidence={**outcome.evidence.as_dict(), **({"answer": answer} if answer else {})},
                        attempt=attempt,
                    )
                except StoreError:
                    if wait == RECEIPT_TRIES[-1]:
                        raise
                    log.warning("receipt.retry", extra={"number": attempt.number}, exc_info=True)
            raise AssertionError("unreachable")  # pragma: no cover

        receipt, cancelled = await finished_despite_cancel(write())  # the answer is money: written down, then stop
        if cancelled:
            raise asyncio.CancelledError
        log.info("receipt.written", extra={"number": attempt.number, "kind": kind.value, "cards": len(receipt.cards)})
        return receipt

    async def _apply(self, run: Run, attempt: AttemptRecord, offer: Offer | None, receipt: Receipt) -> Step:
        """Act on a written answer: deliver, or claim and hold. Safe to run again after a crash at any point."""
        now = self.clock.now()
        if receipt.kind is ReceiptKind.CHARGED_NO_GOODS:
            return await self._charged_no_goods(run, attempt, offer, receipt)
        reissue = run.order.reissue_of is not None  # the store settles a reissue's case with its delivery
        if run.product.kind == "direct":
            await self.store.deliver(run.order.id, run.owner, attempt.id, (), now, reissue=reissue)
            self._delivered(run, attempt, run.order.qty)
            return Step.DONE
        # Judged first without asking the database which keys were delivered before: the delivery's unique
        # fingerprint refuses those (DuplicateCard, judged again below), and a batch failing for another
        # reason is judged again with them, so its claim names every bad key.
        verdict = self._judge(receipt.cards, attempt.qty, run.product, set())
        if not verdict.ok:
            verdict = await self._verdict(receipt.cards, attempt.qty, run.product)
        known: set[str] = set()
        for _ in range(3):  # a key found delivered meanwhile: judge again; surplus keys may still cover the order
            if not verdict.ok:
                break
            extra = (*verdict.surplus, *(card for card, _ in verdict.invalid))
            try:
                # More than ordered is kept for the operator in the same transaction, never dropped.
                await self.store.deliver(
                    run.order.id, run.owner, attempt.id, verdict.valid, now, hold=extra, reissue=reissue
                )
            except DuplicateCard as dup:
                known |= set(dup.fingerprints)
                verdict = await self._verdict(receipt.cards, attempt.qty, run.product, known)
            else:
                self._keys_seen(attempt, offer, valid=True)
                self._delivered(run, attempt, len(verdict.valid))
                return Step.DONE
        return await self._invalid_batch(run, attempt, offer, receipt, verdict)

    async def _charged_no_goods(self, run: Run, attempt: AttemptRecord, offer: Offer | None, receipt: Receipt) -> Step:
        """Charged, and nothing to deliver (a shop's delivery text, "someone took it first", an answer lost
        under a number the supplier already holds): claimed, and the order is bought from the next offer."""
        now = self.clock.now()
        evidence = {
            "number": attempt.number,
            "supplier_order_id": receipt.supplier_order_id,
            "supplier_said": receipt.evidence,
            "checked_at": now.isoformat(),
        }
        claim = await self.store.open_claim(
            attempt.id, ClaimReason.CHARGED_NOT_DELIVERED, attempt.cost_of(attempt.qty), attempt.qty, evidence, now
        )
        log.warning("claim.opened", extra={**_ctx(run, attempt), "claim": claim.claim_no, "reason": claim.reason})
        if receipt.evidence.get("answer") != EXISTS_ANSWER:  # a lost answer says nothing about what is sold
            await self._keys_seen_or_cool(run, attempt, offer, valid=False)
        reason = ClaimReason.CHARGED_NOT_DELIVERED.value
        await self._mark(attempt, AttemptState.SUCCEEDED, receipt=receipt, error_class=reason)
        return Step.NEXT_OFFER

    def _keys_seen(self, attempt: AttemptRecord, offer: Offer | None, *, valid: bool) -> int:
        """Count answers in a row that were not keys, per offer; returns the streak."""
        if offer is None or offer.product_id is None:
            return 0
        key = (attempt.supplier, offer.product_id)
        streak = 0 if valid else self._non_keys.get(key, 0) + 1
        self._non_keys[key] = streak
        return streak

    async def _keys_seen_or_cool(self, run: Run, attempt: AttemptRecord, offer: Offer | None, *, valid: bool) -> None:
        """An offer that sells something other than keys (a manual-delivery item, text, the wrong pattern) is
        cooled down for this product after a short streak, with an alert, before a burst is bought from it."""
        streak = self._keys_seen(attempt, offer, valid=valid)
        if streak < self.config.cooldown.non_keys_streak or offer is None or offer.product_id is None:
            return
        now = self.clock.now()
        until = now + timedelta(seconds=self.config.cooldown.non_keys)
        why = f"{streak} answers in a row were not valid keys"
        await self.store.set_cooldown(attempt.supplier, offer.product_id, until, why, now)
        data = {"order": run.order.ref, "product_id": offer.product_id, "streak": streak}
        await self.store.record_event(
            "supplier.non_keys", now, order_id=run.order.id, supplier=attempt.supplier, data=data
        )
        log.error("supplier.non_keys", extra={"supplier": attempt.supplier, **data})

    async def _verdict(
        self, cards: Sequence[Card], qty: int, product: ProductConfig, known: set[str] | None = None
    ) -> CardVerdict:
        fingerprints = {self.fingerprint(card) for card in cards}
        before = await self.store.delivered_fingerprints(fingerprints) | (known or set())
        return self._judge(cards, qty, product, before)

    def _judge(self, cards: Sequence[Card], qty: int, product: ProductConfig, before: set[str]) -> CardVerdict:
        return check_cards(
            cards,
            qty=qty,
            pattern=product.card_pattern,
            number_pattern=product.number_pattern,
            delivered_before=before,
            fingerprint=self.fingerprint,
        )

    async def _invalid_batch(
        self, run: Run, attempt: AttemptRecord, offer: Offer | None, receipt: Receipt, verdict: CardVerdict
    ) -> Step:
        """Claim, keep every key, then mark the attempt final. The claim and the held keys are idempotent and
        come first: a crash before the final mark leaves the attempt open, and recovery redoes them."""
        now = self.clock.now()
        evidence: dict[str, Any] = {
            "number": attempt.number,
            "supplier_order_id": receipt.supplier_order_id,
            "ordered": attempt.qty,
            "received": len(receipt.cards),
            "reasons": verdict.reasons(),
            "supplier_said": receipt.evidence,
            "checked_at": now.isoformat(),
        }
        claim = await self.store.open_claim(
            attempt.id, ClaimReason.INVALID_KEY, attempt.cost_of(verdict.bad_units), verdict.bad_units, evidence, now
        )
        await self.store.hold_cards(attempt.id, [card for card, _ in verdict.invalid], "invalid_key", now)
        log.warning(
            "claim.opened",
            extra={**_ctx(run, attempt), "claim": claim.claim_no, "reason": "invalid_key", "units": verdict.bad_units},
        )
        step = Step.NEXT_OFFER
        if verdict.valid or verdict.surplus:
            # Never silently drop good keys: hold the batch with the claim for a person to decide.
            await self.store.hold_cards(attempt.id, (*verdict.valid, *verdict.surplus), "partial_invalid_batch", now)
            reason = (
                f"invalid_keys: {verdict.bad_units} of {attempt.qty} failed validation ({_reasons(verdict)}); "
                f"{len(verdict.valid)} valid keys held with claim {claim.claim_no}"
            )
            await self._finish(run.order, run.owner, OrderStatus.REVIEW, reason, known=attempt)
            step = Step.DONE
        # Keys sold before are bad keys, but keys: only text, empty answers or the wrong pattern trip the wire.
        not_keys = set(verdict.reasons()) & NOT_KEYS
        await self._keys_seen_or_cool(run, attempt, offer, valid=not not_keys)
        await self._mark(attempt, AttemptState.SUCCEEDED, receipt=receipt, error_class=ErrorClass.INVALID_KEY.value)
        return step

    # --- small helpers ------------------------------------------------------------------------------------

    async def _mark(
        self,
        attempt: AttemptRecord,
        state: AttemptState,
        outcome: Outcome | None = None,
        *,
        error_class: str | None = None,
        receipt: Receipt | None = None,
    ) -> AttemptRecord:
        error = error_class or (outcome.error.value if outcome and outcome.error else None)
        if receipt is not None:  # the facts were written with the receipt; the evidence keeps the answer
            marked = await self.store.mark_attempt(attempt.id, state, self.clock.now(), error_class=error)
            metrics.attempt_final(attempt.supplier, state.value, error)
            return marked
        marked = await self.store.mark_attempt(
            attempt.id,
            state,
            self.clock.now(),
            error_class=error,
            supplier_order_id=outcome.supplier_order_id if outcome else None,
            evidence={**attempt.evidence, **outcome.evidence.as_dict()} if outcome else None,
        )
        metrics.attempt_final(attempt.supplier, state.value, error)
        return marked

    def _delivered(self, run: Run, attempt: AttemptRecord, qty: int) -> None:
        metrics.order_finished("delivered", run.order.sku, (self.clock.now() - run.order.created_at).total_seconds())
        log.info("order.delivered", extra={**_ctx(run, attempt), "qty": qty})

    async def _finish(
        self, order: Order, owner: str, status: OrderStatus, reason: str, *, known: AttemptRecord | None = None
    ) -> None:
        """End the order (or hand it to a person). `known`: an attempt whose outcome is known and about to be
        marked final after this (it stays open until then, for a crash): no possible-double draft for it."""
        now = self.clock.now()
        if status is OrderStatus.REVIEW:
            await self._draft_claims(order, known.id if known is not None else None)
        await self.store.finish_order(order.id, owner, status, reason, now)
        await self.store.record_event(f"order.{status.value}", now, order_id=order.id, data={"reason": reason})
        metrics.order_finished(status.value, order.sku, None)
        level = logging.WARNING if status is OrderStatus.REVIEW else logging.INFO
        log.log(level, f"order.{status.value}", extra={"order": order.ref, "reason": reason})

    async def _draft_claims(self, order: Order, known: int | None) -> None:
        """An attempt still open at a supplier that cannot be asked by our number is settled by nobody once its
        order is with a person: a claim draft names the number, so the possible charge is on record. Not for the
        attempt `known` (its answer is in hand: refused, or keys claimed as invalid), which would overstate it."""
        for attempt in await self.store.attempts_for_order(order.id):
            if attempt.id == known:
                continue
            supplier = self.suppliers.get(attempt.supplier)
            askable = supplier is not None and supplier.can_query
            if attempt.state in (AttemptState.SENT, AttemptState.AMBIGUOUS) and not askable:
                why = f"open at {attempt.supplier}, which cannot be asked by our number, when the order went to review"
                evidence = {"why": why, "number": attempt.number, "evidence": attempt.evidence}
                await self.store.open_claim(
                    attempt.id,
                    ClaimReason.POSSIBLE_DOUBLE,
                    attempt.cost_of(attempt.qty),
                    attempt.qty,
                    evidence,
                    self.clock.now(),
                )

    async def _alert(self, name: str, supplier: str, run: Run, outcome: Outcome) -> None:
        data = {"order": run.order.ref, **outcome.evidence.as_dict()}
        await self.store.record_event(name, self.clock.now(), order_id=run.order.id, supplier=supplier, data=data)
        log.error(name, extra={"supplier": supplier, "order": run.order.ref, **_code(outcome)})


def place_request(
    order: Order,
    kind: str,
    attempt: AttemptRecord,
    offer: Offer | None,
    *,
    owner: str | None = None,
    timeout: float | None = None,
) -> PlaceRequest:
    """What an adapter is asked to place, or to query, for one attempt of one order."""
    return PlaceRequest(
        number=attempt.number,
        sku=order.sku,
        product_id=offer.product_id if offer else None,
        qty=attempt.qty,
        kind=kind,
        account=order.account,
        price=offer.cost if offer else None,
        order_id=order.id,
        attempt_id=attempt.id,
        owner=owner,
        timeout=timeout,
        supplier_order_id=attempt.supplier_order_id,
    )


def receipt_kind(success: Outcome, product_kind: str | None) -> ReceiptKind:
    """What a success delivers: keys, or a direct top-up done; a card success without keys is a charge only."""
    goods = bool(success.cards) or product_kind == "direct"
    return ReceiptKind.GOODS if goods else ReceiptKind.CHARGED_NO_GOODS


def _possible_double_claim(attempt: AttemptRecord, claims: Sequence[ClaimRecord]) -> ClaimRecord | None:
    """The possible-double claim that sets an open attempt aside (the resolver owns it), if any."""
    return next((c for c in claims if c.attempt_id == attempt.id and c.reason is ClaimReason.POSSIBLE_DOUBLE), None)


def _seconds(supplier: Supplier, name: str, default: float) -> float:
    """A duration from the supplier's settings (the config parsed it to seconds); `default` if absent."""
    value = supplier.settings.get(name, default)
    return float(value) if isinstance(value, int | float) else default


def _with_order_id(*outcomes: Outcome | None) -> Outcome | None:
    """The first answer that carries the supplier's order id (else the first one at all)."""
    return next((o for o in outcomes if o is not None and o.supplier_order_id), outcomes[0])


def _ctx(run: Run, attempt: AttemptRecord) -> dict[str, Any]:
    return {"order": run.order.ref, "supplier": attempt.supplier, "number": attempt.number}


def _code(outcome: Outcome) -> dict[str, Any]:
    return {"code": outcome.evidence.code, "supplier_said": outcome.evidence.message}


def _said(outcome: Outcome) -> str:
    ev = outcome.evidence
    text = " ".join(str(part) for part in (ev.code, ev.message) if part)
    return text or (outcome.error.value if outcome.error else outcome.state.value)


def _reasons(verdict: CardVerdict) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(verdict.reasons().items()))


def _span(seconds: float) -> str:
    """A wait as a person reads it: 45s, 10m02s, 1h05m."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _transient(attempt: AttemptRecord) -> bool:
    return attempt.state is AttemptState.FAILED and attempt.error_class == ErrorClass.TRANSIENT.value


def _transient_tries(attempts: Sequence[AttemptRecord], retried_after: int | None) -> Counter[tuple[str, int]]:
    """Per offer, the attempts since a person's last retry that failed transient."""
    since_retry = (a for a in attempts if retried_after is None or a.id > retried_after)
    return Counter((a.supplier, a.offer_index) for a in since_retry if _transient(a))


def _unless_spent(skipped: Skipped, spent: Counter[tuple[str, int]]) -> Skipped:
    """An offer tried transient MAX_TRANSIENT_TRIES times is not waited for any more."""
    if spent[(skipped.offer.supplier, skipped.offer.index)] < MAX_TRANSIENT_TRIES:
        return skipped
    return replace(skipped, until=None)


def _counts(
    attempt: AttemptRecord, retried_after: int | None, waited_after: int | None, spent: Counter[tuple[str, int]]
) -> bool:
    """Whether an attempt uses up its offer on this pass: not if it came before a person's `review retry`, nor
    if it failed `transient` (never executed) before the order last began to wait, unless its offer has had
    MAX_TRANSIENT_TRIES of those already."""
    if retried_after is not None and attempt.id <= retried_after:
        return False
    return not (
        waited_after is not None
        and attempt.id <= waited_after
        and _transient(attempt)
        and spent[(attempt.supplier, attempt.offer_index)] < MAX_TRANSIENT_TRIES
    )


def _exhausted_reason(skipped: Sequence[Skipped]) -> str:
    if skipped and all(s.why == "tried: product_unavailable" for s in skipped):
        return "out_of_stock"
    detail = "; ".join(f"{s.offer.supplier}#{s.offer.index} {s.why}" for s in skipped)
    return f"exhausted: {detail}" if detail else "exhausted: the product has no offers"
