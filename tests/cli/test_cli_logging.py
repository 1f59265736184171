"""What the CLI logs: JSON lines by default, text on request, and never a card key."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.cli.conftest import Env

KEYS = ("AAAABBBBCCCCDDDD", "EEEEFFFFGGGGHHHH", "0000111122223333", "IIIIJJJJKKKKLLLL")


def test_logs_are_json_lines_on_stderr_by_default(env: Env) -> None:
    result = env.cli("orders", "add", "--ref", "G1", "--sku", "steam-100", "--qty", "1")
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (added,) = [e for e in events if e["event"] == "order.added"]
    assert added["ref"] == "G1" and added["level"] == "info" and added["ts"].endswith("Z")
    assert "order.added" not in result.stdout  # stdout stays the command's own output


def test_text_format_and_level(env: Env) -> None:
    result = env.cli(
        "--log-format", "text", "orders", "add", "--ref", "G2", "--sku", "steam-100", "--qty", "1"
    )
    assert " INFO    order.added ref=G2 sku=steam-100 qty=1" in result.stderr
    quiet = env.cli(
        "--log-level", "warning", "orders", "add", "--ref", "G3", "--sku", "steam-100", "--qty", "1"
    )
    assert "order.added" not in quiet.stderr


def test_no_card_key_reaches_any_log_line(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stock = env.write("stock.txt", f"{KEYS[0]}\n{KEYS[2]},{KEYS[1]}\n")
    assert env.cli("orders", "add", "--ref", "N1", "--sku", "steam-100", "--qty", "1").exit_code == 0
    env.put_in_review("N1")
    hand = env.write("hand.txt", f"{KEYS[3]}\n")

    stderr = ""
    for args in (
        ("stock", "import", "steam-100", str(stock)),
        ("stock", "list"),
        ("review", "resolve", "N1", "--cards", str(hand), "--operator", "ops"),
        ("orders", "show", "N1", "--reveal"),
        ("orders", "show", "N1", "--json", "--reveal"),
        ("orders", "list", "--json", "--reveal"),
    ):
        result = env.cli("--log-level", "debug", *args)
        assert result.exit_code == 0, result.output
        stderr += result.stderr
    assert KEYS[3] in result.stdout  # --reveal does show keys, on stdout, to the operator who asked

    logged = stderr + "\n".join(
        r.getMessage() + json.dumps({k: str(v) for k, v in vars(r).items()}) for r in caplog.records
    )
    assert "review.resolve" in logged and "cards.revealed" in logged and "stock.imported" in logged
    for key in KEYS:
        assert key not in logged
