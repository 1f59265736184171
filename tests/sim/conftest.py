"""Simulator fixtures: scenario data, a started simulator per test, and the signing clients of `simkit`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from simkit import ACG_DATA, FULU_DATA, AcgClient, FuluClient, scenario

from suppliers.sim import Simulator, running_sim


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def fulu_data() -> dict[str, Any]:
    return scenario(FULU_DATA)


@pytest.fixture
def acg_data() -> dict[str, Any]:
    return scenario(ACG_DATA)


@pytest.fixture
async def fulu_sim(fulu_data: dict[str, Any]) -> AsyncIterator[Simulator]:
    async with running_sim(fulu_data) as sim:
        yield sim


@pytest.fixture
async def fulu(fulu_sim: Simulator, http: httpx.AsyncClient) -> FuluClient:
    return FuluClient(fulu_sim, http)


@pytest.fixture
async def acg_sim(acg_data: dict[str, Any]) -> AsyncIterator[Simulator]:
    async with running_sim(acg_data) as sim:
        yield sim


@pytest.fixture
async def acg(acg_sim: Simulator, http: httpx.AsyncClient) -> AcgClient:
    return AcgClient(acg_sim, http)
