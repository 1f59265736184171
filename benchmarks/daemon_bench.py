"""One benchmark configuration: real `fulfil run` daemons against the simulator, measured from outside.

The phases, in one run and against one simulator process:

1. **Throughput.** The daemons start on an empty, migrated database and report `worker.ready`; then
   `fulfil orders import` takes N paid orders (qty 1, one Fulu offer) in one go. The window runs from the
   first `worker.claimed` log event to the last order's `delivered_at`. Over the same window (from just before
   the import to the last delivery): daemon CPU (utime+stime from /proc/<pid>/stat, children excluded),
   SQL statements, transactions and new connections (the FULFIL_SQL_COUNT hook of
   fulfil/storage/database.py, snapshots written by each daemon every 0.2 s; see `_sql_window`), and the
   simulator's request count.
2. **Latency.** Orders arrive through `POST /orders` on the daemons' admin HTTP (round robin) at a fixed rate
   below capacity; payment-to-delivery is each order's `delivered_at - created_at`, read back from the
   database at the end, with a breakdown from its attempt (created -> attempt started -> sent -> finished ->
   delivered). The same counters are taken over this phase too.
3. **Ceiling.** Before the daemons start and again once they stopped (their peak RSS, VmHWM, read just before),
   `benchmarks.ceiling` drives signed purchase + query pairs at the daemon's concurrency against the same
   simulator; the ratio's ceiling is the two pooled (this machine's speed drifts by 10-30 % within minutes, and
   one reading at one end of a configuration moved the ratio as much as a change to the daemon). Then it times
   pairs one at a time: the supplier's own time per order as the daemon's HTTP stack sees it, which the
   latency's overhead is measured against (the simulator's request log has arrival times only, not the
   time it spent on a request).

On PostgreSQL each configuration gets a database of its own (created and dropped here), and
`pg_stat_database` is read before the daemons start and after they stopped: transactions and sessions over
the daemons' whole life (startup, both phases and shutdown), a cross-check of the hook's figures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks import ceiling, procs
from benchmarks.receiver import Receiver
from fulfil.crypto import CardCipher, load_card_key

SQL_FIELDS = ("statement", "begin", "commit", "rollback", "connect", "connect_direct", "checkout", "groups", "grouped")


@dataclass(frozen=True)
class BenchConfig:
    db: str  # "sqlite" | "pg"
    daemons: int = 1
    orders: int = 3000
    rate: float = 20.0  # orders/s in the latency phase
    duration: float = 20.0  # seconds of the latency phase
    ceiling_pairs: int | None = None  # None: as many as orders
    settings: procs.DaemonSettings = procs.DaemonSettings()
    pg_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    profile: Path | None = None  # py-spy raw output of daemon 0 over the throughput phase
    profile_gil: bool = False  # py-spy --gil: only the thread holding the GIL (Python's own CPU)
    keep: bool = False
    webhook: bool = False  # one webhook endpoint (events order.*) on a loopback receiver

    @property
    def name(self) -> str:
        return f"{self.db}/{self.daemons}" + ("+hook" if self.webhook else "")


@dataclass
class _Snapshot:
    at: float  # time.time()
    cpu: list[float]
    sys_cpu: list[float]  # the kernel's part of `cpu`
    sql: list[dict[str, Any]]
    sim_requests: int
    sim_cpu: float  # the simulator process
    db_cpu: float  # PostgreSQL's server processes (0 on SQLite: inside the daemon)
    machine_busy: float  # every process on every core
    loop: list[tuple[float, float]]  # each daemon's main thread: seconds on a core, seconds waiting for one


def run(config: BenchConfig) -> dict[str, Any]:
    if config.db == "sqlite" and config.daemons != 1:
        raise ValueError("SQLite takes one daemon per database (a second one refuses to start)")
    if config.webhook:
        with Receiver() as receiver:
            settings = dataclasses.replace(config.settings, notify=receiver.notify_section())
            result = run(dataclasses.replace(config, webhook=False, settings=settings))
            result["config"] = config.name
            # Received once the run is over: the daemons stop after their dispatchers sent what they had.
            result["webhook"] = {"requests": receiver.received, "events": len(receiver.ids)}
            return result
    with procs.Workdir(config.keep) as work:
        sim = procs.start_sim(work.path)
        pg = procs.PgDatabase(config.pg_url) if config.db == "pg" else None
        try:
            db_url = pg.url if pg is not None else f"sqlite:///{work.path / 'fulfil.db'}"
            return _run(config, work.path, sim, db_url, pg)
        finally:
            sim.stop()
            if pg is not None:
                pg.drop()


def _run(
    config: BenchConfig, directory: Path, sim: procs.Sim, db_url: str, pg: procs.PgDatabase | None
) -> dict[str, Any]:
    env = procs.base_env()
    configs = [
        procs.write_config(directory / f"fulfil-{i}.yaml", db_url, sim, procs.free_port(), config.settings)
        for i in range(config.daemons)
    ]
    procs.fulfil("db", "upgrade", config=configs[0], env=env)
    pairs, concurrency = config.ceiling_pairs or config.orders, config.settings.concurrency
    top_before = ceiling.ceiling(sim.supplier, pairs, concurrency)
    pg_before = pg.stats() if pg is not None else None
    daemons: list[procs.Daemon] = []
    try:
        for i, path in enumerate(configs):
            port = int(yaml.safe_load(path.read_text())["http"]["listen"].rsplit(":", 1)[1])
            daemons.append(procs.start_daemon(path, env, i, port))
        load_before = procs.loadavg()
        throughput = _throughput_phase(config, directory, configs[0], env, daemons, sim)
        latency = _latency_phase(config, env, daemons, sim)
        rss = [procs.peak_rss_mb(d.pid) for d in daemons]
        load_after = procs.loadavg()
    finally:
        codes = [d.stop() for d in daemons]
    pg_life = None
    if pg is not None and pg_before is not None:
        time.sleep(1.0)  # exited backends have flushed their statistics
        after = pg.stats()
        pg_life = {k: after[k] - pg_before[k] for k in after}
    views = _read_orders(db_url, env)
    top_after = ceiling.ceiling(sim.supplier, pairs, concurrency)
    supplier_time = ceiling.pair_latency(sim.supplier)
    tops = [top_before, top_after]
    loads = (load_before, load_after)
    return _report(config, throughput, latency, views, rss, codes, tops, supplier_time, pg_life, *loads)


# --- phases -------------------------------------------------------------------------------------------


def _snapshot(daemons: Sequence[procs.Daemon], sim: procs.Sim, db: str, settle: float = 0.5) -> _Snapshot:
    """Counters of every daemon; `settle` lets the hook's 0.2 s writer catch up with a quiet daemon."""
    time.sleep(settle)
    at = time.time()
    loop = [procs.loop_sched(d.pid) for d in daemons]  # beside `at`: the loop shares are per second of wall time
    split = [procs.cpu_split(d.pid) for d in daemons]  # one read of /proc per daemon: both figures of one moment
    return _Snapshot(
        at=at,
        cpu=[user + system for user, system in split],
        sys_cpu=[system for _, system in split],
        sql=[d.sql_counts() for d in daemons],
        sim_requests=sim.request_count(),
        sim_cpu=procs.cpu_seconds(sim.proc.pid),
        db_cpu=procs.postgres_cpu_seconds() if db == "pg" else 0.0,
        machine_busy=procs.machine_busy_seconds(),
        loop=loop,
    )


