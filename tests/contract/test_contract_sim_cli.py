"""The acceptance point "a run of `fulfil sim` with a scenario file, poked with curl, shows a signed answer and
the ledger", as a test: the installed `fulfil` command in a subprocess, poked over HTTP like curl would."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from suppliers import fulu_codec

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "config" / "scenarios" / "fulu-clean.yaml"
APP_KEY = "sim-fulu-app-key"  # the demo credentials in that file
SECRET = "0123456789abcdef0123456789abcdef"
READY = re.compile(r"^sim listening on (http://127\.0\.0\.1:\d+) protocol=fulu control=http://127\.0\.0\.1:\d+$")


@asynccontextmanager
async def fulfil_sim() -> AsyncIterator[str]:
    """`fulfil sim` as an operator runs it; yields its URL, stops it with SIGTERM and expects a clean exit."""
    command = Path(sys.executable).with_name("fulfil")
    assert command.exists(), f"the fulfil command is not installed next to {sys.executable}"
    proc = await asyncio.create_subprocess_exec(
        str(command), "sim", "--listen", "127.0.0.1:0", "--protocol", "fulu", "--scenario", str(SCENARIO),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(15):
            line = (await proc.stdout.readline()).decode().strip()
        match = READY.match(line)
        assert match is not None, line
        yield match.group(1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def call(http: httpx.AsyncClient, url: str, method: str, biz: dict[str, Any]) -> dict[str, Any]:
    """POST a signed envelope; the answer must carry a `sign` over `result` that verifies."""
    body = fulu_codec.envelope(APP_KEY, method, biz, SECRET, datetime.now(UTC))
    response = await http.post(
        url + "/api/getway", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert fulu_codec.verify_text(answer["result"], answer["sign"], SECRET), answer
    assert not fulu_codec.verify_text(answer["result"], answer["sign"], SECRET[::-1])
    return answer


@pytest.mark.slow  # a fresh interpreter
async def test_fulfil_sim_answers_signed_and_keeps_a_ledger() -> None:
    async with fulfil_sim() as url, httpx.AsyncClient(timeout=5) as http:
        biz = {"product_id": 10001, "customer_order_no": "CURL-0001", "buy_num": 2}
        added = await call(http, url, fulu_codec.METHOD_CARD_ADD, biz)
        assert (added["code"], json.loads(added["result"])["customer_order_no"]) == (0, "CURL-0001")

        info = await call(http, url, fulu_codec.METHOD_ORDER_INFO, {"customer_order_no": "CURL-0001"})
        order = json.loads(info["result"])
        assert (info["code"], order["order_state"], order["buy_num"]) == (0, "success", 2)
        keys = [fulu_codec.decrypt_card_field(card["card_pwd"], SECRET) for card in order["cards"]]
        assert len(keys) == 2 and all(re.fullmatch("[A-Z0-9]{16}", key) for key in keys)

        ledger = (await http.get(url + "/_sim/ledger")).json()
        [entry] = ledger["orders"]
        assert (entry["number"], entry["qty"], entry["state"], entry["charged"]) == ("CURL-0001", 2, "success", True)
        assert [card["password"] for card in entry["cards"]] == keys
        assert Decimal(ledger["balance"]) == Decimal("100000.00") - 2 * Decimal("95.00")
