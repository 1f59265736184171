"""The storage error hierarchy: one base, a few precise kinds the engine and the CLI decide on."""

from __future__ import annotations

from collections.abc import Iterable


class StoreError(Exception):
    """The database refused or failed an operation."""


class SchemaOutOfDate(StoreError):
    """The database schema is not the one this fulfil needs: run `fulfil db upgrade`."""


class LeaseLost(StoreError):
    """This worker no longer holds the order's lease; nothing was written."""


class NotFound(StoreError):
    """No such order, attempt or claim."""


class InvalidTransition(StoreError):
    """The record is not in a state that allows this move."""


class Conflict(StoreError):
    """A uniqueness or reference constraint refused the write; nothing was written."""


class DuplicateCard(StoreError):
    """A card key was delivered before (or twice in one batch); nothing was written."""

    def __init__(self, fingerprints: Iterable[str]) -> None:
        self.fingerprints = frozenset(fingerprints)
        # Fingerprints are keyed hashes, safe to show; a prefix is enough to find the row.
        shown = ", ".join(sorted(fp[:12] for fp in self.fingerprints))
        super().__init__(f"{len(self.fingerprints)} card key(s) already delivered: {shown}")