def _wait_delivered(daemons: Sequence[procs.Daemon], total: int, timeout: float) -> None:
    """Until the daemons logged `order.delivered` `total` times in all."""
    deadline = time.monotonic() + timeout
    while True:
        for daemon in daemons:
            daemon.read_log()
        if sum(d.count("order.delivered") for d in daemons) >= total:
            return
        dead = [d for d in daemons if not d.alive()]
        if dead:
            raise RuntimeError(f"a daemon exited during the run:\n{dead[0].tail()}")
        if time.monotonic() > deadline:
            done = sum(d.count("order.delivered") for d in daemons)
            raise RuntimeError(f"only {done} of {total} orders delivered within {timeout:.0f}s")
        time.sleep(0.1)


def _throughput_phase(
    config: BenchConfig,
    directory: Path,
    config_path: Path,
    env: dict[str, str],
    daemons: Sequence[procs.Daemon],
    sim: procs.Sim,
) -> dict[str, Any]:
    orders = directory / "orders.jsonl"
    with orders.open("w", encoding="utf-8") as handle:
        for i in range(config.orders):
            handle.write(json.dumps({"ref": f"T{i:07d}", "sku": procs.SKU, "qty": 1, "amount": "1.00"}) + "\n")
    profiler = _start_profiler(config.profile, daemons[0].pid, config.profile_gil) if config.profile else None
    before = _snapshot(daemons, sim, config.db)
    import_start = time.time()
    procs.fulfil("orders", "import", str(orders), config=config_path, env=env)
    import_end = time.time()
    # From here the daemons drain the backlog with nothing else running: the bounds' per-order costs.
    for daemon in daemons:
        daemon.read_log()
    drain_from = sum(d.count("order.delivered") for d in daemons)
    drain = _snapshot(daemons, sim, config.db, settle=0.0)
    try:
        _wait_delivered(daemons, config.orders, timeout=max(180.0, config.orders / 2))
        done = _snapshot(daemons, sim, config.db, settle=0.0)  # the loops' shares end here, not 0.5 s idle later
    finally:
        if profiler is not None:
            _stop_profiler(profiler)
    after = _snapshot(daemons, sim, config.db)
    claims = sorted(ts for d in daemons for ts in d.events.get("worker.claimed", ()) if ts.timestamp() >= import_start)
    return {
        "before": before,
        "after": after,
        "drain": drain,
        "done": done,
        "drained": config.orders - drain_from,
        "import_seconds": import_end - import_start,
        "first_claim": claims[0] if claims else None,
        "import_end": import_end,
    }


