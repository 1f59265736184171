"""Structured logging: one event per line, JSON by default, a readable text form for people.

Code logs events with stable names and context in `extra`::

    logger.info("order.delivered", extra={"ref": order.ref, "supplier": "shelf", "qty": 2})

The rule is that card keys and secrets are never passed to a log call. The formatters here add a defensive
second line: any `extra` field (at any depth) whose name says it is sensitive is printed as `<redacted>`,
and a `Card` never prints its contents.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Final, Literal, TextIO

from suppliers.taxonomy import Card

LogFormat = Literal["json", "text"]
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

REDACTED = "<redacted>"
# Field names that must never be printed, whatever their value; also matched as a suffix (`fulu_secret`).
SENSITIVE_FIELDS = frozenset(
    {"password", "secret", "app_key", "card", "cards", "sign", "card_key", "token", "authorization", "contact"}
)
# Our own packages log at the chosen level; third-party loggers stay at WARNING so that, e.g., an HTTP
# client's debug lines (URLs, bodies with signatures) never reach the journal.
OWN_LOGGERS = ("fulfil", "suppliers")

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


@functools.lru_cache(maxsize=1024)
def is_sensitive(name: str) -> bool:
    # Cached: log calls use a few dozen field names, asked about on every line.
    lowered = name.lower()
    return lowered in SENSITIVE_FIELDS or any(lowered.endswith("_" + field) for field in SENSITIVE_FIELDS)


# Values printed as they are: checked by exact type first, before the (slower) ABC checks below.
_PLAIN: Final = frozenset({str, int, float, bool, type(None)})


def redact(value: Any) -> Any:
    """A copy of `value` safe to print: sensitive keys blanked at any depth, cards never shown."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Card):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_sensitive(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    return value


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra` fields of a record, redacted."""
    fields = {key: value for key, value in vars(record).items() if key not in _RECORD_ATTRS}
    return redact(fields)  # type: ignore[no-any-return]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal | Enum):
        return str(value.value if isinstance(value, Enum) else value)
    return str(value)


_second: tuple[int, str] = (-1, "")  # the last second formatted: most lines share it with the one before


def _timestamp(record: logging.LogRecord) -> str:
    """`2026-12-05T23:30:46.716Z` (UTC, milliseconds)."""
    global _second
    # As datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds") stamps it: the instant rounded
    # to the microsecond (half to even, which may carry into the next second), then cut to the millisecond.
    # Not record.msecs: that cuts the float directly, a millisecond early in about one line in 2,000.
    whole = int(record.created)
    micros = round((record.created - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    second, prefix = _second
    if whole != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, prefix)  # one assignment: a thread reads the old pair or the new one, never a mix
    return f"{prefix}.{micros // 1000:03d}Z"


_LINE = json.JSONEncoder(default=_json_default, ensure_ascii=False)  # one for every line, not one per line


class JsonFormatter(logging.Formatter):
    """`{"ts": ..., "level": "info", "event": "order.delivered", "logger": ..., <extra fields>}`"""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        for key, value in record_fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _LINE.encode(line)


class TextFormatter(logging.Formatter):
    """`2026-11-21T10:00:00.000Z INFO  order.delivered ref=R1 qty=2` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}", record.getMessage()]
        for key, value in record_fields(record).items():
            text = value if isinstance(value, str) else json.dumps(value, default=_json_default)
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def make_handler(fmt: LogFormat = "json", stream: TextIO | None = None) -> logging.Handler:
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._fulfil = True  # type: ignore[attr-defined]  # so a second setup replaces, not duplicates
    return handler


def setup_logging(fmt: LogFormat = "json", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Install one handler on the root logger (replacing ours from an earlier call)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (use {' or '.join(LOG_FORMATS)})")
    # Neither format prints where a call was made, nor the thread or process: the logging HOWTO's
    # "Optimization" switches, which save the stack walk made for every record (a sixth of a line's CPU).
    logging._srcfile = None  # noqa: SLF001
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_fulfil", False)]:
        root.removeHandler(old)
    root.addHandler(make_handler(fmt, stream))
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())
    # A periodic job skipped because its previous run is still going is by design (the next tick catches
    # up); APScheduler says so at WARNING on every tick, which would drown the journal.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
