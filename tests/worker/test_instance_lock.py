"""One daemon per SQLite database: the lock, across real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fulfil.instance_lock import InstanceLock, InstanceLocked, lock_path_for

HOLDER = """
import sys
from pathlib import Path
from fulfil.instance_lock import InstanceLock
InstanceLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding the lock of tmp_path/fulfil.db."""
    path = tmp_path / "fulfil.db.lock"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc, path
        proc.kill()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/lib/fulfil/fulfil.db", "var/lib/fulfil/fulfil.db.lock"),
        ("sqlite:////var/lib/fulfil/fulfil.db", "/var/lib/fulfil/fulfil.db.lock"),
        ("sqlite+aiosqlite:////tmp/x.db?timeout=5", "/tmp/x.db.lock"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/test", None),
    ],
)
def test_lock_path_for(url: str, expected: str | None) -> None:
    assert lock_path_for(url) == (None if expected is None else Path(expected))


def test_a_second_process_is_refused_with_the_holders_pid(holder: tuple[subprocess.Popen[str], Path]) -> None:
    proc, path = holder

    with pytest.raises(InstanceLocked, match=rf"another fulfil daemon \(pid {proc.pid}\) is already running"):
        InstanceLock(path).acquire()


def test_the_kernel_drops_the_lock_of_a_killed_holder(holder: tuple[subprocess.Popen[str], Path]) -> None:
    proc, path = holder
    proc.kill()  # SIGKILL: no clean-up ran
    proc.wait()

    with InstanceLock(path):
        assert path.read_text().strip() == str(os.getpid())
    assert path.read_text() == ""  # released: no stale PID left to mislead the next refusal


def test_a_missing_database_directory_names_the_upgrade_command(tmp_path: Path) -> None:
    with pytest.raises(InstanceLocked, match="fulfil db upgrade"):
        InstanceLock(tmp_path / "nowhere" / "fulfil.db.lock").acquire()
