"""The top functions of a py-spy raw profile (collapsed stacks), by self and by total samples.

    python -m benchmarks.run --db sqlite --profile /tmp/daemon.txt     # py-spy record --format raw --threads
    python -m benchmarks.profile_top /tmp/daemon.txt --top 10          # Markdown tables
    python -m benchmarks.profile_top /tmp/daemon.txt --groups          # database, HTTP, engine, logging, loop

A frame is a function and its file (line numbers dropped, so a function counts once however many lines of
it were sampled); with `--threads` the outermost frame names the thread, and the share of samples per thread
is listed too. Percentages are of all samples (py-spy skips idle threads by default, so this is where CPU
went, the GIL's waiters aside).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")
_THREAD = re.compile(r"^thread \((\w+)\): (.*)$")
# Frames every sample passes through (the loop, thread bootstraps, the entry point): left out of "total".
_INFRA = re.compile(r"^<module>|\((asyncio/|threading\.py|runpy\.py|concurrent/|selectors\.py|click/|fulfil/cli/)")


def _frame(raw: str) -> str:
    """`handle (fulfil/engine.py:120)` -> `handle (fulfil/engine.py)`, site-packages paths shortened."""
    frame = _FRAME_LINE.sub(")", raw.strip())
    return re.sub(r"\(/\S*/site-packages/", "(", frame)


def analyse(path: Path) -> tuple[int, Counter[str], Counter[str], Counter[str], int]:
    """(all samples, self samples per frame, total samples per frame, samples per thread name, distinct
    threads). Thread names are grouped with their numbers blanked (`Thread-12 (run)` -> `Thread-N (run)`)."""
    total_samples = 0
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    thread_ids: set[str] = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        stack, count = match.group(1).split(";"), int(match.group(2))
        head = _THREAD.match(stack[0])
        if head is not None:  # `thread (1234): MainThread` with --threads
            stack[0] = head.group(2)
            thread_ids.add(head.group(1))
            threads[re.sub(r"\d+", "N", stack.pop(0))] += count
        if not stack:
            continue
        total_samples += count
        frames = [_frame(f) for f in stack]
        self_counts[frames[-1]] += count
        for frame in set(frames):
            total_counts[frame] += count
    return total_samples, self_counts, total_counts, threads, len(thread_ids)


# `--groups`: each sample goes to the first group one of whose markers is in its stack (README, PROFILE.md).
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging", ("Logger.info", "Logger._log", "Logger.debug", "Logger.warning")),
    ("HTTP to the supplier", ("FuluSupplier._call", "AcgFakaSupplier._call")),
    ("database: direct transactions", ("Direct.run", "_run_sqlite", "_run_postgresql")),
    (
        "database: through SQLAlchemy",
        ("greenlet_spawn", "AsyncConnection", "Engine.connect", "_ConnectionFairy", "Connection.execute", "aiosqlite"),
    ),
    ("the engine and the worker, outside calls", ("Worker.", "BatchLoader")),
)
OTHER = "the event loop and the rest"


def groups(path: Path) -> tuple[int, Counter[str]]:
    """Samples per group. A sample with no Python frame (the GIL held in C by a database thread) counts as
    database through SQLAlchemy: before the direct path those were aiosqlite's connection threads."""
    samples = 0
    counts: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        stack, count = match.group(1), int(match.group(2))
        samples += count
        if ";" not in stack and _THREAD.match(stack):
            counts[GROUPS[3][0]] += count
            continue
        name = next((name for name, markers in GROUPS if any(m in stack for m in markers)), OTHER)
        counts[name] += count
    return samples, counts


def table(title: str, counts: Counter[str], samples: int, top: int) -> str:
    rows = [f"| {title} | samples | share |", "|---|---:|---:|"]
    for frame, n in counts.most_common(top):
        rows.append(f"| `{frame}` | {n} | {100 * n / samples:.1f} % |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_top", description=summary)
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--groups", action="store_true", help="samples by group (database, HTTP, ...) only")
    args = parser.parse_args(argv)
    if args.groups:
        samples, counts = groups(args.profile)
        print("| group | share |\n|---|---:|")
        for name in [*(name for name, _ in GROUPS), OTHER]:
            print(f"| {name} | {100 * counts[name] / max(samples, 1):.0f} % |")
        return 0 if samples else 1
    samples, self_counts, total_counts, threads, thread_count = analyse(args.profile)
    if not samples:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{samples} samples\n")
    print(table("by self time", self_counts, samples, args.top) + "\n")
    own = Counter({frame: n for frame, n in total_counts.items() if not _INFRA.search(frame)})
    print(table("by total time (event loop, threading and entry frames left out)", own, samples, args.top) + "\n")
    if threads:
        print(f"{thread_count} distinct threads sampled\n")
        print(table("thread", threads, sum(threads.values()), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
