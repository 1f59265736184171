"""benchmarks.profile_top reads py-spy's raw (collapsed) stacks: top frames, and samples by group."""

from __future__ import annotations

from pathlib import Path

from benchmarks import profile_top

RAW = """\
thread (1): MainThread;Worker._process (fulfil/worker.py:10);FuluSupplier._call (suppliers/fulu.py:3);post (h.py:5) 6
thread (1): MainThread;Worker._process (fulfil/worker.py:10);Direct.run (fulfil/storage/direct.py:9) 2
thread (1): MainThread;Worker._poll (fulfil/worker.py:20);greenlet_spawn (sqlalchemy/util/concurrency.py:1) 1
thread (7): Thread-3 (_connection_worker_thread) 1
thread (1): MainThread;Worker._process (fulfil/worker.py:10);Logger.info (logging/__init__.py:1) 1
thread (1): MainThread;BaseEventLoop._run_once (asyncio/base_events.py:1) 1
"""


def test_samples_by_group(tmp_path: Path) -> None:
    path = tmp_path / "raw.txt"
    path.write_text(RAW, encoding="utf-8")
    samples, counts = profile_top.groups(path)
    assert samples == 12
    assert counts == {
        "HTTP to the supplier": 6,
        "database: direct transactions": 2,
        "database: through SQLAlchemy": 2,  # greenlet_spawn, and a thread holding the GIL in C
        "logging": 1,
        "the event loop and the rest": 1,
    }


def test_top_frames_by_self_and_total(tmp_path: Path) -> None:
    path = tmp_path / "raw.txt"
    path.write_text(RAW, encoding="utf-8")
    samples, self_counts, total_counts, threads, distinct = profile_top.analyse(path)
    assert samples == 11  # the C-only sample has no frame left once its thread is taken off
    assert self_counts["post (h.py)"] == 6
    assert total_counts["Worker._process (fulfil/worker.py)"] == 9
    assert threads == {"MainThread": 11, "Thread-N (_connection_worker_thread)": 1} and distinct == 2
