"""One daemon per SQLite database.

SQLite serialises writers, and two daemons on one file would only fight over the write lock, so the
second refuses to start. The lock is an exclusive `flock` on "<database>.lock", which the kernel drops
when the holder dies (even by `kill -9`), so a crash never leaves a stale lock behind; the holder's PID is
written into the file only to name it in the refusal. PostgreSQL needs no lock: several daemons share it
through row locks.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class InstanceLocked(Exception):
    """Another fulfil daemon already runs on this database."""


def lock_path_for(url: str) -> Path | None:
    """The lock file ("<database>.lock") of a SQLite URL; None for PostgreSQL and in-memory SQLite."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] != "sqlite":
        return None
    # sqlite:///relative.db and sqlite:////absolute.db: the path starts after the third slash.
    database = rest.removeprefix("/").split("?", 1)[0]
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database + ".lock")


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise InstanceLocked naming the PID that holds it."""
        if not self.path.parent.is_dir():
            raise InstanceLocked(
                f"the database directory {self.path.parent} does not exist (create the database with "
                "`fulfil db upgrade`)"
            )
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise InstanceLocked(
                f"another fulfil daemon (pid {holder}) is already running on this database "
                f"(lock {self.path}); stop it first, or use PostgreSQL to run several daemons"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Empty the file before unlocking so nobody reads a PID that no longer holds it.
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
