"""What a send's outcome means for its outbox row and its channel: pure functions of (outcome, tries, schedule).

- 2xx: delivered.
- 410 Gone: the endpoint is disabled (an alert says so); the row waits, untried, for `fulfil webhooks enable`.
- 429, 502, 503, 504: the endpoint is slowed down: paused for Retry-After (or the next delay of the schedule)
  and the row retried no sooner.
- anything else (other statuses, redirects, which are never followed, timeouts, refused connections):
  retried on the schedule, with jitter, until the schedule is used up: then dead (a dead letter), listed by
  `fulfil webhooks deliveries --state dead` and replayable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal

SLOW_DOWN = frozenset({429, 502, 503, 504})
GONE = 410
MAX_RETRY_AFTER = 24 * 3600.0
JITTER = 0.2  # a delay d is drawn from [d(1-J), d(1+J)]: retries of many rows after an outage spread out


@dataclass(frozen=True)
class SendResult:
    """What one try saw; `status` None when no HTTP answer came (timeout, refused, reset)."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None
    skipped: bool = False  # nothing to send to (e.g. no e-mail address): done, not delivered
    permanent: bool = False  # refused for good (an SMTP 5xx for the recipient): dead at once, no retry
    body: str | None = field(default=None, repr=False)  # the start of the answer (robots answer errors in 200s)


@dataclass(frozen=True)
class Decision:
    state: Literal["delivered", "pending", "dead", "skipped"]
    delay: float = 0.0  # pending: seconds until the next try
    counts: bool = True  # the try counts against the schedule (a 410 does not)
    disable: bool = False  # the channel is disabled (410)
    pause: float = 0.0  # the channel sends nothing for this long (slow down)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at a day; None if absent/bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER)


def jittered(delay: float, rng: random.Random) -> float:
    return delay * rng.uniform(1 - JITTER, 1 + JITTER) if delay > 0 else 0.0


def decide(result: SendResult, tries_before: int, schedule: tuple[float, ...], rng: random.Random) -> Decision:
    """After a try: `tries_before` earlier tries of the row counted; `schedule[i]` is the wait before try i+1."""
    if result.skipped:
        return Decision("skipped")
    status = result.status
    if status is not None and 200 <= status < 300:
        return Decision("delivered")
    if status == GONE:
        return Decision("pending", delay=0.0, counts=False, disable=True)
    if result.permanent:
        return Decision("dead")
    tries = tries_before + 1
    if tries >= len(schedule):
        return Decision("dead")
    delay = jittered(schedule[tries], rng)
    pause = 0.0
    if status in SLOW_DOWN:
        wanted = result.retry_after if result.retry_after is not None else schedule[tries]
        pause = wanted
        delay = max(delay, wanted)
    elif result.retry_after is not None:
        delay = max(delay, result.retry_after)
    return Decision("pending", delay=delay, pause=pause)
