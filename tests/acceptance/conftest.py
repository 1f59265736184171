"""Acceptance tests: the real `fulfil` command and simulator as subprocesses (helpers in daemonkit.py).

Whatever a test leaves running (a daemon it meant to stop, a simulator) is killed and reaped after it, pass
or fail, so one failing test never leaves processes holding a database or a port for the next.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemonkit import base_env, reap_all


@pytest.fixture(autouse=True)
def _reap_processes() -> Iterator[None]:
    try:
        yield
    finally:
        reap_all()


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    """An environment for `fulfil` with a fresh card key and JSON logs.

    Its teardown reaps the test's processes too: a test asks for `env` after its database fixture
    (`pg_url`, `db_url`), so this runs before that schema is dropped, with no daemon still connected to
    it. (The autouse reaper is set up first, so it tears down last: too late for that.)"""
    try:
        yield base_env()
    finally:
        reap_all()
