"""Operator passwords (argon2id, argon2-cffi's defaults), generated one-time passwords, and the login limiter."""

from __future__ import annotations

import functools
import secrets
import time
from collections import deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
MIN_PASSWORD = 10
MAX_PASSWORD = 1024


@functools.cache
def _dummy() -> str:
    """A hash to verify against when the name is unknown, so a wrong name takes as long as a wrong password;
    made on first use, not at import (every CLI command would pay ~0.1 s for it)."""
    return _HASHER.hash(secrets.token_urlsafe(16))


class BadPassword(ValueError):
    """The password is not acceptable (too short, too long)."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadPassword(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadPassword(f"a password has at most {MAX_PASSWORD} characters")
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _dummy(), password[:MAX_PASSWORD]) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)


def generate_password() -> str:
    """Printed once by `fulfil operators add` without --password-stdin (and by `make demo`)."""
    return secrets.token_urlsafe(15)


class LoginLimiter:
    """At most `attempts` failed logins per key (client address, account name) in a sliding `window`.

    In memory, per daemon: a guesser spread over several daemons gets each one's allowance, which is still a
    few guesses a minute against an argon2 hash."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        found = self._failures.setdefault(key, deque())
        while found and found[0] <= now - self.window:
            found.popleft()
        return found

    def blocked(self, keys: list[str], now: float | None = None) -> bool:
        at = time.monotonic() if now is None else now
        return any(len(self._recent(key, at)) >= self.attempts for key in keys)

    def failed(self, keys: list[str], now: float | None = None) -> None:
        at = time.monotonic() if now is None else now
        for key in keys:
            self._recent(key, at).append(at)
        if len(self._failures) > 100_000:  # a flood of names: forget the quiet ones
            for key in [k for k, v in self._failures.items() if not v]:
                del self._failures[key]

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)
