"""Which offer of a product to try next: a pure function of config, this order's attempts and supplier health.

A health object that also demotes weak suppliers (`Demoting`: below `routing.min_score`, or short of balance)
has them passed by, except for a share of probe orders so their score can recover, and except when nothing
else is left: a demoted supplier is a last resort, never a reason to send an order to review.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, cast, runtime_checkable

from fulfil.config import OfferConfig, ProductConfig
from fulfil.domain import AttemptRecord, AttemptState
from fulfil.health import Health
from suppliers.taxonomy import ErrorClass


@runtime_checkable
class Demoting(Protocol):
    """What a `Health` may add: suppliers routing should pass by, and the share of orders that probe them."""

    def demoted(self, supplier: str) -> bool: ...

    @property
    def probe_share(self) -> float: ...


@functools.cache
def _demotes(kind: type) -> bool:
    """Whether instances of `kind` are `Demoting`, decided once per class: a runtime Protocol check walks the
    class on every call (2 % of the daemon's CPU when made for each order)."""
    return callable(getattr(kind, "demoted", None)) and hasattr(kind, "probe_share")


@dataclass(frozen=True)
class Offer:
    index: int  # position in the product's offers: with the supplier, the offer's identity in attempts
    supplier: str
    product_id: str | None
    cost: Decimal | None
    priority: int

    @classmethod
    def of(cls, index: int, cfg: OfferConfig) -> Offer:
        return cls(index, cfg.supplier, cfg.product_id, cfg.cost, cfg.priority)


def offer_of(product: ProductConfig, attempt: AttemptRecord) -> Offer | None:
    """The offer an attempt was made at: by its index, or by supplier when the config has moved it since."""
    offers = product.offers
    if attempt.offer_index < len(offers) and offers[attempt.offer_index].supplier == attempt.supplier:
        return Offer.of(attempt.offer_index, offers[attempt.offer_index])
    for index, cfg in enumerate(offers):
        if cfg.supplier == attempt.supplier:
            return Offer.of(index, cfg)
    return None


@dataclass(frozen=True)
class Skipped:
    offer: Offer
    why: str  # "tried: product_unavailable", "cooling down", "breaker open", "disabled"
    # A block worth waiting for (a breaker open; an attempt that failed transient, never executed): when it may
    # end. Not a cool-down: the orders waiting would all be routed to it at its end (no probes limit them), and
    # a non-keys cool-down exists to stop just that burst.
    until: datetime | None = None


def used_offers(attempts: Iterable[AttemptRecord]) -> dict[tuple[str, int], str]:
    """Offers this order already spent an attempt on, with how it ended. Open attempts count too."""
    used: dict[tuple[str, int], str] = {}
    for attempt in attempts:
        how = attempt.error_class or attempt.state.value
        if attempt.state is AttemptState.SUCCEEDED and not attempt.error_class:
            how = "succeeded"
        used[(attempt.supplier, attempt.offer_index)] = how
    return used


def plan_offers(
    product: ProductConfig,
    attempts: Sequence[AttemptRecord],
    *,
    cooldowns: Mapping[tuple[str, str], datetime],
    enabled: Mapping[str, bool],
    health: Health,
    now: datetime,
    strategy: str = "priority",
    rng: random.Random | None = None,
) -> tuple[list[Offer], list[Skipped]]:
    """Offers to try, best first, and the ones left out with why (for the review reason)."""
    rng = rng or random.Random()
    demoting = cast(Demoting, health) if _demotes(type(health)) else None
    used = used_offers(attempts)
    ready: list[Offer] = []
    probes: set[Offer] = set()
    demoted: list[Offer] = []
    skipped: list[Skipped] = []
    for index, cfg in enumerate(product.offers):
        offer = Offer.of(index, cfg)
        why = _skip_reason(offer, used, cooldowns, enabled, health, now)
        if why is not None:
            skipped.append(Skipped(offer, *why))
        elif demoting is None or not demoting.demoted(offer.supplier):
            ready.append(offer)
        elif rng.random() < demoting.probe_share:
            probes.add(offer)  # this order probes the demoted supplier
            ready.append(offer)
        else:
            demoted.append(offer)
    ordered = order_offers(ready, strategy=strategy, health=health, rng=rng)
    # A probe goes first within its priority level: its low weight would otherwise hide it again.
    ordered.sort(key=lambda o: (o.priority, o not in probes))
    # Demoted offers come last, in their own routing order: tried only when everything better failed.
    ordered += order_offers(demoted, strategy=strategy, health=health, rng=rng)
    return ordered, skipped


def avoid_last(offers: Sequence[Offer], supplier: str | None) -> list[Offer]:
    """`supplier`'s offers after every other (a reissue: the supplier that sold the bad key is tried only when
    nothing else is left), each group in its routing order."""
    if supplier is None:
        return list(offers)
    return [o for o in offers if o.supplier != supplier] + [o for o in offers if o.supplier == supplier]


def _skip_reason(
    offer: Offer,
    used: Mapping[tuple[str, int], str],
    cooldowns: Mapping[tuple[str, str], datetime],
    enabled: Mapping[str, bool],
    health: Health,
    now: datetime,
) -> tuple[str, datetime | None] | None:
    """Why the offer is left out, and when that ends if it is a block that ends by itself."""
    if (offer.supplier, offer.index) in used:
        how = used[(offer.supplier, offer.index)]
        if how == ErrorClass.TRANSIENT.value:  # never executed: worth trying again once its supplier may answer
            return f"tried: {how}", health.reopens_at(offer.supplier, now) or now
        return f"tried: {how}", None
    if not enabled.get(offer.supplier, False):
        return "disabled", None
    until = cooldowns.get((offer.supplier, offer.product_id or ""))
    if until is not None and until > now:
        return "cooling down", None
    if not health.allows(offer.supplier, now):
        # Asked only once routing was refused; a breaker that cannot say when is asked again soon.
        return "breaker open", health.reopens_at(offer.supplier, now) or now
    return None


def order_offers(
    offers: Sequence[Offer], *, strategy: str, health: Health, rng: random.Random | None = None
) -> list[Offer]:
    """Priority first. Within one priority level: as listed (priority), cheapest (cost), or a score-weighted
    draw (score) so better suppliers get more traffic and weaker ones still get some."""
    levels: dict[int, list[Offer]] = {}
    for offer in offers:
        levels.setdefault(offer.priority, []).append(offer)
    out: list[Offer] = []
    for priority in sorted(levels):
        level = levels[priority]
        if strategy == "cost":
            level = sorted(level, key=lambda o: (o.cost is None, o.cost or Decimal(0), o.index))
        elif strategy == "score" and len(level) > 1:
            level = weighted_shuffle(level, [health.weight(o.supplier) for o in level], rng or random.Random())
        out.extend(level)
    return out


def weighted_shuffle(items: Sequence[Offer], weights: Sequence[float], rng: random.Random) -> list[Offer]:
    """Order drawn without replacement, each pick in proportion to weight (a floor keeps a trickle of probes)."""
    pool = [(item, max(weight, 1.0)) for item, weight in zip(items, weights, strict=True)]
    out: list[Offer] = []
    while pool:
        total = sum(weight for _, weight in pool)
        pick = rng.uniform(0, total)
        for i, (item, weight) in enumerate(pool):
            pick -= weight
            if pick <= 0 or i == len(pool) - 1:
                out.append(item)
                pool.pop(i)
                break
    return out
