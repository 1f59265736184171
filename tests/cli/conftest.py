"""CLI tests: a real SQLite database in tmp_path, a config file pointing at it, a card key in the env."""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from click.testing import CliRunner, Result

from fulfil.crypto import CardCipher, generate_key, load_card_key
from fulfil.logs import OWN_LOGGERS

if TYPE_CHECKING:
    from fulfil.storage import Store

T = TypeVar("T")

CONFIG_TEMPLATE = """\
database: {{url: "sqlite:///{db}"}}
suppliers:
  - {{name: shelf, type: stock}}
  - {{name: fulu-main, type: fulu, base_url: "http://127.0.0.1:9/api", app_key: k, secret: s}}
products:
  steam-100:
    kind: card
    max_qty: 10
    card_pattern: '^[A-Z0-9]{{16}}$'
    offers: [{{supplier: shelf}}]
  mobile-50:
    kind: direct
    max_qty: 1
    offers: [{{supplier: fulu-main, product_id: "10000001", cost: 49.50}}]
  gift-any:
    offers: [{{supplier: shelf}}]
"""


@dataclass
class Env:
    tmp: Path
    config_path: Path
    db_path: Path
    key: str

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def cipher(self) -> CardCipher:
        return CardCipher(load_card_key(None, {"FULFIL_CARD_KEY": self.key}))

    def cli(self, *args: str, input: str | None = None) -> Result:
        from fulfil.cli import main

        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)

    def store(self, fn: Callable[[Store], Awaitable[T]]) -> T:
        """Run `fn` against the same database the CLI uses (tests are sync: the CLI runs its own loop)."""
        from fulfil.storage import Store

        async def body() -> T:
            store = await Store.open(self.url, self.cipher())
            try:
                return await fn(store)
            finally:
                await store.close()

        return asyncio.run(body())

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def put_in_review(self, ref: str, reason: str = "out_of_stock") -> int:
        """Move a pending order to review the way a worker would: claim it, then finish it as review."""
        from fulfil.domain import OrderStatus

        async def body(store: Store) -> int:
            view = await store.get_order(ref)
            assert view is not None
            at = datetime.now(UTC)
            claimed = await store.claim_orders("test-worker", 1000, 60.0, at)
            assert view.order.id in {o.id for o in claimed}
            others = [o.id for o in claimed if o.id != view.order.id]
            if others:
                await store.release_leases("test-worker", others, at)
            await store.finish_order(view.order.id, "test-worker", OrderStatus.REVIEW, reason, at)
            return view.order.id

        return self.store(body)

    def json(self, *args: str) -> Any:
        result = self.cli(*args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    from fulfil.storage import Store

    db_path = tmp_path / "fulfil.db"
    config_path = tmp_path / "fulfil.yaml"
    config_path.write_text(CONFIG_TEMPLATE.format(db=db_path), encoding="utf-8")
    key = generate_key()
    monkeypatch.setenv("FULFIL_CARD_KEY", key)
    monkeypatch.setenv("FULFIL_CONFIG", str(config_path))
    monkeypatch.delenv("FULFIL_LOG_FORMAT", raising=False)
    monkeypatch.delenv("FULFIL_LOG_LEVEL", raising=False)
    Store.upgrade(f"sqlite:///{db_path}")
    return Env(tmp_path, config_path, db_path, key)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`fulfil` installs a root handler and sets levels; leave logging as we found it for other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = {name: logging.getLogger(name).level for name in OWN_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in own.items():
        logging.getLogger(name).setLevel(old)
