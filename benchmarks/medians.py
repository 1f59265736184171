"""The medians of repeated benchmark runs, each configuration's figures beside issue 14's budgets.

The budgets are judged on medians of two or more runs: one run on a shared machine moves by 10-30 %. A run
that failed (a daemon died, an order not delivered) is left out of the medians and counted.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

Figure = Callable[[Mapping[str, Any]], float]


def _steady(r: Mapping[str, Any]) -> float:
    window = r.get("latency_window")
    return float(window["conns_per_1k"]) if window else float("nan")


def _loop_busy(r: Mapping[str, Any]) -> float:
    loop = r["drain_window"]["event_loop"]
    return float(loop["on_core"] + loop["waiting_for_core"])


FIGURES: Final[dict[str, Figure]] = {
    "orders_per_s": lambda r: float(r["orders_per_s"]),
    "cpu_ms_per_order": lambda r: float(r["cpu_ms_per_order"]),
    "stmts_per_order": lambda r: float(r["stmts_per_order"]),
    "tx_per_order": lambda r: float(r["tx_per_order"]),
    "steady_conns_per_1k": _steady,
    "overhead_p99_ms": lambda r: float(r["overhead_p99_ms"]),
    "ceiling_pairs_per_s": lambda r: float(r["ceiling_pairs_per_s"]),
    "ratio": lambda r: float(r["ratio"]),
    "daemon_cores_bound": lambda r: float(r["bounds"]["daemon_cores_orders_per_s"]),
    "machine_bound": lambda r: float(r["bounds"]["machine_orders_per_s"]),
    "loop_on_or_waiting_for_core": _loop_busy,
}

# Issue 14's budgets: figure, test, as written, whether only for one daemon (throughput and the ratio).
BUDGETS: Final[list[tuple[str, Callable[[float], bool], str, bool]]] = [
    ("cpu_ms_per_order", lambda v: v <= 3.0, "cpu <= 3 ms", False),
    ("stmts_per_order", lambda v: v <= 10.0, "stmts <= 10", False),
    ("tx_per_order", lambda v: v <= 4.0, "tx <= 4", False),
    ("steady_conns_per_1k", lambda v: v == 0.0, "steady conns 0", False),
    ("overhead_p99_ms", lambda v: v <= 50.0, "overhead p99 <= 50 ms", False),
    ("orders_per_s", lambda v: v >= 300.0, ">= 300 orders/s", True),
    ("ratio", lambda v: v >= 0.3, "ratio >= 0.3", True),
]
SCALING_BUDGET: Final = 1.7  # two daemons on PostgreSQL against one


def of(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per configuration: the runs counted, the median of each figure, the budgets met or missed, and for
    N daemons the median orders/s against the same database's one-daemon median."""
    runs: dict[str, list[Mapping[str, Any]]] = {}
    failed: dict[str, int] = {}
    for r in results:
        if r.get("ok"):
            runs.setdefault(str(r["config"]), []).append(r)
        else:
            failed[str(r["config"])] = failed.get(str(r["config"]), 0) + 1
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(runs) | set(failed), key=_order):
        good = runs.get(name, [])
        figures = {key: statistics.median(get(r) for r in good) for key, get in FIGURES.items()} if good else {}
        daemons = int(good[0]["daemons"]) if good else 0
        judged = len(good) >= 2  # the budgets are medians of two runs or more
        budgets = {
            text: test(figures[key]) for key, test, text, single in BUDGETS if judged and (daemons == 1 or not single)
        }
        out[name] = {"runs": len(good), "failed_runs": failed.get(name, 0), "daemons": daemons, **figures}
        out[name]["budgets"] = budgets
    for name, entry in out.items():
        db, count, suffix = _parts(name)
        one = out.get(f"{db}/1{suffix}")  # pg/2+hook against pg/1+hook
        if entry["daemons"] > 1 and one and one.get("orders_per_s"):
            scaling = entry["orders_per_s"] / one["orders_per_s"]
            entry["scaling_vs_one"] = scaling
            if db == "pg" and count == "2" and entry["runs"] >= 2 and one["runs"] >= 2:
                entry["budgets"][f"x{SCALING_BUDGET} one daemon"] = scaling >= SCALING_BUDGET
    return out


def _parts(name: str) -> tuple[str, str, str]:
    """`pg/2+hook` -> ("pg", "2", "+hook")."""
    db, _, rest = name.partition("/")
    count, plus, extra = rest.partition("+")
    return db, count, plus + extra


def _order(name: str) -> tuple[str, int]:
    db, count, _ = _parts(name)
    return (db, int(count) if count.isdigit() else 0)


def lines(medians: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per configuration: `median of N <config>: figures | budgets met: ... | missed: ...`."""
    out = []
    for name, m in medians.items():
        if not m["runs"]:
            out.append(f"median    {name:<9} no run succeeded ({m['failed_runs']} failed)")
            continue
        scaling = f" (x{m['scaling_vs_one']:.2f} one daemon)" if "scaling_vs_one" in m else ""
        met = [text for text, ok in m["budgets"].items() if ok]
        missed = [text for text, ok in m["budgets"].items() if not ok]
        out.append(
            f"median of {m['runs']} {name:<9} {m['orders_per_s']:.1f} orders/s{scaling} | "
            f"cpu {m['cpu_ms_per_order']:.2f} ms | {m['stmts_per_order']:.1f} stmts | {m['tx_per_order']:.1f} tx | "
            f"steady conns {m['steady_conns_per_1k']:.1f}/1k | overhead p99 {m['overhead_p99_ms']:.0f} ms | "
            f"ceiling {m['ceiling_pairs_per_s']:.0f} | ratio {m['ratio']:.3f} | "
            f"bound daemon cores/machine {m['daemon_cores_bound']:.0f}/{m['machine_bound']:.0f} | "
            f"loop busy {m['loop_on_or_waiting_for_core']:.0%}"
            + (f" | failed runs {m['failed_runs']}" if m["failed_runs"] else "")
            + (
                f" | met: {', '.join(met) or '-'} | missed: {', '.join(missed) or '-'}"
                if m["runs"] >= 2
                else " | budgets not judged (fewer than 2 runs)"
            )
        )
    return out
