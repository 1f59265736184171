"""L1: the automatic after-sales decisions, as pure functions of (facts, config, now).

For `key_invalid` a reissue needs all of: L1 on, the order delivered, a card product, every named key found
among the order's keys, the report inside the product's after-sales window, the buyer's credit at least
`l1.min_credit`, no named key reported before, and the purchase that sold them not already under a claim.
Anything else goes to a person (L2) with the reason: the first rule that failed, in that order.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fulfil.aftersales.model import Decision, Facts, Problem, Step
from fulfil.config import AftersalesConfig
from fulfil.durations import format_duration


def decide(facts: Facts, config: AftersalesConfig, now: datetime) -> Decision:
    if not config.l1.enabled:
        return _person("automatic decisions are off (aftersales.l1.enabled)")
    if facts.problem is Problem.KEY_INVALID:
        return _key_invalid(facts, config, now)
    if facts.problem is Problem.NOT_RECEIVED:
        if facts.order_status != "delivered":
            return _person(f"the order is {facts.order_status}, not delivered yet")
        if facts.product_kind == "direct" or facts.delivered_units > 0:
            return Decision(Step.RESEND, "delivered: the delivery notification is sent again")
        return _person("the order is delivered but has no keys on record")
    if facts.problem is Problem.TOPUP_NOT_ARRIVED:
        if facts.product_kind != "direct":
            return _person("not a direct top-up product")
        if facts.order_status != "delivered" or facts.delivered_attempt is None:
            return _person(f"the order is {facts.order_status}, not delivered yet")
        return Decision(
            Step.QUERY_TOPUP,
            "asking the supplier about the top-up",
            attempt_id=facts.delivered_attempt,
            supplier=facts.delivered_supplier,
        )
    return _person("a report in the buyer's words needs a person")


def _key_invalid(facts: Facts, config: AftersalesConfig, now: datetime) -> Decision:
    if facts.order_status != "delivered":
        return _person(f"the order is {facts.order_status}, not delivered")
    if facts.product_kind != "card":
        return _person("not a card product" if facts.product_kind else f"product '{facts.sku}' is not configured")
    if facts.named == 0:
        return _person("no keys named")
    if len(facts.matched) < facts.named:
        return _person(f"{facts.named - len(facts.matched)} of {facts.named} named keys are not this order's")
    window = config.window_for(facts.sku)
    if facts.delivered_at is not None and now - facts.delivered_at > timedelta(seconds=window):
        return _person(f"reported after the after-sales window ({format_duration(window)} from delivery)")
    if facts.credit < config.l1.min_credit:
        return _person(f"buyer credit {facts.credit} is below {config.l1.min_credit}")
    before = next((k.reported_in for k in facts.matched if k.reported_in), None)
    if before is not None:
        return _person(f"a named key was reported before (case {before})")
    claimed = next((k.under_claim for k in facts.matched if k.under_claim), None)
    if claimed is not None:
        return _person(f"the supplier's order is already under claim {claimed}")
    purchases = {k.attempt_id for k in facts.matched}
    if len(purchases) != 1:
        return _person("the named keys come from several purchases")
    first = facts.matched[0]
    return Decision(
        Step.REISSUE,
        f"{len(facts.matched)} key(s) reported invalid",
        units=len(facts.matched),
        attempt_id=first.attempt_id,
        supplier=first.supplier,
    )


def topup_verdict(state: str, config: AftersalesConfig) -> Decision:
    """What to do once the supplier answered about a top-up (`state`: succeeded, failed, or anything else)."""
    if state == "succeeded":
        return Decision(Step.CONFIRM, "the supplier confirms the top-up succeeded")
    if state == "failed":
        step = Step.REISSUE if config.l1.topup_failed == "reissue" else Step.REFUND
        return Decision(step, "the supplier says the top-up failed", units=1)
    return _person(f"the supplier's answer does not settle it ({state})")


def _person(reason: str) -> Decision:
    return Decision(Step.TO_PERSON, reason)
