"""From a source's configuration entry to its adapter, as `suppliers.registry` does for suppliers.

Built-in types are imported lazily, by name; other types come from installed packages through the
`fulfil.sources` entry-point group (the built-in table wins, so a stray plug-in cannot replace one).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Final

from fulfil.config import SourceConfig
from fulfil.sources.base import Source, SourceError

ENTRY_POINT_GROUP: Final = "fulfil.sources"

BUILTIN: Final[Mapping[str, str]] = {
    "dujiaoka": "fulfil.sources.dujiaoka:DujiaokaSource",
    "acg_faka_shop": "fulfil.sources.acg_faka_shop:AcgFakaShopSource",
}


def _checked(loaded: object, kind: str, spec: str) -> type[Source]:
    if not (isinstance(loaded, type) and issubclass(loaded, Source)):
        raise SourceError(f"source type {kind!r}: {spec} is not a Source subclass")
    return loaded


def _plugin(kind: str) -> EntryPoint | None:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    return found[0] if found else None


def source_class(kind: str) -> type[Source]:
    """The adapter class for a source type; SourceError naming the type when there is none."""
    if kind in BUILTIN:
        spec = BUILTIN[kind]
        module_name, _, attr = spec.partition(":")
        try:
            return _checked(getattr(importlib.import_module(module_name), attr), kind, spec)
        except (ImportError, AttributeError) as exc:
            raise SourceError(f"source type {kind!r}: cannot load {spec} ({exc})") from exc
    ep = _plugin(kind)
    if ep is None:
        known = sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        raise SourceError(f"unknown source type {kind!r} (known: {', '.join(known)})")
    try:
        loaded = ep.load()
    except Exception as exc:  # a broken plug-in must name itself, whatever it raised on import
        raise SourceError(f"source type {kind!r}: cannot load {ep.value} ({exc})") from exc
    return _checked(loaded, kind, ep.value)


def build_source(config: SourceConfig) -> Source:
    """The adapter for one configured source (no connection is opened until it is used)."""
    return source_class(config.type)(config)
