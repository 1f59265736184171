"""From a supplier's configuration entry to its adapter.

Builtin types are imported lazily, by name, so building one supplier never imports the others' protocols.
Other types come from installed packages through the `fulfil.suppliers` entry-point group; the project's own
pyproject also registers the builtins there, but the builtin table wins so a stray plugin cannot replace them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Final

from fulfil.config import SupplierConfig
from suppliers.base import Supplier
from suppliers.taxonomy import SupplierError

if TYPE_CHECKING:
    from suppliers.stock import StockStore

ENTRY_POINT_GROUP: Final = "fulfil.suppliers"

BUILTIN: Final[Mapping[str, str]] = {
    "stock": "suppliers.stock:StockSupplier",
    "fulu": "suppliers.fulu:FuluSupplier",
    "acg_faka": "suppliers.acg_faka:AcgFakaSupplier",
}


def _settings(cfg: SupplierConfig | Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(name, type, settings) from a `SupplierConfig` or an equivalent mapping."""
    settings = cfg.model_dump() if isinstance(cfg, SupplierConfig) else dict(cfg)
    name, kind = settings.get("name"), settings.get("type")
    if not isinstance(name, str) or not isinstance(kind, str):
        raise SupplierError("a supplier entry needs a name and a type")
    return name, kind, settings


def _load(spec: str, kind: str) -> type[Supplier]:
    module_name, _, attr = spec.partition(":")
    try:
        loaded = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SupplierError(f"supplier type {kind!r}: cannot load {spec} ({exc})") from exc
    return _checked(loaded, kind, spec)


def _checked(loaded: object, kind: str, spec: str) -> type[Supplier]:
    if not (isinstance(loaded, type) and issubclass(loaded, Supplier)):
        raise SupplierError(f"supplier type {kind!r}: {spec} is not a Supplier subclass")
    return loaded


def _plugin(kind: str) -> EntryPoint | None:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    return found[0] if found else None


def supplier_class(kind: str) -> type[Supplier]:
    """The adapter class for a supplier type; SupplierError naming the type when there is none."""
    if kind in BUILTIN:
        return _load(BUILTIN[kind], kind)
    ep = _plugin(kind)
    if ep is None:
        plugins = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        known = sorted(set(BUILTIN) | set(plugins))
        raise SupplierError(f"unknown supplier type {kind!r} (known: {', '.join(known)})")
    try:
        loaded = ep.load()
    except Exception as exc:  # a broken plugin must name itself, whatever it raised on import
        raise SupplierError(f"supplier type {kind!r}: cannot load {ep.value} ({exc})") from exc
    return _checked(loaded, kind, ep.value)


def build_supplier(cfg: SupplierConfig | Mapping[str, Any], *, store: StockStore | None = None) -> Supplier:
    """The adapter for one `SupplierConfig`. The stock adapter also takes the store it sells from."""
    name, kind, settings = _settings(cfg)
    cls = supplier_class(kind)
    if kind == "stock":
        if store is None:
            raise SupplierError(f"supplier {name!r}: a stock supplier needs the store")
        stock_cls: Any = cls  # its constructor takes the store; the base signature does not
        built: Supplier = stock_cls(name, settings, store=store)
        return built
    return cls(name, settings)
