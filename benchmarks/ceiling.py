"""The bare-client ceiling: what the daemon's HTTP stack can do against the simulator with no daemon around it.

A plain asyncio client does signed Fulu purchase + query pairs (`fulu.order.card.add`, then
`fulu.order.info.get` for the same number) at a given concurrency, through exactly the client the daemon
builds for a supplier: `suppliers.http.make_client` (httpx over httpx-aiohttp's transport) and
`suppliers.http.post`, with `suppliers.fulu_codec` signing every request. It parses each answer and checks
the purchase was accepted and the query found it delivered; nothing is written anywhere.

    python -m benchmarks.ceiling --pairs 3000 --concurrency 64      # starts its own simulator

`daemon_bench` runs it against the simulator the daemon used, in the same run, for the daemon/ceiling ratio;
`pair_latency` times pairs one after another on an idle simulator (the supplier's own time per order).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from suppliers import fulu_codec
from suppliers.http import MAX_RESPONSE_BYTES, HttpSettings, make_client, post


@dataclass(frozen=True)
class Supplier:
    """Where and as whom the client buys."""

    url: str  # the gateway: http://host:port/api/getway
    app_key: str
    secret: str
    product_id: int


@dataclass(frozen=True)
class CeilingResult:
    pairs: int
    failures: int
    concurrency: int
    seconds: float
    pairs_per_s: float
    client_cpu_ms_per_pair: float
    pair_p50_ms: float
    pair_p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def pooled(cls, runs: Sequence[CeilingResult]) -> CeilingResult:
        """Several runs as one: pairs over seconds of them all (a run before the daemons and one after, so a
        machine whose speed drifts during a configuration is not measured at one end only). Latencies: the
        runs' mean p50 and their worst p99."""
        pairs = sum(r.pairs for r in runs)
        seconds = sum(r.seconds for r in runs)
        return cls(
            pairs=pairs,
            failures=sum(r.failures for r in runs),
            concurrency=runs[0].concurrency,
            seconds=seconds,
            pairs_per_s=pairs / seconds if seconds else 0.0,
            client_cpu_ms_per_pair=sum(r.client_cpu_ms_per_pair * r.pairs for r in runs) / pairs if pairs else 0.0,
            pair_p50_ms=statistics.fmean(r.pair_p50_ms for r in runs),
            pair_p99_ms=max(r.pair_p99_ms for r in runs),
        )


async def _call(client: Any, supplier: Supplier, method: str, biz: dict[str, Any]) -> dict[str, Any]:
    body = fulu_codec.envelope(supplier.app_key, method, biz, supplier.secret, datetime.now(UTC))
    answer = await post(client, supplier.url, max_bytes=MAX_RESPONSE_BYTES, json=body)
    data = json.loads(answer.body)
    if answer.status_code != 200 or not isinstance(data, dict):
        raise RuntimeError(f"{method}: HTTP {answer.status_code}")
    return data


async def _pair(client: Any, supplier: Supplier, number: str) -> bool:
    """One purchase and its query; True when bought and delivered."""
    added = await _call(
        client,
        supplier,
        fulu_codec.METHOD_CARD_ADD,
        {"product_id": supplier.product_id, "customer_order_no": number, "buy_num": 1},
    )
    if added.get("code") != fulu_codec.CODE_OK:
        return False
    queried = await _call(client, supplier, fulu_codec.METHOD_ORDER_INFO, {"customer_order_no": number})
    result = queried.get("result")
    order = json.loads(result) if isinstance(result, str) else result
    delivered = isinstance(order, dict) and order.get("order_state") == "success"
    return queried.get("code") == fulu_codec.CODE_OK and delivered


async def _drive(supplier: Supplier, pairs: int, concurrency: int, prefix: str) -> CeilingResult:
    client = make_client(HttpSettings(max_concurrency=concurrency, timeout=10.0, connect_timeout=3.0))
    counter = itertools.count()
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while (i := next(counter)) < pairs:
            start = time.perf_counter()
            try:
                ok = await _pair(client, supplier, f"{prefix}{i}")
            except Exception:  # noqa: BLE001 - a benchmark counts failures, it does not stop on one
                ok = False
            latencies.append(time.perf_counter() - start)
            failures += not ok

    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        await client.aclose()
    latencies.sort()
    return CeilingResult(
        pairs=pairs,
        failures=failures,
        concurrency=concurrency,
        seconds=wall,
        pairs_per_s=pairs / wall if wall else 0.0,
        client_cpu_ms_per_pair=cpu * 1000 / pairs if pairs else 0.0,
        pair_p50_ms=_quantile(latencies, 0.50) * 1000,
        pair_p99_ms=_quantile(latencies, 0.99) * 1000,
    )


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def ceiling(supplier: Supplier, pairs: int, concurrency: int) -> CeilingResult:
    """Pairs/s at `concurrency` (new numbers, so every pair is a real purchase on the simulator)."""
    prefix = f"CEIL{os.getpid()}-{time.time_ns() % 10**9}-"
    return asyncio.run(_drive(supplier, pairs, concurrency, prefix))


def pair_latency(supplier: Supplier, pairs: int = 100) -> dict[str, float]:
    """One pair at a time on an otherwise idle simulator: the supplier's own time per order, as the daemon's
    HTTP stack sees it (p50/p95/p99 ms)."""
    prefix = f"SEQ{os.getpid()}-{time.time_ns() % 10**9}-"
    result = asyncio.run(_sequential(supplier, pairs, prefix))
    return result


async def _sequential(supplier: Supplier, pairs: int, prefix: str) -> dict[str, float]:
    client = make_client(HttpSettings(max_concurrency=1, timeout=10.0, connect_timeout=3.0))
    times: list[float] = []
    try:
        for i in range(pairs + 5):
            start = time.perf_counter()
            await _pair(client, supplier, f"{prefix}{i}")
            if i >= 5:  # the first few open the connection and warm up
                times.append(time.perf_counter() - start)
    finally:
        await client.aclose()
    times.sort()
    return {
        "pairs": float(pairs),
        "p50_ms": _quantile(times, 0.50) * 1000,
        "p95_ms": _quantile(times, 0.95) * 1000,
        "p99_ms": _quantile(times, 0.99) * 1000,
        "mean_ms": statistics.fmean(times) * 1000 if times else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks import procs

    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    with procs.Workdir(keep=False) as work:
        sim = procs.start_sim(work.path)
        try:
            result = ceiling(sim.supplier, args.pairs, args.concurrency)
            seq = pair_latency(sim.supplier)
        finally:
            sim.stop()
    print(
        f"ceiling: {result.pairs_per_s:.0f} pairs/s at concurrency {result.concurrency} "
        f"({result.pairs} pairs, {result.failures} failed, client CPU {result.client_cpu_ms_per_pair:.2f} ms/pair); "
        f"one pair at a time: p50 {seq['p50_ms']:.1f} ms, p99 {seq['p99_ms']:.1f} ms"
    )
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
