"""Throughput of the supplier simulator, measured from outside as a real process.

    python -m benchmarks.sim_bench --requests 20000 --concurrency 100

Starts `python -m suppliers.sim` (fulu, no faults) as a subprocess, creates orders, then drives signed
`fulu.order.info.get` (default) or `fulu.order.card.add` requests from `--clients` processes over keep-alive
HTTP/1.1 connections, and prints requests/s. The client is a minimal asyncio HTTP/1.1 writer/reader (or
aiohttp with `--client aiohttp`) so that, on a small box, the measure is the server's and not the client's.
It also prints the server process's CPU time, so "requests per server CPU-second" shows the capacity even
when client and server share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from benchmarks.procs import cpu_seconds
from suppliers import fulu_codec

APP_KEY = "bench-app-key"
SECRET = "bench0123456789abcdef0123456789a"  # 32 characters
PRODUCT = 10001
READY = re.compile(r"sim listening on (http://\S+) protocol=(\S+)")

SCENARIO: dict[str, Any] = {
    "protocol": "fulu",
    "app_key": APP_KEY,
    "secret": SECRET,
    "balance": "1000000000",
    "products": {PRODUCT: {"name": "bench card", "kind": "card", "price": "1.00", "card_pattern": "[A-Z0-9]{16}"}},
    "faults": [],
}


def signed_body(method: str, biz: dict[str, Any]) -> bytes:
    envelope = fulu_codec.envelope(APP_KEY, method, biz, SECRET, datetime.now(UTC))
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def http_request(host: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST /api/getway HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def bodies(mode: str, count: int, client: int, seeded: int) -> list[bytes]:
    """Signed request bodies, made before the clock starts (signing is client work, not server work)."""
    if mode == "add":
        return [
            signed_body(
                fulu_codec.METHOD_CARD_ADD,
                {"product_id": PRODUCT, "customer_order_no": f"B{client}-{i}-{os.getpid()}", "buy_num": 1},
            )
            for i in range(count)
        ]
    return [
        signed_body(fulu_codec.METHOD_ORDER_INFO, {"customer_order_no": f"seed-{i % seeded}"}) for i in range(count)
    ]


# --- the raw keep-alive client ------------------------------------------------------------------------


async def _raw_worker(host: str, port: int, requests: list[bytes], latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    failures = 0
    try:
        for request in requests:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            body = await reader.readexactly(int(match.group(1)) if match else 0)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200") or b'"code":0,' not in body:
                failures += 1
    finally:
        writer.close()
    return failures


async def _aiohttp_worker(url: str, requests: list[bytes], latencies: list[float], session: Any) -> int:
    failures = 0
    for request in requests:
        body = request.split(b"\r\n\r\n", 1)[1]
        start = time.perf_counter()
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            data = await response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200 or b'"code":0,' not in data:
            failures += 1
    return failures


async def _drive(args: argparse.Namespace, requests: list[bytes], concurrency: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    shares = [requests[i::concurrency] for i in range(concurrency)]
    if args.client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            url = f"http://{args.host}:{args.port}/api/getway"
            results = await asyncio.gather(*(_aiohttp_worker(url, s, latencies, session) for s in shares))
    else:
        results = await asyncio.gather(*(_raw_worker(args.host, args.port, s, latencies) for s in shares))
    return sum(results), latencies


def _client(args: argparse.Namespace, index: int, count: int, concurrency: int, barrier: Any, out: Any) -> None:
    payloads = bodies(args.method, count, index, args.seed_orders)
    requests = [http_request(args.host, args.port, body) for body in payloads]
    barrier.wait()
    start = time.perf_counter()
    failures, latencies = asyncio.run(_drive(args, requests, concurrency))
    out.put((time.perf_counter() - start, len(latencies), failures, latencies))


# --- orchestration ------------------------------------------------------------------------------------


def _start_sim(scenario_path: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "suppliers.sim", "--listen", "127.0.0.1:0", "--scenario", scenario_path]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = READY.search(line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return proc, match.group(1)


async def _seed(host: str, port: int, count: int) -> None:
    """Orders for the queries to find (each query then returns one encrypted card)."""
    reader, writer = await asyncio.open_connection(host, port)
    for i in range(count):
        body = signed_body(
            fulu_codec.METHOD_CARD_ADD,
            {"product_id": PRODUCT, "customer_order_no": f"seed-{i}", "buy_num": 1},
        )
        writer.write(http_request(host, port, body))
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"(?i)content-length:\s*(\d+)", head)
        await reader.readexactly(int(match.group(1)) if match else 0)
    writer.close()


def run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(SCENARIO, handle, allow_unicode=True)
    proc, url = _start_sim(handle.name)
    try:
        args.host, args.port = url.removeprefix("http://").rsplit(":", 1)
        args.port = int(args.port)
        asyncio.run(_seed(args.host, args.port, args.seed_orders))
        cpu_before = cpu_seconds(proc.pid)
        per_client = [args.requests // args.clients + (i < args.requests % args.clients) for i in range(args.clients)]
        conc = [max(1, args.concurrency // args.clients) for _ in range(args.clients)]
        barrier = mp.Barrier(args.clients + 1)
        out: mp.Queue[tuple[float, int, int, list[float]]] = mp.Queue()
        workers = [
            mp.Process(target=_client, args=(args, i, per_client[i], conc[i], barrier, out))
            for i in range(args.clients)
        ]
        for worker in workers:
            worker.start()
        barrier.wait()
        wall_start = time.perf_counter()
        results = [out.get() for _ in workers]
        wall = time.perf_counter() - wall_start
        for worker in workers:
            worker.join()
        server_cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.unlink(handle.name)
    done = sum(r[1] for r in results)
    failures = sum(r[2] for r in results)
    latencies = sorted(x for r in results for x in r[3])
    return {
        "requests": done,
        "failures": failures,
        "seconds": wall,
        "rps": done / wall,
        "server_cpu": server_cpu,
        "rps_per_server_cpu": done / server_cpu if server_cpu else float("inf"),
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sim_bench", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100, help="connections in flight, over all clients")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--method", choices=("info", "add"), default="info", help="info.get (default) or card.add")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    parser.add_argument("--seed-orders", type=int, default=100, help="orders created for the queries to find")
    args = parser.parse_args(argv)
    r = run(args)
    print(
        f"sim_bench: fulu {args.method} requests={r['requests']:.0f} failures={r['failures']:.0f} "
        f"concurrency={args.concurrency} clients={args.clients} ({args.client})\n"
        f"  {r['rps']:.0f} req/s over {r['seconds']:.2f}s wall; "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms\n"
        f"  server CPU {r['server_cpu']:.2f}s: {r['rps_per_server_cpu']:.0f} requests per server CPU-second"
    )
    return 1 if r["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