def _latency_phase(
    config: BenchConfig, env: dict[str, str], daemons: Sequence[procs.Daemon], sim: procs.Sim
) -> dict[str, Any]:
    count = int(config.rate * config.duration)
    before = _snapshot(daemons, sim, config.db)
    statuses = asyncio.run(_submit(config.rate, count, [d.port for d in daemons], env["FULFIL_ADMIN_TOKEN"]))
    _wait_delivered(daemons, config.orders + count, timeout=config.duration + 120.0)
    after = _snapshot(daemons, sim, config.db)
    return {"before": before, "after": after, "count": count, "http_statuses": statuses}


async def _submit(rate: float, count: int, ports: Sequence[int], token: str) -> dict[str, int]:
    """POST /orders at `rate` per second on a fixed schedule (a late answer never delays the next order)."""
    statuses: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30.0, headers=headers, trust_env=False) as client:

        async def one(i: int) -> None:
            port = ports[i % len(ports)]
            body = {"ref": f"L{i:07d}", "sku": procs.SKU, "qty": 1, "amount": "1.00"}
            try:
                response = await client.post(f"http://127.0.0.1:{port}/orders", json=body)
                key = str(response.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            statuses[key] = statuses.get(key, 0) + 1

        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i in range(count):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return statuses


def _start_profiler(path: Path, pid: int, gil: bool) -> subprocess.Popen[bytes]:
    import shutil
    import sys

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--threads", "-o", str(path)]
    if gil:
        command.append("--gil")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attached
    return proc


def _stop_profiler(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_orders(db_url: str, env: Mapping[str, str]) -> list[Any]:
    from fulfil.storage import Store

    cipher = CardCipher(load_card_key(None, env))

    async def read() -> list[Any]:
        store = await Store.open(db_url, cipher)
        try:
            return list(await store.list_orders())
        finally:
            await store.close()

    return asyncio.run(read())


# --- the figures --------------------------------------------------------------------------------------


def _sql_window(before: _Snapshot, after: _Snapshot) -> dict[str, int]:
    totals = dict.fromkeys(SQL_FIELDS, 0)
    for b, a in zip(before.sql, after.sql, strict=True):
        for name in SQL_FIELDS:
            totals[name] += int(a.get(name, 0)) - int(b.get(name, 0))
    return totals


def _top_statements(before: _Snapshot, after: _Snapshot, orders: int, limit: int = 15) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for b, a in zip(before.sql, after.sql, strict=True):
        old = b.get("texts", {})
        for text, n in a.get("texts", {}).items():
            counts[text] = counts.get(text, 0) + int(n) - int(old.get(text, 0))
    top = sorted(counts.items(), key=lambda item: -item[1])[:limit]
    return [{"per_order": round(n / orders, 3), "statement": text} for text, n in top if n > 0]


def _window(before: _Snapshot, after: _Snapshot, orders: int) -> dict[str, Any]:
    sql = _sql_window(before, after)
    cpu = sum(after.cpu) - sum(before.cpu)
    per = max(orders, 1)
    return {
        "orders": orders,
        "seconds": after.at - before.at,
        "cpu_s": cpu,
        "cpu_ms_per_order": cpu * 1000 / per,
        "sys_cpu_ms_per_order": (sum(after.sys_cpu) - sum(before.sys_cpu)) * 1000 / per,  # the kernel's part
        "stmts_per_order": sql["statement"] / per,
        "tx_per_order": sql["begin"] / per,
        "commits_per_order": sql["commit"] / per,
        # SQLite's group commit: direct transactions that shared a COMMIT with others (groups of >= 2).
        "group_commits_per_order": sql["groups"] / per,
        "grouped_tx_per_order": sql["grouped"] / per,
        "rollbacks_per_order": sql["rollback"] / per,
        "checkouts_per_order": sql["checkout"] / per,
        "conns_per_1k": sql["connect"] * 1000 / per,
        "sim_requests_per_order": (after.sim_requests - before.sim_requests) / per,
        **_cpu_split(before, after, per),
        "sql": sql,
        "top_statements": _top_statements(before, after, per),
    }


def _cpu_split(before: _Snapshot, after: _Snapshot, orders: int) -> dict[str, Any]:
    """Where the machine's CPU went between two snapshots, per order: on 2 cores the daemons share them with the
    simulator and (PostgreSQL) the database server; `machine` is every process on every core."""
    per = max(orders, 1)
    return {
        "cpu_split_ms_per_order": {
            "daemons": (sum(after.cpu) - sum(before.cpu)) * 1000 / per,
            "database_server": (after.db_cpu - before.db_cpu) * 1000 / per,
            "simulator": (after.sim_cpu - before.sim_cpu) * 1000 / per,
            "machine": (after.machine_busy - before.machine_busy) * 1000 / per,
        },
        "machine_busy_share": (after.machine_busy - before.machine_busy)
        / max((after.at - before.at) * (os.cpu_count() or 1), 1e-9),
    }


def _loop_shares(before: _Snapshot, after: _Snapshot) -> dict[str, float]:
    """Of the wall time between two snapshots, the share each daemon's event loop thread spent on a core and
    waiting for one (runnable while the database server or the simulator had both cores), averaged over the
    daemons; the rest it was idle, every task waiting for I/O. On a core + waiting near 1: the loop is the
    bound, and only a lower CPU cost per order (or a core of its own) makes it faster. Waiting for the GIL is
    neither (the thread sleeps off the run queue): on SQLite, whose writer thread holds it for its statements,
    the rest is partly that, not only I/O."""
    seconds = max(after.at - before.at, 1e-9)
    pairs = list(zip(before.loop, after.loop, strict=True)) or [((0.0, 0.0), (0.0, 0.0))]
    return {
        "on_core": sum(b[0] - a[0] for a, b in pairs) / len(pairs) / seconds,
        "waiting_for_core": sum(b[1] - a[1] for a, b in pairs) / len(pairs) / seconds,
    }


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))]

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": ordered[-1]}


