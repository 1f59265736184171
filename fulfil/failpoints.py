"""Failpoints: named places in the money path where a test or a chaos run can make the process pause.

`FULFIL_FAILPOINTS="after_receipt=0.3"` (comma-separated `name=seconds`) makes `await pause("after_receipt")`
sleep that long, so that a kill -9 from outside lands inside a window that is otherwise microseconds wide.
Unset (always, in production) a pause is a dictionary lookup. Read once, at import.
"""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger("fulfil.failpoints")

ENV = "FULFIL_FAILPOINTS"


def parse(text: str) -> dict[str, float]:
    """`name=seconds,...` -> {name: seconds}; a malformed entry is refused naming it."""
    points: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not sep or not name.strip() or not 0 <= seconds <= 60:
            raise ValueError(f"{ENV}: {part!r} is not name=seconds (0-60)")
        points[name.strip()] = seconds
    return points


_POINTS = parse(os.environ.get(ENV, ""))
if _POINTS:
    log.warning("failpoints.enabled", extra={"points": _POINTS})


async def pause(name: str) -> None:
    seconds = _POINTS.get(name)
    if seconds:
        await asyncio.sleep(seconds)
