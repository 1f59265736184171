"""Fault rules as a scenario writes them: their kinds, where they apply, when they fire."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from suppliers.sim.reading import Reader, ScenarioError, join

PROTOCOLS: Final = ("fulu", "acg_faka")
# The operations a fault can target. fulu: card/direct add, info.get, stock.check, user.info;
# acg_faka: trade, query, inventory, connect.
OPS: Final[Mapping[str, tuple[str, ...]]] = {
    "fulu": ("order", "query", "stock", "account"),
    "acg_faka": ("order", "query", "stock", "account"),
}


@dataclass(frozen=True)
class Latency:
    distribution: str  # fixed | uniform | normal
    a: float  # fixed: delay; uniform: min; normal: mean (seconds)
    b: float = 0.0  # uniform: max; normal: stddev (seconds)


@dataclass(frozen=True)
class Fault:
    """One fault rule. It fires on a request it matches (`on`, `products`) when its schedule and
    probability both say so; no schedule and no probability means every matching request."""

    kind: str
    index: int  # position in the scenario's list, for the request log
    on: frozenset[str]
    products: frozenset[str] | None = None
    probability: float | None = None
    requests: tuple[int, int | None] | None = None  # 1-based, inclusive, counted over matching requests
    start: float | None = None  # seconds after the faults were loaded
    end: float | None = None
    latency: Latency | None = None
    duration: float = 0.0  # timeout_before_commit: how long it hangs; processing: how long it processes
    status: int = 0  # http_5xx / html_error
    code: int = 0  # system_error (fulu)
    message: str = ""  # system_error: the message; processing: the failure description
    committed: bool = False  # whether the purchase is made before the fault shows
    then: str = "success"  # processing: success | failure
    mode: str = "not_matching"  # invalid_keys: not_matching | resold; purchase_limit: per_person | per_trade | minimum
    limit: int = 1  # purchase_limit: the N of its message


@dataclass(frozen=True)
class _Kind:
    fields: frozenset[str] = frozenset()  # kind-specific fields
    ops: tuple[str, ...] = ("order", "query", "stock", "account")  # where it can apply
    default_ops: tuple[str, ...] = ("order",)
    protocols: tuple[str, ...] = PROTOCOLS
    committed: bool | None = None  # default of `committed`; None: not configurable


_ALL_OPS = ("order", "query", "stock", "account")
KINDS: Final[Mapping[str, _Kind]] = {
    "latency": _Kind(frozenset({"distribution", "delay", "min", "max", "mean", "stddev"}), default_ops=_ALL_OPS),
    "refuse": _Kind(),
    "drop_before_commit": _Kind(),
    "timeout_before_commit": _Kind(frozenset({"duration"})),
    "lost_after_commit": _Kind(),
    "http_5xx": _Kind(frozenset({"status"}), committed=True),
    "system_error": _Kind(frozenset({"code", "message"}), committed=False),
    "out_of_stock": _Kind(ops=("order", "stock"), default_ops=("order", "stock")),
    "balance_exhausted": _Kind(ops=("order",)),
    "bad_signature": _Kind(protocols=("fulu",), committed=True),
    "html_error": _Kind(frozenset({"status"}), committed=False),
    "truncated_json": _Kind(committed=True),
    "processing": _Kind(frozenset({"duration", "then", "description"}), ops=("order",), protocols=("fulu",)),
    "invalid_keys": _Kind(frozenset({"mode"}), ops=("order",)),
    # acg-faka answers that are not what they seem (see suppliers.sim.acg_app):
    # charged, `code: 200`, the shop's delivery message in `secret` instead of keys (a manual-delivery item)
    "manual_delivery": _Kind(frozenset({"message"}), ops=("order",), protocols=("acg_faka",)),
    # charged, `code: 200`, "很抱歉，有人在你付款之前抢走了商品…" in `secret` (another buyer took the last key)
    "grabbed": _Kind(ops=("order",), protocols=("acg_faka",)),
    # not charged: a quantity cap's message (per buyer, per trade, at least N)
    "purchase_limit": _Kind(frozenset({"mode", "limit"}), ops=("order",), protocols=("acg_faka",)),
    # charged, then `code: 0` with an error text (a reselling shop's stock check at its own upstream)
    "charged_then_error": _Kind(frozenset({"message"}), ops=("order",), protocols=("acg_faka",)),
}
_COMMON = {"kind", "products", "on", "probability", "requests", "from", "to"}
# refuse closes the listening socket: it can only follow time, not requests, products or chance.
_REFUSE_FIELDS = {"kind", "from", "to"}
_DEFAULT_TIMEOUT = 60.0
_DEFAULT_MESSAGES = {"fulu": "系统异常，请稍后重试", "acg_faka": "系统繁忙，请稍后再试"}
# acg-faka's default delivery message of a manual-delivery item (v3.6.0).
DEFAULT_DELIVERY_MESSAGE: Final = "正在发货中，请耐心等待…"
PURCHASE_LIMIT_MODES: Final = ("per_person", "per_trade", "minimum")
# A real acg-faka answers its error pages with HTTP 200; fulu's gateway with a 5xx.
_DEFAULT_HTML_STATUS = {"fulu": 502, "acg_faka": 200}


def _requests(r: Reader, value: Any, path: str) -> tuple[int, int | None] | None:
    match = re.fullmatch(r"\s*(\d+)\s*(?:(-)\s*(\d+)?)?\s*", str(value)) if not isinstance(value, bool) else None
    if match is None or not isinstance(value, str | int):
        r.error(path, f"expected a request range such as '10-20', '10-' or '7', got {value!r}")
        return None
    first = int(match.group(1))
    last: int | None = first if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
    if first < 1 or (last is not None and last < first):
        r.error(path, f"requests are counted from 1 and the range must not be empty, got {value!r}")
    return first, last


def _latency(r: Reader, data: Mapping[str, Any], path: str) -> Latency:
    distribution = r.choice(
        data.get("distribution", "fixed"), join(path, "distribution"), ("fixed", "uniform", "normal")
    )
    needs = {"fixed": ("delay",), "uniform": ("min", "max"), "normal": ("mean", "stddev")}[distribution]
    for name in ("delay", "min", "max", "mean", "stddev"):
        if name in data and name not in needs:
            r.error(join(path, name), f"not used by a {distribution} latency (it takes {', '.join(needs)})")
    values = []
    for name in needs:
        if name not in data:
            r.error(join(path, name), f"required for a {distribution} latency")
        values.append(r.duration(data.get(name, "0s"), join(path, name)))
    if distribution == "uniform" and values[0] > values[1]:
        r.error(join(path, "max"), "must not be below min")
    return Latency(distribution, values[0], values[1] if len(values) > 1 else 0.0)


def _kind_fields(r: Reader, kind: str, data: Mapping[str, Any], path: str, protocol: str) -> dict[str, Any]:
    """The kind-specific attributes of a fault."""
    out: dict[str, Any] = {}
    if kind == "latency":
        out["latency"] = _latency(r, data, path)
    elif kind == "timeout_before_commit":
        out["duration"] = r.duration(data.get("duration", f"{_DEFAULT_TIMEOUT:g}s"), join(path, "duration"))
    elif kind == "http_5xx":
        out["status"] = r.integer(data.get("status", 500), join(path, "status"), low=500, high=599)
    elif kind == "html_error":
        status = r.integer(data.get("status", _DEFAULT_HTML_STATUS[protocol]), join(path, "status"), low=200, high=599)
        if 200 < status < 500:
            r.error(join(path, "status"), f"an error page comes with 200 or a 5xx status, got {status}")
        out["status"] = status
    elif kind == "system_error":
        if "code" in data and protocol != "fulu":
            r.error(join(path, "code"), "acg_faka errors all have code 0: set `message` instead")
        out["code"] = r.integer(data.get("code", 5000), join(path, "code"), low=1)
        out["message"] = r.text(data.get("message"), join(path, "message"), default=_DEFAULT_MESSAGES[protocol])
    elif kind == "processing":
        if "duration" not in data:
            r.error(join(path, "duration"), "required: how long the order stays processing")
        out["duration"] = r.duration(data.get("duration", "0s"), join(path, "duration"))
        out["then"] = r.choice(data.get("then", "success"), join(path, "then"), ("success", "failure"))
        out["message"] = r.text(data.get("description"), join(path, "description"), default="充值失败")
    elif kind == "invalid_keys":
        out["mode"] = r.choice(data.get("mode", "not_matching"), join(path, "mode"), ("not_matching", "resold"))
    else:
        out.update(_acg_fields(r, kind, data, path))
    return out


def _acg_fields(r: Reader, kind: str, data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The attributes of the faults only acg-faka has."""
    if kind == "manual_delivery":
        return {"message": r.text(data.get("message"), join(path, "message"), default=DEFAULT_DELIVERY_MESSAGE)}
    if kind == "purchase_limit":
        return {
            "mode": r.choice(data.get("mode", "per_person"), join(path, "mode"), PURCHASE_LIMIT_MODES),
            "limit": r.integer(data.get("limit", 1), join(path, "limit"), low=1),
        }
    if kind == "charged_then_error":
        return {"message": r.text(data.get("message"), join(path, "message"), default="商品不存在")}
    return {}


