"""The simulator as a real process: `python -m suppliers.sim`, the ready line, signals, and `main(argv)`."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from simkit import FULU_SECRET

from suppliers import acg_faka_codec, fulu_codec
from suppliers.sim import main

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "config" / "scenarios"
READY = re.compile(r"^sim listening on (http://127\.0\.0\.1:\d+) protocol=(\w+) control=(http://\S+)$")
CLEAN_SECRET = "0123456789abcdef0123456789abcdef"  # config/scenarios/fulu-*.yaml


@asynccontextmanager
async def sim_process(*args: str) -> AsyncIterator[tuple[str, str, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "suppliers.sim", "--listen", "127.0.0.1:0", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(10):
            line = (await proc.stdout.readline()).decode().strip()
        match = READY.match(line)
        assert match is not None, line
        yield match.group(1), match.group(2), match.group(3)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await proc.communicate()
    assert proc.returncode == 0  # SIGTERM is a clean stop


async def test_fulu_process_answers_signed_requests() -> None:
    async with (
        sim_process("--protocol", "fulu", "--scenario", str(SCENARIOS / "fulu-clean.yaml")) as (
            url,
            protocol,
            _,
        ),
        httpx.AsyncClient() as http,
    ):
        assert protocol == "fulu"
        biz = {"product_id": 10001, "customer_order_no": "P-1", "buy_num": 1}
        now = datetime.now(UTC)
        body = fulu_codec.envelope("sim-fulu-app-key", fulu_codec.METHOD_CARD_ADD, biz, CLEAN_SECRET, now)
        answer = (await http.post(url + "/api/getway", json=body)).json()
        assert answer["code"] == 0 and fulu_codec.verify_text(answer["result"], answer["sign"], CLEAN_SECRET)
        assert not fulu_codec.verify_text(answer["result"], answer["sign"], FULU_SECRET)
        ledger = (await http.get(url + "/_sim/ledger")).json()
        assert [o["number"] for o in ledger["orders"]] == ["P-1"]


async def test_acg_process_trades() -> None:
    async with (
        sim_process("--scenario", str(SCENARIOS / "acg-clean.yaml")) as (url, protocol, _),
        httpx.AsyncClient() as http,
    ):
        assert protocol == "acg_faka"
        params = {"app_id": "10086", "shared_code": "steam-100", "num": "2", "request_no": "A-1"}
        form = acg_faka_codec.signed(params, "sim-acg-app-key")
        answer = (await http.post(url + "/shared/commodity/trade", data=form)).json()
        assert answer["code"] == 200 and len(answer["data"]["secret"].split("\n")) == 2


async def test_down_process_refuses_until_brought_back() -> None:
    async with (
        sim_process("--scenario", str(SCENARIOS / "fulu-down.yaml")) as (url, _, control),
        httpx.AsyncClient() as http,
    ):
        with pytest.raises(httpx.ConnectError):
            await http.post(url + "/api/getway", json={})
        assert (await http.get(control + "/_sim/status")).json()["refusing"] is True
        assert (await http.post(control + "/_sim/scenario", json={"faults": []})).status_code == 200
        assert (await http.get(control + "/_sim/status")).json()["refusing"] is False  # up when it answered
        answer = (await http.post(url + "/api/getway", json={})).json()
        assert answer["code"] == 1001  # up again: an empty envelope is answered, and refused properly


def test_main_refuses_an_invalid_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("protocol: fulu\napp_key: k\nsecret: s\nproducts: {1: {price: '1'}}\nfaults: [{kind: x}]\n")
    assert main(["--listen", "127.0.0.1:0", "--scenario", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "invalid scenario" in err
    assert f"{bad}: faults[0].kind: expected one of" in err and f"{bad}: secret: a fulu app secret" in err


def test_main_refuses_a_protocol_mismatch_and_a_bad_listen(capsys: pytest.CaptureFixture[str]) -> None:
    clean = str(SCENARIOS / "acg-clean.yaml")
    assert main(["--protocol", "fulu", "--scenario", clean]) == 1
    assert "protocol: the scenario is for 'acg_faka' but 'fulu' was asked for" in capsys.readouterr().err
    assert main(["--listen", "nowhere", "--scenario", clean]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
