"""The after-sales desk: takes a buyer's report or an operator's action through storage, asks a supplier about a
top-up when L1 needs it, and runs the periodic pass (time limits, hotspots). No SQL here, no decisions either:
the rules are `l1` and `hotspots`, the writes are the store's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from fulfil import failpoints
from fulfil.aftersales.credit import CreditBook
from fulfil.aftersales.hotspots import Hotspot, find_hotspots
from fulfil.aftersales.l1 import decide, topup_verdict
from fulfil.aftersales.model import Action, Case, Opened, Report, Step
from fulfil.config import Config
from fulfil.engine import place_request
from fulfil.storage import Store
from suppliers.base import Supplier
from suppliers.taxonomy import OrderState

log = logging.getLogger("fulfil.aftersales")


class Clock(Protocol):
    def now(self) -> datetime: ...


class Desk:
    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        credit: CreditBook,
        *,
        suppliers: Mapping[str, Supplier] | None = None,
        clock: Clock,
        on_reissue: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.credit = credit
        self.suppliers = dict(suppliers or {})
        self.clock = clock
        # A reissue order was written: the worker claims it now rather than at its next poll.
        self.on_reissue = on_reissue
        self._hotspots_at: datetime | None = None  # the last hotspot pass (every hotspots.interval)

    async def report(self, order_id: int, sku: str, report: Report, *, reporter: str) -> Opened:
        """A report (from the buyer over HTTP, or an operator on their behalf): L1 decides, storage writes."""
        config = self.config()
        now = self.clock.now()
        credit = await self.credit.order_credit(order_id)
        product = config.products.get(sku)
        opened = await self.store.open_case(
            order_id,
            report,
            credit=credit,
            product_kind=product.kind if product else None,
            decide=lambda facts: decide(facts, config.aftersales, now),
            config=config.aftersales,
            reporter=reporter,
            now=now,
        )
        await failpoints.pause("aftersales_decided")  # tests: a kill lands after the decision, before the answer
        case = opened.case
        if opened.step is Step.QUERY_TOPUP:
            case = await self._query_topup(case)
        if case.reissue_refs and self.on_reissue is not None:
            self.on_reissue()
        log.info(
            "aftersales.reported",
            extra={"case": case.case_no, "problem": str(case.problem), "level": str(case.level), "new": opened.created},
        )
        return Opened(case, opened.created)

    async def _query_topup(self, case: Case) -> Case:
        """Ask the supplier that did the top-up what became of it; its answer decides (`l1.topup_verdict`)."""
        config = self.config()
        supplier = self.suppliers.get(case.supplier or "")
        state, evidence = "unknown", {}
        view = await self.store.get_order(case.order_ref)
        attempt = next((a for a in view.attempts if a.id == case.attempt_id), None) if view else None
        if supplier is not None and supplier.can_query and view is not None and attempt is not None:
            try:
                outcome = await supplier.query(place_request(view.order, "direct", attempt, None))
            except Exception:  # an adapter that raised: a person looks at it, the case is not lost
                log.exception("aftersales.topup_query_failed", extra={"case": case.case_no})
            else:
                evidence = dict(outcome.evidence.as_dict())
                if outcome.state is OrderState.SUCCEEDED:
                    state = "succeeded"
                elif outcome.state is OrderState.FAILED and outcome.error is not None and not outcome.maybe_charged:
                    state = "failed"
                else:
                    state = outcome.state.value
        verdict = topup_verdict(state, config.aftersales)
        return await self.store.settle_topup(case.case_no, verdict, evidence, config.aftersales, self.clock.now())

    async def act(self, case_no: str, action: Action, note: str | None, operator: str) -> Case:
        config = self.config()
        now = self.clock.now()
        case = await self.store.act_on_case(case_no, action, note, operator, config.aftersales, now)
        await failpoints.pause("aftersales_acted")  # tests: a kill lands after the action's commit, before the answer
        if action is Action.REJECT:
            # Abusive reports cost the buyer credit (the risk wing's record, or an event until it is wired).
            reason = f"after-sales case {case_no} rejected: {note or 'no note'}"
            await self.credit.adjust_credit_for_order(
                case.order_id, -config.aftersales.l1.reject_penalty, reason, operator, now
            )
        if action is Action.REISSUE and self.on_reissue is not None:
            self.on_reissue()
        log.info("aftersales.action", extra={"case": case_no, "action": action.value, "operator": operator})
        return case

    # --- the periodic pass ------------------------------------------------------------------------------

    async def tick(self, now: datetime) -> None:
        config = self.config()
        for case in await self.store.escalate_overdue(config.aftersales, now):
            log.warning("aftersales.escalated", extra={"case": case.case_no, "level": str(case.level)})
        due = self._hotspots_at is None or now - self._hotspots_at >= timedelta(
            seconds=config.aftersales.hotspots.interval
        )
        if due:
            self._hotspots_at = now
            await self.hotspots(now)

    async def hotspots(self, now: datetime) -> list[Hotspot]:
        """Rates that jumped: alert, pause per config, mark the supplier for review."""
        config = self.config()
        cfg = config.aftersales.hotspots
        if not cfg.enabled:
            return []
        window = timedelta(seconds=cfg.window)
        recent = await self.store.aftersales_counts(now - window, now)
        before = await self.store.aftersales_counts(now - window - timedelta(seconds=cfg.baseline), now - window)
        found = find_hotspots(recent, before, cfg)
        for hotspot in found:
            await self._hotspot(hotspot, config, now)
        return found

    async def _hotspot(self, hotspot: Hotspot, config: Config, now: datetime) -> None:
        cfg = config.aftersales.hotspots
        product = config.products.get(hotspot.sku)
        offers = product.offers if product is not None else ()
        pause: list[tuple[str, str]] = []
        if cfg.pause == "offer" and hotspot.supplier is not None:
            pause = [(o.supplier, o.product_id or "") for o in offers if o.supplier == hotspot.supplier]
        elif cfg.pause == "product" and hotspot.supplier is None:
            pause = [(o.supplier, o.product_id or "") for o in offers]
        active = await self.store.active_cooldowns(now)
        paused = []
        until = now + timedelta(seconds=cfg.pause_for)
        for supplier, product_id in pause:
            if active.get((supplier, product_id), now) > now:
                continue  # paused already (by us or another cool-down): leave its end as it is
            why = f"after-sales hotspot: {hotspot.describe()}"
            await self.store.set_cooldown(supplier, product_id, until, why[:500], now)
            paused.append(f"{supplier}/{product_id}")
        data: dict[str, Any] = {
            "sku": hotspot.sku,
            "rate": round(hotspot.now.rate, 4),
            "cases": hotspot.now.cases,
            "delivered": hotspot.now.delivered,
            "baseline_rate": round(hotspot.baseline.rate, 4),
            "paused": ", ".join(paused) or None,
            "detail": hotspot.describe(),
        }
        kind = "supplier.aftersales_hotspot" if hotspot.supplier else "aftersales.hotspot"
        raised = await self.store.raise_system_alert(kind, hotspot.subject, data, now)
        if raised or paused:
            await self.store.record_event("aftersales.hotspot", now, supplier=hotspot.supplier, data=data)
            if hotspot.supplier is not None:
                # Marked for review: the operator's supplier list shows it, the alert says why.
                await self.store.record_event(
                    "supplier.review", now, supplier=hotspot.supplier, data={"why": hotspot.describe()}
                )
            log.warning("aftersales.hotspot", extra={"subject": hotspot.subject, **data})