def _ms(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() * 1000 if a is not None and b is not None else None


def _latency(views: Sequence[Any], supplier_ms: float) -> dict[str, Any]:
    """Payment-to-delivery of the latency phase's orders, its overhead beyond the supplier's own time,
    and where it went (from each order's attempt)."""
    total: list[float] = []
    parts: dict[str, list[float]] = {"pickup": [], "write_ahead": [], "sent_to_final": [], "final_to_delivered": []}
    slowest: list[tuple[float, str, str]] = []
    for view in views:
        order = view.order
        if not order.ref.startswith("L") or order.delivered_at is None:
            continue
        total.append(_ms(order.created_at, order.delivered_at) or 0.0)
        slowest.append((total[-1], order.ref, order.created_at.isoformat()))
        if len(view.attempts) == 1:
            a = view.attempts[0]
            for name, value in (
                ("pickup", _ms(order.created_at, a.started_at)),
                ("write_ahead", _ms(a.started_at, a.sent_at)),
                ("sent_to_final", _ms(a.sent_at, a.finished_at)),
                ("final_to_delivered", _ms(a.finished_at, order.delivered_at)),
            ):
                if value is not None:
                    parts[name].append(value)
    return {
        "delivered": len(total),
        "ms": _quantiles(total),
        "overhead_ms": _quantiles([t - supplier_ms for t in total]),
        "breakdown_ms": {name: _quantiles(values) for name, values in parts.items()},
        # The three slowest, to find what an outlier met (refs count up in the order they were sent).
        "slowest": [{"ms": ms, "ref": ref, "created_at": at} for ms, ref, at in sorted(slowest, reverse=True)[:3]],
    }


def _report(
    config: BenchConfig,
    throughput: dict[str, Any],
    latency: dict[str, Any],
    views: Sequence[Any],
    rss: list[float],
    codes: list[int],
    tops: Sequence[ceiling.CeilingResult],
    supplier_time: dict[str, float],
    pg_life: dict[str, int] | None,
    load_before: list[float],
    load_after: list[float],
) -> dict[str, Any]:
    top = ceiling.CeilingResult.pooled(tops)
    statuses: dict[str, int] = {}
    for view in views:
        statuses[str(view.order.status)] = statuses.get(str(view.order.status), 0) + 1
    t_orders = [v.order for v in views if v.order.ref.startswith("T")]
    last = max((o.delivered_at for o in t_orders if o.delivered_at is not None), default=None)
    first = throughput["first_claim"]
    seconds = (last - first).total_seconds() if last is not None and first is not None else float("nan")
    orders_per_s = config.orders / seconds if seconds > 0 else 0.0
    t_window = _window(throughput["before"], throughput["after"], config.orders)
    l_window = _window(latency["before"], latency["after"], latency["count"])
    drained = throughput["drained"]
    drain = {
        "orders": drained,
        **_cpu_split(throughput["drain"], throughput["after"], drained),
        "event_loop": _loop_shares(throughput["drain"], throughput["done"]),
    }
    lat = _latency(views, supplier_time["p50_ms"])
    all_orders = config.orders + latency["count"]
    result: dict[str, Any] = {
        "config": config.name,
        "db": config.db,
        "notify": config.settings.notify is not None,
        "daemons": config.daemons,
        "settings": config.settings.as_dict(),
        "ok": statuses.get("delivered", 0) == all_orders and all(c == 0 for c in codes) and top.failures == 0,
        "orders": config.orders,
        "statuses": statuses,
        "exit_codes": codes,
        "orders_per_s": orders_per_s,
        "throughput_seconds": seconds,
        "import_seconds": throughput["import_seconds"],
        "cpu_ms_per_order": t_window["cpu_ms_per_order"],
        "stmts_per_order": t_window["stmts_per_order"],
        "tx_per_order": t_window["tx_per_order"],
        "conns_per_1k": t_window["conns_per_1k"],
        "rss_mb": max(rss),
        "rss_mb_each": rss,
        "latency": {
            "rate": config.rate,
            "duration": config.duration,
            "orders": latency["count"],
            "http_statuses": latency["http_statuses"],
            **lat,
        },
        "p50_ms": lat["ms"]["p50"],
        "p95_ms": lat["ms"]["p95"],
        "p99_ms": lat["ms"]["p99"],
        "overhead_p99_ms": lat["overhead_ms"]["p99"],
        "supplier_pair_ms": supplier_time,
        "ceiling": top.as_dict(),
        "ceiling_runs": {"before_daemons": tops[0].as_dict(), "after_daemons": tops[1].as_dict()},
        "ceiling_pairs_per_s": top.pairs_per_s,
        "ratio": orders_per_s / top.pairs_per_s if top.pairs_per_s else 0.0,
        "drain_window": drain,
        "bounds": _bounds(drain, config.daemons, top.pairs_per_s),
        "throughput_window": t_window,
        "latency_window": l_window,
        "pg_stat_database_lifetime": _pg_life(pg_life, all_orders),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "profile": str(config.profile) if config.profile else None,
    }
    return result


def _bounds(window: Mapping[str, Any], daemons: int, ceiling: float) -> dict[str, float]:
    """The most orders/s this run's per-order CPU allows, beside what the ratio budget asks (0.3 x ceiling).

    Costs from the drain window (the import done, the daemons clearing the backlog: no other work on the
    machine). `machine`: every core busy at the whole-machine CPU per order (daemons, database server,
    simulator, the bench's log reading, the kernel), whatever the daemons did; `daemon_cores`: each daemon's
    event loop on a core of its own (one Python thread runs at a time) at the daemons' CPU per order. When
    `ratio_target` is above `machine`, the ratio cannot be met on this machine at these costs."""
    split = window["cpu_split_ms_per_order"]
    cores = os.cpu_count() or 1
    return {
        "machine_orders_per_s": cores * 1000 / split["machine"] if split["machine"] > 0 else 0.0,
        "daemon_cores_orders_per_s": min(daemons, cores) * 1000 / split["daemons"] if split["daemons"] > 0 else 0.0,
        "ratio_target_orders_per_s": 0.3 * ceiling,
    }


def _pg_life(diff: dict[str, int] | None, orders: int) -> dict[str, Any] | None:
    if diff is None:
        return None
    return {
        **diff,
        "orders": orders,
        "xact_per_order": (diff["xact_commit"] + diff["xact_rollback"]) / orders,
        "sessions_per_1k": diff["sessions"] * 1000 / orders,
        "note": "the daemons' whole life (startup, both phases, shutdown): read before they started and "
        "after they exited; per order of both phases",
    }


def _split(r: Mapping[str, Any]) -> str:
    """The throughput window's CPU per order: daemons / database server / simulator / whole machine."""
    window = r["throughput_window"]
    split = window["cpu_split_ms_per_order"]
    return (
        f"cpu split daemon/db/sim/machine {split['daemons']:.1f}/{split['database_server']:.1f}/"
        f"{split['simulator']:.1f}/{split['machine']:.1f} ms, busy {window['machine_busy_share']:.0%}"
    )


def _bound(r: Mapping[str, Any]) -> str:
    b = r["bounds"]
    loop = r["drain_window"]["event_loop"]
    return (
        f"bound machine/daemon cores {b['machine_orders_per_s']:.0f}/{b['daemon_cores_orders_per_s']:.0f} orders/s "
        f"(0.3 x ceiling {b['ratio_target_orders_per_s']:.0f}) | "
        f"loop on core {loop['on_core']:.0%} + waiting for one {loop['waiting_for_core']:.0%}"
    )


def _steady_conns(r: Mapping[str, Any]) -> str:
    """New connections per 1,000 orders in the latency phase: the pools are open by then (steady state); the
    throughput window's figure counts them opening."""
    window = r.get("latency_window")
    return "steady n/a" if not window else f"steady {window['conns_per_1k']:.1f}"


def summary_line(r: Mapping[str, Any]) -> str:
    flag = "" if r["ok"] else "  [NOT OK: see JSON]"
    return (
        f"{r['config']:<9} {r['orders']} orders: {r['orders_per_s']:.1f} orders/s | "
        f"cpu {r['cpu_ms_per_order']:.2f} ms/order | {r['stmts_per_order']:.1f} stmts/order | "
        f"{r['tx_per_order']:.1f} tx/order | {r['conns_per_1k']:.1f} conns/1k ({_steady_conns(r)}) | "
        f"rss {r['rss_mb']:.0f} MB | "
        f"p50/p95/p99 {r['p50_ms']:.0f}/{r['p95_ms']:.0f}/{r['p99_ms']:.0f} ms "
        f"(supplier {r['supplier_pair_ms']['p50_ms']:.1f} ms, overhead p99 {r['overhead_p99_ms']:.0f} ms) | "
        f"ceiling {r['ceiling_pairs_per_s']:.0f} pairs/s | ratio {r['ratio']:.3f} | "
        f"load {r['loadavg_before'][0]:.1f} | {_split(r)} | {_bound(r)}"
        + (f" | webhook events {r['webhook']['events']}" if r.get("webhook") else "")
        + flag
    )
