"""Building adapters from configuration entries: builtins lazily, others through entry points."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from fulfil.config import SupplierConfig
from suppliers import registry
from suppliers.acg_faka import AcgFakaSupplier
from suppliers.base import Supplier
from suppliers.fulu import FuluSupplier
from suppliers.registry import build_supplier, supplier_class
from suppliers.stock import StockSupplier
from suppliers.taxonomy import Card, SupplierError

FULU = SupplierConfig(
    name="fulu-main", type="fulu", base_url="http://fulu.test/api/getway", app_key="k", secret="s" * 32
)


class NoStore:
    """Stands in for the Store: building a stock adapter must not touch it."""

    async def deliver_from_stock(
        self, order_id: int, owner: str, attempt_id: int, sku: str, qty: int, now: datetime
    ) -> list[Card] | None:
        raise AssertionError("not called")

    async def attempts_for_order(self, order_id: int) -> Sequence[Any]:
        raise AssertionError("not called")

    async def cards_for_attempt(self, attempt_id: int) -> Sequence[Card]:
        raise AssertionError("not called")

    async def stock_counts(self) -> dict[str, Any]:
        raise AssertionError("not called")


async def test_builds_fulu_from_its_config() -> None:
    supplier = build_supplier(FULU)
    try:
        assert isinstance(supplier, FuluSupplier)
        assert supplier.name == "fulu-main"
        assert supplier.settings == FULU.model_dump()
    finally:
        await supplier.aclose()


async def test_builds_from_a_plain_mapping() -> None:
    supplier = build_supplier(FULU.model_dump())
    try:
        assert isinstance(supplier, FuluSupplier)
    finally:
        await supplier.aclose()


async def test_builds_acg_faka() -> None:
    cfg = SupplierConfig(name="acg", type="acg_faka", base_url="http://acg.test/", app_id="1", app_key="k")
    supplier = build_supplier(cfg)
    try:
        assert isinstance(supplier, AcgFakaSupplier)
    finally:
        await supplier.aclose()


def test_builds_stock_with_the_store() -> None:
    supplier = build_supplier(SupplierConfig(name="local", type="stock"), store=NoStore())
    assert isinstance(supplier, StockSupplier)
    assert supplier.name == "local"


def test_stock_without_a_store_is_refused() -> None:
    with pytest.raises(SupplierError, match="needs the store"):
        build_supplier(SupplierConfig(name="local", type="stock"))


def test_unknown_type_is_named() -> None:
    with pytest.raises(SupplierError, match="unknown supplier type 'nope'.*fulu"):
        build_supplier({"name": "x", "type": "nope"})


def test_entry_without_name_or_type_is_refused() -> None:
    with pytest.raises(SupplierError, match="name and a type"):
        build_supplier({"type": "fulu"})


def _plugins(monkeypatch: pytest.MonkeyPatch, *eps: EntryPoint) -> None:
    def fake(*, group: str) -> list[EntryPoint]:
        assert group == "fulfil.suppliers"
        return list(eps)

    monkeypatch.setattr(registry, "entry_points", fake)


async def test_other_types_come_from_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    _plugins(monkeypatch, EntryPoint("fulu_clone", "suppliers.fulu:FuluSupplier", "fulfil.suppliers"))
    supplier = build_supplier({**FULU.model_dump(), "type": "fulu_clone"})
    try:
        assert isinstance(supplier, FuluSupplier)
    finally:
        await supplier.aclose()


def test_builtins_win_over_a_plugin_of_the_same_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _plugins(monkeypatch, EntryPoint("fulu", "json:dumps", "fulfil.suppliers"))
    assert supplier_class("fulu") is FuluSupplier


@pytest.mark.parametrize(
    ("value", "match"),
    [("json:dumps", "not a Supplier subclass"), ("no_such_module_xyz:Thing", "cannot load")],
)
def test_broken_plugins_name_their_type(monkeypatch: pytest.MonkeyPatch, value: str, match: str) -> None:
    _plugins(monkeypatch, EntryPoint("custom", value, "fulfil.suppliers"))
    with pytest.raises(SupplierError, match=f"'custom'.*{match}"):
        supplier_class("custom")


def test_every_builtin_is_a_supplier_of_its_type() -> None:
    for kind in registry.BUILTIN:
        cls: type[Supplier] = supplier_class(kind)
        assert cls.type_name == kind


def test_builtins_are_imported_lazily() -> None:
    code = (
        "import sys; from suppliers.registry import supplier_class; supplier_class('fulu'); "
        "adapters = ('suppliers.acg_faka', 'suppliers.stock', 'suppliers.fulu'); "
        "print(sorted(m for m in adapters if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "['suppliers.fulu']"
