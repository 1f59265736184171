"""Scenario files: the simulated supplier's account, catalogue and faults, validated once into frozen objects.

`load_scenario` either returns a `Scenario` or raises `ScenarioError` listing every problem with the path
of the bad field (`faults[2].probability: must be a number between 0 and 1, got 1.5`), like `fulfil.config`.
Ready scenarios: config/scenarios/*.yaml. The format:

    protocol: fulu                 # or acg_faka (the command line's --protocol must agree)
    app_key: sim-fulu-app-key      # fulu: app_key + secret (32 characters, the AES key of card fields)
    secret: "0123456789abcdef0123456789abcdef"
    # app_id: "10086"              # acg_faka: app_id + app_key
    merchant_name: 福禄模拟商户
    balance: "100000.00"           # charged per order; an order it cannot pay for fails
    seed: 1                        # the fault RNG (card keys are never seeded: a restart must not resell)
    max_skew: 10m                  # fulu: timestamp tolerance (code 1004 beyond)
    processing_time: 0s            # fulu: time an accepted order stays `processing` (0s: done on 1st query)
    callback_url: null             # fulu: POST a signed notice here when an order finishes
    products:
      10001: {name: Steam 100, kind: card, price: "95.00", stock: 1000, card_pattern: "[A-Z0-9]{16}"}
      10002: {name: NetEase 50, price: "48.50", number_pattern: "[0-9]{12}", card_pattern: "[A-Z0-9]{8}"}
      10003: {name: QQ coins, kind: direct, price: "9.80", processing_time: 2s}   # stock omitted: unlimited
      10004: {name: Retired, price: "1.00", on_sale: false}
      # acg_faka only: delivery: manual (charges, answers `delivery_message`, default "正在发货中，请耐心等待…")
    faults:                        # tried in order; see suppliers.sim.faults for how they combine
      - kind: lost_after_commit    # when: probability and/or requests: "10-20" and/or from: 5s / to: 15s
        probability: 0.1           # where: products: [10001] and on: [order, query, stock, account]
      - kind: system_error         # code (fulu, default 5000) / message; committed: false by default
        code: 4008
        requests: "10-20"
      - kind: refuse               # the listener is closed: connections refused (from/to only)
        from: 30s
        to: 45s

Fault kinds: latency (distribution fixed `delay` | uniform `min`/`max` | normal `mean`/`stddev`), refuse,
drop_before_commit, timeout_before_commit (`duration`, default 60s), lost_after_commit, http_5xx (`status`,
committed by default), system_error, out_of_stock, balance_exhausted, bad_signature (fulu; committed by
default), html_error (`status` 200 or 5xx; default 502, and 200 for acg_faka as the real shop answers),
truncated_json (committed by default), processing (fulu: `duration`, `then` success|failure, `description`),
invalid_keys (`mode` not_matching|resold; the whole batch). acg_faka only: manual_delivery (`message`:
charged, the text in `secret`), grabbed (charged, "很抱歉，有人在你付款之前抢走了商品，请联系客服。" in
`secret`), purchase_limit (`mode` per_person|per_trade|minimum, `limit` N: refused, nothing charged),
charged_then_error (`message`, default 商品不存在: charged, then answered `code: 0`).
`committed: true|false` is accepted where it is configurable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import yaml

from suppliers.sim.cards import CardPattern, PatternError
from suppliers.sim.fault_spec import (
    DEFAULT_DELIVERY_MESSAGE,
    OPS,
    PROTOCOLS,
    Fault,
    Latency,
    faults_for,
    read_faults,
)
from suppliers.sim.reading import Reader, ScenarioError, join

__all__ = [
    "OPS", "PROTOCOLS", "Fault", "Latency", "Product", "Scenario", "ScenarioError", "coerce_scenario",
    "faults_from_data", "load_scenario", "scenario_from_data",
]  # fmt: skip

DEFAULT_CARD_PATTERN: Final = "[A-Z0-9]{16}"


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    kind: str  # card | direct
    price: Decimal
    stock: int | None  # None: unlimited
    card_pattern: CardPattern | None  # the key (fulu card_pwd / acg secret line); None for direct
    number_pattern: CardPattern | None = None  # fulu card_number; None: password-only cards
    on_sale: bool = True
    processing_time: float | None = None  # overrides the scenario's
    # acg_faka: "manual" (delivery_way 1) charges and answers this text instead of keys; None: keys.
    delivery_message: str | None = None


@dataclass(frozen=True)
class Scenario:
    protocol: str
    products: Mapping[str, Product]
    faults: tuple[Fault, ...] = ()
    seed: int = 0
    balance: Decimal = Decimal("100000")
    merchant_name: str = "fulfil simulator"
    app_key: str = ""
    secret: str = field(default="", repr=False)  # fulu
    app_id: str = ""  # acg_faka
    max_skew: float = 600.0  # fulu timestamp tolerance
    processing_time: float = 0.0  # fulu: seconds an accepted order stays `processing`
    callback_url: str | None = None  # fulu


def _pattern(r: Reader, value: Any, path: str) -> CardPattern | None:
    if not isinstance(value, str):
        r.error(path, f"expected a card pattern such as {DEFAULT_CARD_PATTERN!r}, got {value!r}")
        return None
    try:
        return CardPattern.parse(value)
    except PatternError as exc:
        r.error(path, str(exc))
        return None


# --- products -----------------------------------------------------------------------------------------

_PRODUCT_FIELDS = {
    "name",
    "kind",
    "price",
    "stock",
    "card_pattern",
    "number_pattern",
    "on_sale",
    "processing_time",
    "delivery",
    "delivery_message",
}


def _product(r: Reader, pid: str, raw: Any, path: str, protocol: str) -> Product:
    data = r.mapping(raw, path, _PRODUCT_FIELDS)
    if protocol == "fulu" and not re.fullmatch(r"[1-9]\d{0,17}", pid):
        r.error(path, "fulu product ids are positive integers (product_id is a number in the protocol)")
    kind = r.choice(data.get("kind", "card"), join(path, "kind"), ("card", "direct"))
    if protocol == "acg_faka" and kind != "card":
        r.error(join(path, "kind"), "acg_faka products are card products (the trade answers with card text)")
    if "price" not in data:
        r.error(join(path, "price"), "required")
    price = r.money(data.get("price", 0), join(path, "price"))
    stock_raw = data.get("stock")
    stock = None if stock_raw is None else r.integer(stock_raw, join(path, "stock"), low=0)
    card_pattern = number_pattern = None
    if kind == "card":
        card_pattern = _pattern(r, data.get("card_pattern", DEFAULT_CARD_PATTERN), join(path, "card_pattern"))
        if data.get("number_pattern") is not None:
            if protocol != "fulu":
                r.error(join(path, "number_pattern"), "only fulu cards have a separate card number")
            number_pattern = _pattern(r, data["number_pattern"], join(path, "number_pattern"))
    else:
        for name in ("card_pattern", "number_pattern"):
            if data.get(name) is not None:
                r.error(join(path, name), "a direct top-up product issues no cards")
    processing = None
    if data.get("processing_time") is not None:
        if protocol != "fulu":
            r.error(join(path, "processing_time"), "only fulu orders are asynchronous")
        processing = r.duration(data["processing_time"], join(path, "processing_time"))
    return Product(
        delivery_message=_delivery(r, data, path, protocol),
        id=pid,
        name=r.text(data.get("name"), join(path, "name"), default=f"product {pid}"),
        kind=kind,
        price=price,
        stock=stock,
        card_pattern=card_pattern,
        number_pattern=number_pattern,
        on_sale=r.boolean(data.get("on_sale", True), join(path, "on_sale")),
        processing_time=processing,
    )


def _delivery(r: Reader, data: Mapping[str, Any], path: str, protocol: str) -> str | None:
    """The delivery message of a manual-delivery product (acg_faka), None for one that delivers keys."""
    delivery = r.choice(data.get("delivery", "auto"), join(path, "delivery"), ("auto", "manual"))
    if delivery == "manual" and protocol != "acg_faka":
        r.error(join(path, "delivery"), "only acg_faka products can be delivered by hand")
    if delivery == "auto":
        if data.get("delivery_message") is not None:
            r.error(join(path, "delivery_message"), "only a `delivery: manual` product answers a delivery message")
        return None
    if data.get("stock") is not None:
        r.error(join(path, "stock"), "a manual-delivery product keeps no stock (acg-faka counts none)")
    return r.text(data.get("delivery_message"), join(path, "delivery_message"), default=DEFAULT_DELIVERY_MESSAGE)


def _products(r: Reader, raw: Any, protocol: str) -> dict[str, Product]:
    if not isinstance(raw, Mapping) or not raw:
        r.error("products", "expected a non-empty mapping of product id -> product")
        return {}
    return {str(pid): _product(r, str(pid), spec, join("products", str(pid)), protocol) for pid, spec in raw.items()}


# --- the scenario -------------------------------------------------------------------------------------

_TOP = {
    "protocol", "seed", "balance", "merchant_name", "app_key", "secret", "app_id", "max_skew",
    "processing_time", "callback_url", "products", "faults",
}  # fmt: skip
_FULU_ONLY = ("secret", "max_skew", "processing_time", "callback_url")
_ONLY = {**dict.fromkeys(_FULU_ONLY, "fulu"), "app_id": "acg_faka"}


def _credentials(r: Reader, data: Mapping[str, Any], protocol: str) -> dict[str, Any]:
    out: dict[str, Any] = {"app_key": r.text(data.get("app_key"), "app_key")}
    if protocol == "fulu":
        secret = r.text(data.get("secret"), "secret")
        if secret and len(secret.encode("utf-8")) != 32:
            # Card fields are AES-256 under the secret: anything but 32 bytes cannot work.
            r.error("secret", f"a fulu app secret is 32 characters (AES-256 key), got {len(secret)}")
        out["secret"] = secret
    else:
        out["app_id"] = r.text(data.get("app_id"), "app_id")
    return out


def scenario_from_data(data: Any, protocol: str | None = None) -> Scenario:
    """Validate parsed YAML/JSON. `protocol` (from the command line) must agree with the file's, if any."""
    r = Reader()
    top = r.mapping(data, "", _TOP)
    chosen = top.get("protocol", protocol)
    if protocol is not None and chosen != protocol:
        r.error("protocol", f"the scenario is for {chosen!r} but {protocol!r} was asked for")
    if chosen not in PROTOCOLS:
        r.error("protocol", f"expected one of {', '.join(PROTOCOLS)}, got {chosen!r}")
        raise ScenarioError(r.errors)
    for name, owner in _ONLY.items():
        if name in top and owner != chosen:
            r.error(name, f"only used by the {owner} protocol")
    products = _products(r, top.get("products"), chosen)
    faults = read_faults(r, top.get("faults"), chosen, products)
    callback = top.get("callback_url")
    if callback is not None and not (isinstance(callback, str) and re.match(r"https?://", callback)):
        r.error("callback_url", f"expected an http(s) URL or null, got {callback!r}")
    scenario = Scenario(
        protocol=chosen,
        products=products,
        faults=faults,
        seed=r.integer(top.get("seed", 0), "seed", low=0),
        balance=r.money(top.get("balance", "100000"), "balance"),
        merchant_name=r.text(top.get("merchant_name"), "merchant_name", default="fulfil simulator"),
        max_skew=r.duration(top.get("max_skew", "10m"), "max_skew"),
        processing_time=r.duration(top.get("processing_time", "0s"), "processing_time"),
        callback_url=callback if isinstance(callback, str) else None,
        **_credentials(r, top, chosen),
    )
    if r.errors:
        raise ScenarioError(r.errors)
    return scenario


def faults_from_data(raw: Any, scenario: Scenario) -> tuple[Fault, ...]:
    """Validate a replacement fault list against a running scenario's protocol and catalogue."""
    return faults_for(raw, scenario.protocol, scenario.products)


def load_scenario(path: str | Path, protocol: str | None = None) -> Scenario:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read the scenario: {exc.strerror}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError([f"{path}: not valid YAML: {exc}"]) from exc
    try:
        return scenario_from_data(data, protocol)
    except ScenarioError as exc:
        raise ScenarioError([f"{path}: {e}" for e in exc.errors]) from None


def coerce_scenario(value: Scenario | Mapping[str, Any] | str | Path, protocol: str | None = None) -> Scenario:
    """A `Scenario` from itself, parsed data, or a file path (tests pass whichever is handiest)."""
    if isinstance(value, Scenario):
        if protocol is not None and value.protocol != protocol:
            raise ScenarioError([f"protocol: the scenario is for {value.protocol!r} but {protocol!r} was asked for"])
        return value
    if isinstance(value, Mapping):
        return scenario_from_data(value, protocol)
    return load_scenario(value, protocol)
