"""Taking a shop's paid orders and writing the result back, exactly once across two databases.

One loop per configured source, as a side task of the worker: every `poll_interval` (or at once when the shop
pushes, or when asked) it (1) writes back what fulfil finished, (2) repairs hand-overs a crash left half-done,
(3) takes new paid orders, and wakes the worker when it took some.

**Exactly once across fulfil's database and the shop's.** There is no transaction spanning both, so every step
is either idempotent or decided by a conditional write, and fulfil's own record always comes first:

1. *Record* (fulfil, one transaction): a `taking` row per shop order, unique on (source, order number). A second
   poll, a second daemon or a restart finds it and never takes the order again.
2. *Mark* (shop, one transaction): `status 2|6 -> 3 WHERE status = <seen>`, `updated_at` set to fulfil's mark.
   One row changed = ours; none = someone else moved it first.
3. *Order* (fulfil, one transaction): `taking -> taken` and the pending fulfil order, together.

A crash between 1 and 3 leaves a `taking` row, looked at again (at start, and `recheck` seconds after it was
written): the shop row still as seen => mark it now (2, 3); holding fulfil's mark (status 3 and its `updated_at`)
=> ours, do 3; anything else (a person completed, failed, deleted or saved it) => not ours: the record goes, an
event `source.dropped` says why, nothing was bought. A shop with no "taken" state (acg-faka) does 1 and 3 in one
transaction: fulfil's record *is* the mark.

**Write-back.** A taken order whose fulfil order ended (delivered or failed) and is not yet `written` is due:
found by a query (no statement is added to the engine's transactions), claimed for a while on the database's clock
so that two daemons do not write one row at once. The shop write is conditional on the row being exactly as fulfil
left it (dujiaoka: `status = 3 AND updated_at = <mark>`, locked `FOR UPDATE`; acg-faka: `delivery_status = 0`).
Then fulfil records `written`. A crash between the shop's commit and fulfil's finds the row holding exactly these
keys next time (`ALREADY`): done, no second write. A row that is neither as fulfil left it nor holding its keys
(a person changed it) is never touched: the record goes to the person's queue (`review`), the keys safe in
fulfil. A shop database that is down is retried with backoff; after `give_up_after` the record goes to review.
The keys are decrypted only to be written, and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fulfil import failpoints
from fulfil.clock import Clock, SystemClock
from fulfil.config import Config, SourceConfig
from fulfil.domain import NewOrder, OrderStatus
from fulfil.intake import validate_order
from fulfil.risk.identity import ip_error
from fulfil.sources import text
from fulfil.sources.base import RowState, ShopOrder, ShopRefused, Source, SourceError, Taken, WriteOutcome, Written
from fulfil.storage import SourceDraft, SourceRecord, SourceState, Store, StoreError
from suppliers.taxonomy import Card

log = logging.getLogger("fulfil.sources")

UNMAPPED_EVERY = 300.0  # seconds between looks at the shop's waiting orders of goods fulfil does not take
POLL_RECORD_EVERY = 5.0  # seconds between writes of "last poll" (sooner when the shop's reachability changes)
REPEAT_WARNING_EVERY = 60.0  # a shop that stays down is said again this often, not on every poll
MAX_LOGGED_REFS = 20
WRITE_CONCURRENCY = 4  # shop write-backs at once per source (its connection pool: 2, and 2 more on demand)


@dataclass
class TickReport:
    """What one round of one source did (for tests and logs)."""

    written: int = 0
    review: int = 0
    retried: int = 0
    taken: int = 0
    refused: int = 0
    dropped: int = 0
    error: str | None = None


def judge(order: ShopOrder, source: SourceConfig, config: Config) -> tuple[SourceDraft, list[str]]:
    """A shop order as the fulfil order it would be, and every reason it cannot be taken as it is (pure)."""
    sku = source.goods.get(order.goods_id, "")
    draft = SourceDraft(
        source=source.name,
        ref=order.ref,
        shop_id=order.row_id,
        goods_id=order.goods_id,
        kind=order.kind,
        seen_status=order.status,
        sku=sku,
        qty=order.qty,
        account=order.account,
        amount=order.amount,
        contact=_clean(order.contact, 256),
        ip=order.ip.strip() if order.ip and not ip_error(order.ip) else None,  # garbage is no address to match
    )
    if not sku:
        return draft, [f"goods {order.goods_id} is not in the goods map"]
    reasons = [order.problem] if order.problem else []
    new = NewOrder(
        ref=order.ref,
        sku=sku,
        qty=order.qty,
        account=order.account,
        amount=order.amount,
        contact=draft.contact,
        ip=draft.ip,
    )
    for reason in validate_order(new, config):
        if reason.startswith("account is required") and source.account_field:
            where = "info line" if source.type == "dujiaoka" else "widget input"
            reason += f" (no {where} '{source.account_field}' in the shop's order)"
        reasons.append(reason)
    return draft, reasons


def _clean(value: str | None, longest: int) -> str | None:
    """A buyer field from the shop as fulfil keeps it; one it could not store is dropped, not a reason to leave
    a paid order behind."""
    text = (value or "").strip()
    return text if text and len(text) <= longest and text.isprintable() else None


def backoff(tries: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try of a write-back: exponential, capped, with jitter (at least half of it)."""
    ceiling = min(cap, first * 2 ** min(tries, 30))
    draw = rng.random() if rng is not None else random.random()
    return float(ceiling * (0.5 + 0.5 * draw))


