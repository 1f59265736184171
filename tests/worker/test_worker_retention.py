"""The retention job: the worker prunes the event log on its own schedule, as the config says."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from fulfil.config import Config, ConfigError, config_from_data, load_config
from fulfil.storage import Store
from fulfil.worker import Worker
from tests.worker.conftest import SKU, StockProcessor, events, eventually, utcnow


def retention_config(**retention: Any) -> Config:
    return config_from_data(
        {
            "daemon": {"poll_interval": "20ms", "lease": "3s", "shutdown_timeout": "2s"},
            "retention": retention,
            "suppliers": [{"name": "shelf", "type": "stock"}],
            "products": {SKU: {"offers": [{"supplier": "shelf"}]}},
        },
        environ={},
    )


async def _names(store: Store) -> list[str]:
    return sorted(e.name for e in await store.events(limit=1000))


async def test_the_worker_prunes_old_events_in_batches(
    store: Store, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    now = utcnow()
    for i in range(5):
        await store.record_event(f"old{i}", now - timedelta(days=2))
    await store.record_event("young", now)
    worker = Worker(store, StockProcessor(store), retention_config(events="1d", interval="20ms", batch_size=2))
    running(worker)

    async def only_young() -> bool:
        return await _names(store) == ["young"]

    def pruned() -> int:
        return sum(r.__dict__["count"] for r in events(caplog, "retention.pruned"))

    await eventually(only_young, within=5.0)
    # The last batch commits a moment before the tick logs its total.
    await eventually(lambda: pruned() == 5, within=5.0)
    assert events(caplog, "retention.pruned")[0].__dict__["table"] == "events"


async def test_retention_off_keeps_every_event(store: Store, running: Any) -> None:
    await store.record_event("ancient", utcnow() - timedelta(days=3650))
    processor = StockProcessor(store)
    worker = Worker(store, processor, retention_config(events=None, interval="10ms"))
    running(worker)
    await asyncio.sleep(0.2)  # many retention ticks
    assert await _names(store) == ["ancient"]


def test_retention_settings_from_a_file(tmp_path: Any) -> None:
    path = tmp_path / "fulfil.yaml"
    path.write_text("retention:\n  events: 30d\n  interval: 10m\n", encoding="utf-8")
    config = load_config(path, environ={})
    assert (config.retention.events, config.retention.interval, config.retention.batch_size) == (
        30 * 86400.0,
        600.0,
        1000,
    )
    assert Config().retention.events == 90 * 86400.0  # the default: 90 days
    path.write_text("retention:\n  events: null\n", encoding="utf-8")
    assert load_config(path, environ={}).retention.events is None
    path.write_text("retention:\n  events: 0s\n  batch_size: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert any(e.startswith("retention.events") for e in refused.value.errors)
    assert any(e.startswith("retention.batch_size") for e in refused.value.errors)
