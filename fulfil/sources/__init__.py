"""Shop sources: fulfil beside a storefront's database, taking its paid orders and writing the keys back.

The public face: the plug-in interface (`Source` and the types it answers in), `build_source` for a configured
entry, and `SourceRunner`, the worker's side task that polls, takes and writes back with the two rules kept
across the two databases (see `fulfil.sources.runner` for how).
"""

from __future__ import annotations

from fulfil.sources.base import (
    Check,
    Examined,
    RowState,
    ShopOrder,
    ShopRefused,
    ShopUnavailable,
    Source,
    SourceError,
    Taken,
    WriteOutcome,
    Written,
)
from fulfil.sources.registry import build_source, source_class

__all__ = [
    "Check",
    "Examined",
    "RowState",
    "ShopOrder",
    "ShopRefused",
    "ShopUnavailable",
    "Source",
    "SourceError",
    "Taken",
    "WriteOutcome",
    "Written",
    "build_source",
    "source_class",
]