def _taken(record: SourceRecord) -> Taken:
    return Taken(record.ref, record.shop_id, record.seen_status, record.kind, record.mark)


def _shop_order(record: SourceRecord) -> ShopOrder:
    return ShopOrder(record.ref, record.shop_id, record.goods_id, record.qty, record.seen_status, record.kind)


def _refs(records: Sequence[Any]) -> list[str]:
    return [r.ref for r in records][:MAX_LOGGED_REFS]


class SourceRunner:
    """The worker's companion for shop sources (a `Service`): `serve()` runs one loop per source until stopped.

    `wake(name)` makes a source poll now (the shop's push); `on_taken` is called when new orders came in (the
    worker's own wake-up, so they are claimed at once)."""

    name = "sources"

    def __init__(
        self,
        store: Store,
        sources: Mapping[str, Source],
        config: Callable[[], Config],
        *,
        on_taken: Callable[[], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.sources = dict(sources)
        self.config = config
        self.on_taken = on_taken or (lambda: None)
        self.clock = clock or SystemClock()
        self._wakers = {name: asyncio.Event() for name in self.sources}
        self._polled: dict[str, tuple[float, str | None]] = {}
        self._unmapped_at: dict[str, float] = {}
        self._unmapped_seen: dict[str, set[str]] = {}
        self._down: dict[str, tuple[str, float]] = {}  # source -> (error, when last said)

    # --- lifecycle ------------------------------------------------------------------------------------

    def wake(self, name: str) -> bool:
        """Poll source `name` now; False if no such source runs here."""
        waker = self._wakers.get(name)
        if waker is None:
            return False
        waker.set()
        return True

    async def serve(self, stopping: asyncio.Event) -> None:
        """One loop per source until `stopping` is set. A shop that is down never ends this (it is retried); an
        unexpected error does, loudly (the worker then stops, and systemd restarts the daemon)."""
        if not self.sources:
            return

        async def stop_all() -> None:
            await stopping.wait()
            for waker in self._wakers.values():
                waker.set()

        log.info("sources.started", extra={"sources": sorted(self.sources)})
        async with asyncio.TaskGroup() as group:
            group.create_task(stop_all(), name="sources-stop")
            for name in self.sources:
                group.create_task(self._loop(name, stopping), name=f"source-{name}")
        log.info("sources.stopped", extra={"sources": sorted(self.sources)})

    async def _loop(self, name: str, stopping: asyncio.Event) -> None:
        waker = self._wakers[name]
        everything = True  # at start, and after a round the shop cut short: nothing waits out a claim or a backoff
        while not stopping.is_set():
            waker.clear()
            try:
                report = await self.tick(name, recheck_all=everything)
                everything = report.error is not None
            except StoreError:
                # fulfil's own database: the worker's poll loop decides when that is fatal; here, try again.
                log.error("source.store_failed", extra={"source": name}, exc_info=True)
            if stopping.is_set():
                break
            interval = max(self.sources[name].config.poll_interval, 0.01)
            try:
                async with asyncio.timeout(interval):
                    await waker.wait()
            except TimeoutError:
                pass

    async def aclose(self) -> None:
        for source in self.sources.values():
            await source.aclose()

    # --- one round ------------------------------------------------------------------------------------

    async def tick(self, name: str, *, recheck_all: bool = False) -> TickReport:
        """Write back, repair half-done hand-overs, take new orders. A shop that is down ends the round early
        (nothing is lost: each step is picked up again next round). `recheck_all` (a daemon's first round, and the
        one after the shop came back): what was left claimed or half-done is looked at now, not when its claim or
        backoff runs out."""
        source = self.sources[name]
        report = TickReport()
        try:
            await self._write_backs(source, report, everything=recheck_all)
            await self._recheck(source, report, everything=recheck_all)
            await self._take_new(source, report)
            await self._look_at_unmapped(source)
        except SourceError as exc:
            report.error = str(exc)
        self._say_reachability(name, report.error)
        await self._record_poll(name, report.error)
        if report.taken:
            self.on_taken()
        return report

    def _say_reachability(self, name: str, error: str | None) -> None:
        down = self._down.get(name)
        now = time.monotonic()
        if error is None:
            if down is not None:
                del self._down[name]
                log.info("source.available", extra={"source": name})
            return
        if down is None or down[0] != error or now - down[1] >= REPEAT_WARNING_EVERY:
            self._down[name] = (error, now)
            log.warning("source.unavailable", extra={"source": name, "error": error})

    async def _record_poll(self, name: str, error: str | None) -> None:
        last = self._polled.get(name)
        now = time.monotonic()
        if last is not None and last[1] == error and now - last[0] < POLL_RECORD_EVERY:
            return
        await self.store.record_source_poll(name, error, self.clock.now())
        self._polled[name] = (now, error)

    # --- taking ---------------------------------------------------------------------------------------

    async def _take_new(self, source: Source, report: TickReport) -> None:
        cfg = source.config
        after = 0
        while report.taken < cfg.batch_size:
            page = await source.poll(after, cfg.batch_size)
            if not page:
                return
            after = page[-1].row_id
            known = await self.store.source_records(source.name, [o.ref for o in page])
            fresh = [o for o in page if o.ref not in known or known[o.ref].state is SourceState.REFUSED]
            if fresh:
                await self._take(source, fresh, report)
            if len(page) < cfg.batch_size:
                return

    async def _take(self, source: Source, orders: Sequence[ShopOrder], report: TickReport) -> None:
        config = self.config()
        drafts: list[SourceDraft] = []
        refused: list[tuple[SourceDraft, str]] = []
        by_ref: dict[str, ShopOrder] = {}
        for order in orders:
            draft, reasons = judge(order, source.config, config)
            if reasons:
                refused.append((draft, "; ".join(reasons)))
            else:
                drafts.append(draft)
                by_ref[order.ref] = order
        now = self.clock.now()
        if refused:
            said = set(await self.store.refuse_source_orders(refused, now))
            for draft, reason in refused:
                if draft.ref in said:
                    report.refused += 1
                    extra = {"source": source.name, "ref": draft.ref, "goods": draft.goods_id, "reason": reason}
                    log.warning("source.refused", extra=extra)
        if not drafts:
            return
        if not source.marks_taken:
            records, _ = await self.store.take_unmarked(drafts, now)
            self._taken(source, records, report)
            return
        mark = source.new_mark(now)
        owned, _ = await self.store.start_taking(drafts, mark, self._recheck_after(source), now)
        if not owned:
            return
        log.info("source.taking", extra={"source": source.name, "count": len(owned), "refs": _refs(owned)})
        await failpoints.pause("source_after_taking")
        ours = await source.take([by_ref[r.ref] for r in owned], mark)
        log.info("source.marked", extra={"source": source.name, "count": len(ours)})
        await failpoints.pause("source_after_mark")
        done = await self.store.complete_taking([r.id for r in owned if r.ref in ours], self.clock.now())
        self._taken(source, done, report)
        for record in owned:
            if record.ref not in ours:
                await self._settle_taking(source, record, report)

    def _taken(self, source: Source, records: Sequence[SourceRecord], report: TickReport) -> None:
        ok = [r for r in records if r.order_id is not None]
        report.taken += len(ok)
        if ok:
            log.info("source.taken", extra={"source": source.name, "count": len(ok), "refs": _refs(ok)})
        for record in records:
            if record.order_id is None:
                report.review += 1
                log.error("source.review", extra={"source": source.name, "ref": record.ref, "reason": record.reason})

    def _recheck_after(self, source: Source) -> float:
        """How long a `taking` record is left to its own hand-over before anyone else looks at the shop row."""
        return max(5.0, 3 * source.config.timeout)

    async def _recheck(self, source: Source, report: TickReport, *, everything: bool) -> None:
        """`taking` records a crash (or a shop that went away mid-take) left: the shop row decides."""
        if not source.marks_taken:
            return
        hold = self._recheck_after(source)
        records = await self.store.claim_stale_taking(
            source.name, source.config.batch_size, hold, self.clock.now(), overdue_only=not everything
        )
        for record in records:
            await self._settle_taking(source, record, report)

    async def _settle_taking(self, source: Source, record: SourceRecord, report: TickReport) -> None:
        examined = await source.examine(_taken(record))
        if examined.state is RowState.AS_SEEN:  # fulfil's mark never landed: take it now, then look again
            await source.take([_shop_order(record)], record.mark)
            examined = await source.examine(_taken(record))
        if examined.state is RowState.OURS:
            done = await self.store.complete_taking([record.id], self.clock.now())
            self._taken(source, done, report)
            return
        if examined.state is RowState.AS_SEEN:
            return  # the row moved and came back meanwhile: look again next time
        if await self.store.drop_taking(record.id, examined.detail or examined.state.value, self.clock.now()):
            report.dropped += 1
            extra = {"source": source.name, "ref": record.ref, "why": examined.detail or examined.state.value}
            log.warning("source.dropped", extra=extra)

    # --- writing back ---------------------------------------------------------------------------------

    async def _write_backs(self, source: Source, report: TickReport, *, everything: bool = False) -> None:
        """Write back a batch of finished orders, a few shop transactions at a time; fulfil records the ones done
        in one transaction after (a crash before it finds them ALREADY written next time). A shop that is down
        makes every record of the batch wait its backoff, and ends the round."""
        cfg = source.config
        hold = max(30.0, 3 * cfg.timeout)
        records = await self.store.claim_write_backs(
            source.name, cfg.batch_size, hold, self.clock.now(), overdue_only=not everything
        )
        if not records:
            return
        delivered = [r.order_id for r in records if r.order_status == OrderStatus.DELIVERED.value and r.order_id]
        cards = await self.store.source_orders_cards(delivered) if delivered else {}
        gate = asyncio.Semaphore(WRITE_CONCURRENCY)
        results: dict[int, WriteOutcome | SourceError | ValueError] = {}

        async def one(record: SourceRecord) -> None:
            async with gate:
                try:
                    results[record.id] = await self._write_one(source, record, cards.get(record.order_id or 0, ()))
                except (SourceError, ValueError) as exc:
                    results[record.id] = exc

        async with asyncio.TaskGroup() as group:
            for record in records:
                group.create_task(one(record))
        await self._after_writes(source, records, results, report)

    async def _write_one(self, source: Source, record: SourceRecord, cards: Sequence[Card]) -> WriteOutcome:
        log.debug("source.writing", extra={"source": source.name, "ref": record.ref, "status": record.order_status})
        if record.order_status == OrderStatus.DELIVERED.value:
            lines = text.key_lines(cards) if cards else [source.config.topup_text]  # ValueError: a person's turn
            await failpoints.pause("source_before_write")
            outcome = await source.write_delivered(_taken(record), lines)
        else:
            await failpoints.pause("source_before_write")
            outcome = await source.write_failed(_taken(record), record.order_reason or "failed")
        log.info(
            "source.shop_written", extra={"source": source.name, "ref": record.ref, "result": outcome.result.value}
        )
        await failpoints.pause("source_after_write")
        return outcome

    async def _after_writes(
        self,
        source: Source,
        records: Sequence[SourceRecord],
        results: Mapping[int, WriteOutcome | SourceError | ValueError],
        report: TickReport,
    ) -> None:
        done: list[tuple[SourceRecord, str, bool]] = []
        waiting: list[SourceRecord] = []
        error: SourceError | None = None
        for record in records:
            result = results[record.id]
            delivered = record.order_status == OrderStatus.DELIVERED.value
            if isinstance(result, WriteOutcome) and result.result is not Written.CHANGED:
                done.append((record, "delivered" if delivered else "failed", result.result is Written.ALREADY))
            elif isinstance(result, WriteOutcome):
                keys = "; the keys are safe in fulfil (fulfil orders show REF --reveal)" if delivered else ""
                why = f"write-back not done: the shop's row is not as fulfil left it ({result.detail}){keys}"
                await self._review(source, record, why, report)
            elif isinstance(result, ValueError):
                await self._review(source, record, str(result), report)
            elif isinstance(result, ShopRefused) and result.lasting:
                await self._review(source, record, f"the shop refused the write-back: {result}", report)
            else:  # the shop is down, or refuses what a grant would allow: wait and try again
                waiting.append(record)
                error = error or result
        now = self.clock.now()
        report.written += await self.store.mark_written_many([(r.id, kind, already) for r, kind, already in done], now)
        for record, kind, already in done:
            extra = {"source": source.name, "ref": record.ref, "outcome": kind, "already": already}
            log.info("source.written", extra=extra)
        if error is not None:
            await self._retry_later(source, waiting, str(error), report)
            raise error

    async def _retry_later(
        self, source: Source, records: Sequence[SourceRecord], error: str, report: TickReport
    ) -> None:
        cfg = source.config
        now = self.clock.now()
        for record in records:
            wait = backoff(record.tries, cfg.retry_backoff, cfg.max_backoff)
            state = await self.store.write_back_failed(record.id, error, wait, cfg.give_up_after, now)
            if state is SourceState.REVIEW:
                report.review += 1
                extra = {"source": source.name, "ref": record.ref, "error": error}
                log.error("source.write_back_gave_up", extra=extra)
            else:
                report.retried += 1

    async def _review(self, source: Source, record: SourceRecord, reason: str, report: TickReport) -> None:
        if await self.store.source_to_review(record.id, reason, self.clock.now()):
            report.review += 1
            log.error("source.review", extra={"source": source.name, "ref": record.ref, "reason": reason})

    # --- what is left alone ---------------------------------------------------------------------------

    async def _look_at_unmapped(self, source: Source) -> None:
        """Say (once per goods id per run, then every so often) that paid orders wait for goods not mapped."""
        now = time.monotonic()
        if now - self._unmapped_at.get(source.name, -UNMAPPED_EVERY) < UNMAPPED_EVERY:
            return
        self._unmapped_at[source.name] = now
        counts = await source.unmapped()
        seen = self._unmapped_seen.setdefault(source.name, set())
        if counts and (set(counts) - seen or not seen):
            log.warning("source.unmapped", extra={"source": source.name, "waiting": counts})
        seen.update(counts)
