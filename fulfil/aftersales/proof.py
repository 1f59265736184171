"""The buyer's proof and the limits on guessing it.

The proof of an order is its `contact` as intake took it (e-mail or phone), compared after trimming and case
folding, in constant time. Wrong proofs are counted per caller address and per order ref in token buckets
kept in this process's memory: right for one daemon; several daemons behind one storefront each keep their
own buckets (so a guesser gets `tries` per daemon, not per fleet).
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

# Compared when the order is unknown or has no contact, so that answer takes as long as a wrong proof.
_DECOY = b"\x00" * 32
MAX_PROOF = 256


def normalise(value: str) -> bytes:
    return value.strip().casefold().encode("utf-8", "surrogatepass")  # any text a request can carry


def proof_matches(given: str, contact: str | None) -> bool:
    """Constant time in the length of what is compared; an order without a contact matches nothing."""
    expected = normalise(contact) if contact else _DECOY
    ok = hmac.compare_digest(normalise(given), expected)
    return ok and contact is not None


class Buckets:
    """Token buckets by key: `tries` per `per` seconds, refilled continuously. Bounded: the least recently
    used keys are dropped past `size` (an address that stopped guessing has a full bucket anyway)."""

    def __init__(self, tries: int, per: float, *, size: int = 50_000, clock: Callable[[], float] = time.monotonic):
        self.tries = tries
        self.per = per
        self.size = size
        self._clock = clock
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str) -> float:
        now = self._clock()
        tokens, at = self._state.get(key, (float(self.tries), now))
        return min(float(self.tries), tokens + (now - at) * self.tries / self.per)

    def exhausted(self, key: str) -> bool:
        """No try left for `key` now (the caller refuses before looking at the proof)."""
        return self._level(key) < 1.0

    def spend(self, key: str) -> None:
        """A wrong proof from `key`."""
        self._state[key] = (self._level(key) - 1.0, self._clock())
        self._state.move_to_end(key)
        while len(self._state) > self.size:
            self._state.popitem(last=False)


class Guard:
    """Wrong-proof limits per caller address and per order ref (the ref as given, known or not)."""

    def __init__(self, tries: int, per: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_ip = Buckets(tries, per, clock=clock)
        self.by_ref = Buckets(tries, per, clock=clock)

    def refused(self, ip: str, ref: str) -> bool:
        return self.by_ip.exhausted(ip) or self.by_ref.exhausted(ref)

    def wrong(self, ip: str, ref: str) -> None:
        self.by_ip.spend(ip)
        self.by_ref.spend(ref)