def _targets(
    r: Reader,
    data: Mapping[str, Any],
    path: str,
    kind: str,
    ops: tuple[str, ...],
    products: Mapping[str, object],
) -> tuple[frozenset[str], frozenset[str] | None]:
    """Which operations (`on`) and products a fault applies to."""
    on = frozenset(op for op in KINDS[kind].default_ops if op in ops)
    if "on" in data:
        listed = data["on"] if isinstance(data["on"], list) else [data["on"]]
        if not listed or any(op not in ops for op in listed):
            r.error(join(path, "on"), f"{kind} applies to {', '.join(ops)}; got {data['on']!r}")
        on = frozenset(str(op) for op in listed if op in ops)
    chosen: frozenset[str] | None = None
    if "products" in data:
        listed = data["products"] if isinstance(data["products"], list) else [data["products"]]
        unknown = [p for p in listed if str(p) not in products]
        if unknown or not listed:
            r.error(join(path, "products"), f"unknown product(s) {unknown!r} (known: {', '.join(products)})")
        chosen = frozenset(str(p) for p in listed)
    return on, chosen


def _schedule(r: Reader, data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """When a fault fires: probability, request range, time window."""
    out: dict[str, Any] = {}
    if "probability" in data:
        value = data["probability"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            r.error(join(path, "probability"), f"must be a number between 0 and 1, got {value!r}")
        else:
            out["probability"] = float(value)
    if "requests" in data:
        out["requests"] = _requests(r, data["requests"], join(path, "requests"))
    if "from" in data:
        out["start"] = r.duration(data["from"], join(path, "from"))
    if "to" in data:
        out["end"] = r.duration(data["to"], join(path, "to"))
    if out.get("start") is not None and out.get("end") is not None and out["end"] <= out["start"]:
        r.error(join(path, "to"), "must be after `from`")
    return out


def _fault(r: Reader, raw: Any, index: int, protocol: str, products: Mapping[str, object]) -> Fault | None:
    path = join("faults", index)
    if not isinstance(raw, Mapping):
        r.error(path, f"expected a mapping with a `kind`, got {raw!r}")
        return None
    kind_name = str(raw.get("kind"))
    if kind_name not in KINDS:
        r.error(join(path, "kind"), f"expected one of {', '.join(KINDS)}, got {raw.get('kind')!r}")
        return None
    kind = KINDS[kind_name]
    allowed = _REFUSE_FIELDS if kind_name == "refuse" else _COMMON | kind.fields
    if kind.committed is not None:
        allowed = allowed | {"committed"}
    data = r.mapping(raw, path, allowed)
    if protocol not in kind.protocols:
        r.error(join(path, "kind"), f"{kind_name} is not a fault of the {protocol} protocol")
    ops = tuple(op for op in kind.ops if op in OPS[protocol])
    on, chosen = _targets(r, data, path, kind_name, ops, products)
    committed = kind.committed or False
    if "committed" in data:
        committed = r.boolean(data["committed"], join(path, "committed"))
    return Fault(
        kind=kind_name,
        index=index,
        on=on,
        products=chosen,
        committed=committed,
        **_schedule(r, data, path),
        **_kind_fields(r, kind_name, data, path, protocol),
    )


def read_faults(r: Reader, raw: Any, protocol: str, products: Mapping[str, object]) -> tuple[Fault, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r.error("faults", f"expected a list of faults, got {type(raw).__name__}")
        return ()
    faults = (_fault(r, item, i, protocol, products) for i, item in enumerate(raw))
    return tuple(f for f in faults if f is not None)


def faults_for(raw: Any, protocol: str, products: Mapping[str, object]) -> tuple[Fault, ...]:
    """Validate a fault list on its own (a runtime replacement); raises `ScenarioError`."""
    r = Reader()
    faults = read_faults(r, raw, protocol, products)
    if r.errors:
        raise ScenarioError(r.errors)
    return faults
