"""The risk decision, as pure functions of (the order's facts, figures the store counted, config, now).

Two steps, so the store can count exactly what the rules need inside the decision's transaction:

1. `queries(facts, risk, families, now)`: what to count for each rule (an identity's orders let through since
   a time, optionally of some skus; or whether an identity was ever let through);
2. `decide(facts, risk, figures, credit, blocks)`: every rule evaluated in order with its figures, and the
   decision: the most severe action of any rule that hit (refuse > hold > allow), its reason naming the first
   rule of that severity. `score -N` hits lower the buyer's credit, which is then held against the
   thresholds (`credit.hold_below`, `credit.refuse_below`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from fulfil.config import CREDIT_KINDS, RiskConfig, RiskRule

Action = Literal["allow", "hold", "refuse"]
_SEVERITY: dict[Action, int] = {"allow": 0, "hold": 1, "refuse": 2}
COUNTING = ("velocity", "product_limit", "denominations", "first_order")
PENALTY_WINDOW = 3600.0  # a hold or refusal costs an identity at most once an hour per rule (longer windows: theirs)


@dataclass(frozen=True)
class OrderFacts:
    """What risk knows of the order: no readable buyer value, only keyed hashes per identity kind."""

    order_id: int
    sku: str
    qty: int
    amount: Decimal | None
    identities: Mapping[str, str]  # kind -> keyed hash


@dataclass(frozen=True)
class Query:
    """Count the orders of one identity let through since `since` (of `skus` when given); `seen`: only
    whether there was any, ever."""

    rule: str
    per: str
    hash: str
    since: datetime | None
    skus: tuple[str, ...] | None = None
    seen: bool = False
    # What to count: orders, units, amount (sums over the window), skus (distinct ones), seen (any ever).
    measures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Figures:
    orders: int = 0
    units: int = 0
    amount: Decimal = Decimal(0)
    skus: int = 0  # distinct skus among `Query.skus` (denominations: the family's other face values)
    seen: bool = False


@dataclass(frozen=True)
class BlockHit:
    kind: str
    reason: str
    network: str | None = None


@dataclass(frozen=True)
class Line:
    """One rule as evaluated: its figures in words, whether it hit, and what it does then."""

    rule: str
    kind: str
    detail: str
    hit: bool
    action: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "kind": self.kind, "detail": self.detail, "hit": self.hit, "action": self.action}


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str | None  # starts with "risk: " unless allowed
    lines: tuple[Line, ...]
    credit: int  # the order's credit before this decision (lowest of its identities)
    penalty: int = 0  # `score -N` hits: taken from each credit identity of the order
    penalty_reason: str = ""
    rule: str | None = None  # the rule that decided, when one did
    # The hold or refusal's own penalty (`credit.hold_penalty` / `refuse_penalty`): taken at most once per
    # `action_window` seconds per identity and reason, so a flood costs a buyer one penalty per window, not one
    # per order (which would turn a burst of holds into refusals for months).
    action_penalty: int = 0
    action_reason: str = ""
    action_window: float = 0.0

    def record(self) -> dict[str, Any]:
        """What is kept on the order for `fulfil risk explain`."""
        return {
            "action": self.action,
            "reason": self.reason,
            "rule": self.rule,
            "credit": self.credit,
            "penalty": self.penalty + self.action_penalty,
            "lines": [line.as_dict() for line in self.lines],
        }


def _family_skus(sku: str, families: Mapping[str, str | None]) -> tuple[str, ...] | None:
    family = families.get(sku)
    if family is None:
        return None
    return tuple(sorted(s for s, f in families.items() if f == family))


def queries(facts: OrderFacts, risk: RiskConfig, families: Mapping[str, str | None], now: datetime) -> list[Query]:
    """What the store must count for this order's rules (rules whose identity the order lacks need nothing)."""
    out: list[Query] = []
    for rule in risk.rules:
        if rule.kind == "first_order":
            kinds = (rule.per,) if rule.per else CREDIT_KINDS
            for kind in kinds:
                if kind in facts.identities:
                    out.append(Query(rule.name, kind, facts.identities[kind], None, seen=True, measures=("seen",)))
            continue
        per = rule.per
        if rule.kind not in COUNTING or per is None or per not in facts.identities:
            continue
        since = now - timedelta(seconds=rule.seconds)
        skus: tuple[str, ...] | None = None
        if rule.kind == "product_limit":
            skus = rule.skus or (facts.sku,)
            if facts.sku not in skus:
                continue
        elif rule.kind == "denominations":
            family = _family_skus(facts.sku, families)
            if family is None:
                continue
            skus = tuple(s for s in family if s != facts.sku)  # the others: this order brings its own
        if rule.kind == "denominations":
            measures: tuple[str, ...] = ("skus",)
        else:
            wanted = (("orders", rule.max_orders), ("units", rule.max_units), ("amount", rule.max_amount))
            measures = tuple(name for name, limit in wanted if limit is not None)
        out.append(Query(rule.name, per, facts.identities[per], since, skus, measures=measures))
    return out


def lock_keys(facts: OrderFacts, risk: RiskConfig) -> list[str]:
    """The identity hashes whose counts the rules read: a decision on PostgreSQL serialises on these, so two
    orders of one buyer decided at once cannot both slip under a limit. Sorted: locks taken in one order."""
    kinds: set[str] = set()
    for rule in risk.rules:
        if rule.kind == "first_order":
            kinds.update((rule.per,) if rule.per else CREDIT_KINDS)
        elif rule.kind in COUNTING and rule.per:
            kinds.add(rule.per)
    return sorted({facts.identities[k] for k in kinds if k in facts.identities})


