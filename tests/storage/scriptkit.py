"""Direct-transaction scripts the storage tests run (tests/storage/test_direct.py, test_group_commit.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fulfil.storage import Store, statements
from fulfil.storage.direct import FALL_BACK, Script, Step

if TYPE_CHECKING:
    from tests.storage.conftest import Raw

OWNER = "w1"  # who `claimed` claims for (tests/storage/conftest.py)


def touch(store: Store, order_id: int, at: datetime, then: Callable[[], Script] | None = None) -> Script:
    """The fence (sets the order's updated_at to `at`), then whatever `then` does ("done" without one)."""
    fence = store._direct.prepared("fence", statements.fence)  # noqa: SLF001 - the path under test
    held = yield Step(fence, {"order_id": order_id, "owner": OWNER, "now": at})
    assert held, "the test's order is claimed by OWNER"
    if then is not None:
        return (yield from then())
    return "done"


def raising() -> Script:
    yield from ()
    raise RuntimeError("half-way")


def falling_back() -> Script:
    yield from ()
    return FALL_BACK


async def updated_at(raw: Raw, order_id: int) -> Any:
    (row,) = await raw(f"SELECT updated_at FROM orders WHERE id = {order_id}")
    return row["updated_at"]
