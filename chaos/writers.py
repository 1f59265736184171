"""CLI writers: what operators and the shop do to the database while the daemons work, as real `fulfil`
commands — more orders imported (`fulfil orders import`), orders in review retried or refunded (`fulfil
review retry/refund`). On SQLite every one of them is a writer competing with the daemon for the lock.

The sequence of actions is drawn from the run's seed; only their timing depends on the machine.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.procs import CommandResult, run_fulfil

# A refusal an operator can meet when the order moved on between the list and the action: not a failure.
_EXPECTED_REFUSALS = ("not in review",)
# What a command meets while PostgreSQL restarts: it fails and the writer tries again later (not a finding).
_SERVER_AWAY = ("connection", "server closed", "terminating", "the database system is", "could not connect")
MAX_RETRIES_PER_ORDER = 2


@dataclass
class WriterLog:
    counts: Counter[str] = field(default_factory=Counter)  # import_ok, retry_ok, refund_ok, refused, error
    errors: list[str] = field(default_factory=list)
    imported: set[str] = field(default_factory=set)  # refs fulfil took (accepted or already there)
    retried: Counter[str] = field(default_factory=Counter)
    refunded: list[str] = field(default_factory=list)

    def text(self) -> str:
        parts = [f"{k}:{v}" for k, v in sorted(self.counts.items())]
        return "/".join(parts) or "none"


class Writers:
    """A thread running CLI commands against the run's config until told to stop."""

    def __init__(
        self, config: Path, env: Mapping[str, str], chunks: Sequence[Sequence[Mapping[str, Any]]], seed: int,
        workdir: Path, *, review_actions: bool, gap: tuple[float, float] = (0.3, 1.5), server_restarts: bool = False,
    ) -> None:
        self.config, self.env, self.workdir = config, env, workdir
        self.pending_chunks = [list(c) for c in chunks]
        self.rng = random.Random(seed)
        self.review_actions = review_actions
        self.gap = gap
        self.server_restarts = server_restarts  # PostgreSQL is restarted during the run
        self.log = WriterLog()
        self.cli_log = workdir / "cli.log"  # the commands' log lines (stderr), scanned for secrets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-writers", daemon=True)
        self._lock = threading.Lock()
        self._files = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def all_imported(self) -> bool:
        with self._lock:
            return not self.pending_chunks

    def _loop(self) -> None:
        while not self._stop.wait(self.rng.uniform(*self.gap)):
            draw = self.rng.random()
            if self.pending_chunks and (draw < 0.6 or not self.review_actions):
                self.import_next()
            elif self.review_actions:
                self.review_action(self.rng.random())

    # --- the actions ----------------------------------------------------------------------------------

    def import_next(self) -> bool:
        """Import the next chunk; True when fulfil took every line (accepted now or before)."""
        with self._lock:
            if not self.pending_chunks:
                return True
            chunk = self.pending_chunks[0]
        self._files += 1
        path = self.workdir / f"import-{self._files:04d}.jsonl"
        path.write_text("".join(json.dumps(dict(o)) + "\n" for o in chunk), encoding="utf-8")
        result = run_fulfil("orders", "import", str(path), "--json", config=self.config, env=self.env,
                            log=self.cli_log)
        if result.returncode != 0:
            self._error(result)
            return False
        summary = result.json()
        if summary.get("rejected"):
            self._error(result, f"lines rejected: {summary.get('rejected')}")
            return False
        self.log.counts["import_ok"] += 1
        with self._lock:
            self.log.imported.update(o["ref"] for o in chunk)
            self.pending_chunks.pop(0)
        return True

    def flush(self, attempts: int = 20) -> None:
        """Import whatever is left (after the writer thread stopped)."""
        for _ in range(attempts):
            if self.all_imported():
                return
            self.import_next()

    def review_action(self, draw: float) -> None:
        listed = run_fulfil("review", "list", "--json", config=self.config, env=self.env,
                            log=self.cli_log)
        if listed.returncode != 0:
            self._error(listed)
            return
        candidates = sorted(v["ref"] for v in listed.json() if self.log.retried[v["ref"]] < MAX_RETRIES_PER_ORDER)
        if not candidates:
            self.log.counts["review_empty"] += 1
            return
        ref = candidates[int(draw * len(candidates))]
        action = "retry" if self.rng.random() < 0.6 else "refund"
        result = run_fulfil("review", action, ref, "--operator", "chaos", config=self.config, env=self.env,
                            log=self.cli_log)
        if result.returncode == 0:
            self.log.counts[f"{action}_ok"] += 1
            if action == "retry":
                self.log.retried[ref] += 1
            else:
                self.log.refunded.append(ref)
        elif any(text in result.stdout + result.stderr for text in _EXPECTED_REFUSALS):
            self.log.counts["refused"] += 1
        else:
            self._error(result)

    def _error(self, result: CommandResult, note: str = "") -> None:
        tail = (result.stderr.strip().splitlines() or [""])[-1][:300]
        if self.server_restarts and any(text in (result.stderr + result.stdout).lower() for text in _SERVER_AWAY):
            self.log.counts["db_away"] += 1
            return
        self.log.counts["error"] += 1
        self.log.errors.append(f"`fulfil {' '.join(result.args[:2])}` exit {result.returncode}: {note or tail}")
