"""`fulfil suppliers [--json] [--offers]`: each supplier's quality score, breaker, balance and cool-downs.

Score, breaker and balance are what a running daemon last reported (the `supplier_health` snapshot; the
breaker lives in the daemon's memory). The 1 h / 24 h / 7 d windows are aggregated from the database now,
so they are current even with no daemon running; without a report, the score is computed from them here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from fulfil import render
from fulfil.cli.context import get_state, run_with_store, utcnow
from fulfil.config import Config
from fulfil.scoring import COMPONENTS, WindowStats, score

if TYPE_CHECKING:
    from fulfil.storage import Store
    from fulfil.storage.store_quality import CooldownEntry, SupplierHealth

WINDOWS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


@dataclass
class _Report:
    now: datetime
    health: dict[str, SupplierHealth]
    cooldowns: list[CooldownEntry]
    windows: dict[str, dict[str, WindowStats]]  # window -> supplier -> stats
    offers: dict[str, dict[tuple[str, str, int], WindowStats]]  # window -> (supplier, sku, index) -> stats
    score_window: dict[str, WindowStats]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (scores, components, windows, offers).")
@click.option("--offers", "show_offers", is_flag=True, help="Also list each offer's windows (text output).")
def suppliers(as_json: bool, show_offers: bool) -> None:
    """Supplier quality: score and its components, breaker, balance, cool-downs, 1h/24h/7d windows.

    Score, breaker and balance come from the running daemon's last report; windows are read live.
    """
    state = get_state()
    config = state.config
    report = run_with_store(lambda store: _gather(store, config, utcnow()), state=state)
    rows = [_supplier_dict(name, config, report) for name in _names(config, report)]
    if as_json:
        click.echo(render.to_json({"generated_at": report.now.isoformat(), "suppliers": rows}))
    else:
        click.echo(_text(rows, show_offers))


async def _gather(store: Store, config: Config, now: datetime) -> _Report:
    promises = {sku: product.promise for sku, product in config.products.items()}
    windows: dict[str, dict[str, WindowStats]] = {}
    offers: dict[str, dict[tuple[str, str, int], WindowStats]] = {}
    for label, span in WINDOWS.items():
        windows[label] = await store.supplier_windows(now - span, now, promises=promises)
        offers[label] = await store.offer_windows(now - span, now, promises=promises)
    score_window = await store.supplier_windows(
        now - timedelta(seconds=config.scoring.window), now, promises=promises
    )
    health = {row.supplier: row for row in await store.supplier_health()}
    return _Report(now, health, await store.cooldown_list(now), windows, offers, score_window)


async def supplier_rows(store: Store, config: Config, now: datetime) -> list[dict[str, Any]]:
    """What `fulfil suppliers --json` lists, for the console's suppliers page."""
    report = await _gather(store, config, now)
    return [_supplier_dict(name, config, report) for name in _names(config, report)]


def _names(config: Config, report: _Report) -> list[str]:
    configured = [s.name for s in config.suppliers]
    return configured + sorted(set(report.health) - set(configured))


def _supplier_dict(name: str, config: Config, report: _Report) -> dict[str, Any]:
    cfg = next((s for s in config.suppliers if s.name == name), None)
    row = report.health.get(name)
    if row is not None:
        components = row.components
        source = "daemon"
    else:
        components = score(report.score_window.get(name, WindowStats()), config.scoring).as_dict()
        source = "computed"
    breaker: dict[str, Any] = {"state": None, "opened_until": None, "ejections": None, "reason": None}
    if row is not None:
        state = row.breaker
        if state == "open" and row.opened_until is not None and row.opened_until <= report.now:
            state = "half_open"  # its cool-down is over: the next order probes it
        breaker = {
            "state": state,
            "opened_until": row.opened_until.isoformat() if state == "open" and row.opened_until else None,
            "ejections": row.ejections,
            "reason": row.detail.get("breaker_reason"),
        }
    floor = cfg.balance_floor if cfg is not None else None
    return {
        "name": name,
        "type": cfg.type if cfg is not None else None,
        "enabled": cfg.enabled if cfg is not None else False,
        "configured": cfg is not None,
        "score": components.get("score"),
        "score_source": source,
        "components": components.get("components", {}),
        "samples": components.get("samples", {}),
        "demoted": row.demoted if row is not None else False,
        "weight": row.detail.get("weight") if row is not None else None,
        "breaker": breaker,
        "balance": {
            "amount": str(row.balance) if row is not None and row.balance is not None else None,
            "at": row.balance_at.isoformat() if row is not None and row.balance_at else None,
            "floor": str(floor) if floor is not None else None,
            "low": bool(row.detail.get("balance_low")) if row is not None else False,
        },
        "reported_at": row.updated_at.isoformat() if row is not None else None,
        "cooldowns": [
            {"product_id": c.product_id, "until": c.until.isoformat(), "reason": c.reason}
            for c in report.cooldowns
            if c.supplier == name
        ],
        "windows": {label: found.get(name, WindowStats()).as_dict() for label, found in report.windows.items()},
        "offers": _offers(name, config, report),
    }


