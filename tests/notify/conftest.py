"""Fixtures of the notification tests (helpers in notifykit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from notifykit import Receiver, serve_receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as got:
        yield got
