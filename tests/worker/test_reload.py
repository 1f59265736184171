"""SIGHUP: a valid new config is applied to the running worker; an invalid one is refused and the old kept."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from fulfil.cli.run import _signal_handlers
from fulfil.storage import Store
from fulfil.worker import Worker, reload_from_file
from tests.worker.conftest import SKU, StockProcessor, add_orders, add_stock, events, eventually, make_config


def write_config(path: Path, *, concurrency: int = 4, url: str = "sqlite:///fulfil.db", **extra: Any) -> Path:
    data: dict[str, Any] = {
        "database": {"url": url},
        "daemon": {
            "poll_interval": "20ms",
            "concurrency": concurrency,
            "lease": "3s",
            "shutdown_timeout": "2s",
        },
        "suppliers": [{"name": "shelf", "type": "stock"}],
        "products": {SKU: {"offers": [{"supplier": "shelf"}]}},
        **extra,
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


BROKEN = """\
daemon: {poll_interval: soon, concurrency: 0}
suppliers: [{name: shelf, type: stock}]
products: {steam-100: {offers: [{supplier: nobody}]}}
"""


async def test_a_broken_file_is_refused_loudly_and_the_old_config_kept(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    processor = StockProcessor(store)
    old = make_config()
    worker = Worker(store, processor, old)
    bad = tmp_path / "fulfil.yaml"
    bad.write_text(BROKEN, encoding="utf-8")

    assert reload_from_file(worker, bad) is False

    assert worker.config is old
    assert processor.configs == []
    refused = events(caplog, "config.reload_refused")
    assert {r.levelno for r in refused} == {logging.ERROR}
    errors = [getattr(r, "error", "") for r in refused]
    assert len(errors) == 3  # every error, each on its own line, with its path
    assert any(e.startswith("daemon.poll_interval:") for e in errors)
    assert any(e.startswith("daemon.concurrency:") for e in errors)
    assert any("products.steam-100.offers[0].supplier: unknown supplier 'nobody'" in e for e in errors)
    assert not events(caplog, "config.reloaded")


async def test_an_unreadable_file_is_refused(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = make_config()
    worker = Worker(store, StockProcessor(store), old)

    assert reload_from_file(worker, tmp_path / "missing.yaml") is False

    assert worker.config is old
    assert len(events(caplog, "config.reload_refused", logging.ERROR)) == 1


async def test_a_valid_file_is_applied_and_handed_to_the_processor(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    processor = StockProcessor(store)
    worker = Worker(store, processor, make_config())

    assert reload_from_file(worker, write_config(tmp_path / "fulfil.yaml", concurrency=9)) is True

    assert worker.config.daemon.concurrency == 9
    assert processor.configs == [worker.config]
    [reloaded] = events(caplog, "config.reloaded")
    assert "daemon" in getattr(reloaded, "changed", [])


async def test_sections_read_only_at_start_are_flagged(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(store, StockProcessor(store), make_config())

    assert reload_from_file(worker, write_config(tmp_path / "f.yaml", url="sqlite:///elsewhere.db"))

    [warning] = events(caplog, "config.restart_required", logging.WARNING)
    assert getattr(warning, "sections", None) == ["database"]


async def test_a_larger_concurrency_takes_effect_while_running(
    store: Store, tmp_path: Path, running: Any
) -> None:
    await add_orders(store, 6)
    await add_stock(store, 6)
    processor = StockProcessor(store)
    processor.gate_all = asyncio.Event()
    worker = Worker(store, processor, make_config(concurrency=1))
    handle = running(worker)
    await eventually(lambda: len(processor.started) == 1)
    await asyncio.sleep(0.1)
    assert processor.active == 1  # bounded while the config says 1

    reload_from_file(worker, write_config(tmp_path / "fulfil.yaml", concurrency=3))

    await eventually(lambda: processor.active == 3)
    processor.gate_all.set()
    await eventually(lambda: len(processor.finished) == 6)
    assert processor.max_active == 3
    await handle.stop()


async def test_signals_reach_the_worker(store: Store, tmp_path: Path, running: Any) -> None:
    path = write_config(tmp_path / "fulfil.yaml", concurrency=5)
    worker = Worker(store, StockProcessor(store), make_config())
    handle = running(worker)

    with _signal_handlers(worker, path):
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: worker.config.daemon.concurrency == 5)
        path.write_text(BROKEN, encoding="utf-8")
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.05)
        assert worker.config.daemon.concurrency == 5  # the broken file was refused
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(3):
            await handle.task  # SIGTERM stopped it, gracefully