def _offers(name: str, config: Config, report: _Report) -> list[dict[str, Any]]:
    out = []
    for sku, product in config.products.items():
        for index, offer in enumerate(product.offers):
            if offer.supplier != name:
                continue
            windows = {
                # Calls are counted per supplier only: an offer's would read as a misleading zero.
                label: {**found.get((name, sku, index), WindowStats()).as_dict(), **_NO_CALLS}
                for label, found in report.offers.items()
            }
            out.append({"sku": sku, "offer_index": index, "product_id": offer.product_id, "windows": windows})
    return out


# --- text ------------------------------------------------------------------------------------------------


def _text(rows: list[dict[str, Any]], show_offers: bool) -> str:
    if not rows:
        return "no suppliers configured"
    parts = [
        render.table(
            ["supplier", "score", "source", "breaker", "until", "ejections", "demoted", "balance", "floor", "reported"],
            [
                (
                    r["name"],
                    f"{r['score']:.1f}" if r["score"] is not None else None,
                    r["score_source"],
                    r["breaker"]["state"],
                    _clock(r["breaker"]["opened_until"]),
                    r["breaker"]["ejections"],
                    "yes" if r["demoted"] else "no",
                    r["balance"]["amount"],
                    r["balance"]["floor"],
                    _clock(r["reported_at"]),
                )
                for r in rows
            ],
        ),
        "\nScore components (smoothed rates; observations in brackets):",
        render.table(
            ["supplier", *COMPONENTS],
            [
                (r["name"], *(_component(r["components"], r["samples"], name) for name in COMPONENTS))
                for r in rows
            ],
        ),
        "\nWindows:",
        render.table(
            _WINDOW_HEADERS,
            [(r["name"], *_window_cells(label, w)) for r in rows for label, w in r["windows"].items()],
        ),
    ]
    if show_offers:
        offer_rows = [
            (f"{r['name']} {o['sku']}#{o['offer_index']}", *_window_cells(label, w))
            for r in rows
            for o in r["offers"]
            for label, w in o["windows"].items()
        ]
        parts += ["\nOffers:", render.table(["offer", *_WINDOW_HEADERS[1:]], offer_rows)]
    cooling = [(r["name"], c["product_id"], _clock(c["until"]), c["reason"]) for r in rows for c in r["cooldowns"]]
    parts.append("\nCool-downs:")
    parts.append(render.table(["supplier", "product", "until", "reason"], cooling) if cooling else "none")
    return "\n".join(parts)


_WINDOW_HEADERS = [
    "supplier", "window", "calls", "call_ok", "call_avg_s", "attempts", "fulfilled", "keys_valid", "p50_s", "p95_s",
    "claims", "claimed",
]  # fmt: skip
_NO_CALLS = {"calls": None, "call_success_rate": None, "call_latency_avg": None, "call_latency_max": None}


def _window_cells(label: str, w: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        label,
        w["calls"],
        _pct(w["call_success_rate"]),
        _secs(w["call_latency_avg"], 3),
        w["attempts"],
        _pct(w["fulfilment_rate"]),
        _pct(w["key_validity_rate"]),
        _secs(w["latency_p50"]),
        _secs(w["latency_p95"]),
        w["claims"],
        w["claims_amount"],
    )


def _component(components: Mapping[str, Any], samples: Mapping[str, Any], name: str) -> str:
    value = components.get(name)
    return "-" if value is None else f"{value:.3f} [{samples.get(name, 0)}]"


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.1f}%"


def _secs(value: float | None, digits: int = 2) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _clock(iso: str | None) -> str | None:
    return None if iso is None else datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