def order_credit(facts: OrderFacts, scores: Mapping[str, int], start: int) -> int:
    """The order's credit: the lowest of its credit identities' scores (no row: `start`)."""
    values = [scores.get(facts.identities[k], start) for k in CREDIT_KINDS if k in facts.identities]
    return min(values, default=start)


def _window(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _limit_line(rule: RiskRule, facts: OrderFacts, figures: Figures) -> tuple[str, bool]:
    """Velocity and per-product limits: this order counted in, against each maximum the rule sets."""
    parts: list[str] = []
    hit = False
    where = f"per {rule.per} in {_window(rule.seconds)}"
    if rule.kind == "product_limit":
        where += f" of {', '.join(rule.skus or (facts.sku,))}"
    if rule.max_orders is not None:
        n = figures.orders + 1
        hit |= n > rule.max_orders
        parts.append(f"{n} orders (max {rule.max_orders})")
    if rule.max_units is not None:
        n = figures.units + facts.qty
        hit |= n > rule.max_units
        parts.append(f"{n} units (max {rule.max_units})")
    if rule.max_amount is not None:
        total = figures.amount + (facts.amount or 0)
        hit |= total > rule.max_amount
        parts.append(f"amount {total.normalize():f} (max {rule.max_amount.normalize():f})")
    return f"{', '.join(parts)} {where}", hit


def _evaluate(rule: RiskRule, facts: OrderFacts, figures: Mapping[str, Figures], credit: int) -> tuple[str, bool]:
    mine = figures.get(rule.name)
    if rule.kind == "credit":
        return f"credit {credit} (below {rule.below} hits)", credit < (rule.below or 0)
    if rule.kind == "first_order":
        if mine is None:
            return "no buyer identity to tell a first order by", False
        amount = facts.amount
        first = not mine.seen
        big = amount is not None and amount >= (rule.min_amount or 0)
        shown = "none" if amount is None else f"{amount.normalize():f}"
        return (
            f"{'first' if first else 'not the first'} order, amount {shown} (min {rule.min_amount})",
            first and big,
        )
    if mine is None:
        if rule.kind == "denominations":
            return f"{facts.sku} has no family, or the order has no {rule.per}", False
        return f"the order has no {rule.per}", False
    if rule.kind == "denominations":
        skus = mine.skus + 1
        text = f"{skus} skus of one family per {rule.per} in {_window(rule.seconds)} (max {rule.max_skus})"
        return text, skus > (rule.max_skus or 0)
    return _limit_line(rule, facts, mine)


def decide(
    facts: OrderFacts,
    risk: RiskConfig,
    figures: Mapping[str, Figures],
    scores: Mapping[str, int],
    blocks: Sequence[BlockHit],
) -> Decision:
    """Every rule in order, then the credit thresholds; the most severe action wins."""
    credit = order_credit(facts, scores, risk.credit.start)
    lines: list[Line] = []
    action: Action = "allow"
    reason: str | None = None
    decided_by: str | None = None
    score_penalty = 0
    scored: list[str] = []

    def escalate(to: Action, why: str, rule: str) -> None:
        nonlocal action, reason, decided_by
        if _SEVERITY[to] > _SEVERITY[action]:
            action, reason, decided_by = to, f"risk: {why}", rule

    for block in blocks:
        what = f"blocked {block.kind}" + (f" (in {block.network})" if block.network else "")
        lines.append(Line("blocklist", "block", f"{what}: {block.reason}", True, "refuse"))
        escalate("refuse", f"{what}: {block.reason}", "blocklist")
    if not blocks:
        lines.append(Line("blocklist", "block", "no entry matches", False, "refuse"))
    for rule in risk.rules:
        detail, hit = _evaluate(rule, facts, figures, credit)
        lines.append(Line(rule.name, rule.kind, detail, hit, rule.action))
        if not hit:
            continue
        if rule.verb == "score":
            score_penalty += rule.penalty
            scored.append(f"{rule.name} -{rule.penalty}")
        else:
            escalate("refuse" if rule.verb == "refuse" else "hold", f"{rule.name}: {detail}", rule.name)
    effective = credit - score_penalty
    thresholds = risk.credit
    detail = f"credit {effective}" + (f" ({credit} less {score_penalty})" if score_penalty else "")
    detail += f"; hold below {thresholds.hold_below}, refuse below {thresholds.refuse_below}"
    if effective < thresholds.refuse_below:
        lines.append(Line("credit", "credit", detail, True, "refuse"))
        escalate("refuse", f"credit {effective} is below {thresholds.refuse_below}", "credit")
    elif effective < thresholds.hold_below:
        lines.append(Line("credit", "credit", detail, True, "hold"))
        escalate("hold", f"credit {effective} is below {thresholds.hold_below}", "credit")
    else:
        lines.append(Line("credit", "credit", detail, False, "hold"))
    why = f"score: {', '.join(scored)}" if scored else ""
    cost, cost_reason, window = 0, "", 0.0
    # Low credit is the consequence of earlier hits, not a new one: no extra penalty (no spiral to refused).
    if decided_by not in (None, "credit") and action in ("hold", "refuse"):
        cost = thresholds.hold_penalty if action == "hold" else thresholds.refuse_penalty
        cost_reason = f"{'held' if action == 'hold' else 'refused'} by {decided_by}"
        rule_window = next((r.seconds for r in risk.rules if r.name == decided_by), 0.0)
        window = max(rule_window, PENALTY_WINDOW)
    return Decision(action, reason, tuple(lines), credit, score_penalty, why, decided_by, cost, cost_reason, window)
