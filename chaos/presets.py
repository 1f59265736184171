"""The presets of `python -m chaos --preset NAME`: sizes, daemons, kills, database restarts, and the faults
the simulators and the proxies inject. Every figure can be overridden on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    database: str  # sqlite | pg
    orders: int
    kills: int  # kill -9s of a daemon (each while orders are still open)
    daemons: int = 1
    pg_restarts: int = 0
    proxy: bool = False  # a fault proxy between fulfil and each simulator
    initial_share: float = 0.5  # orders imported before the first daemon starts; the rest by CLI writers
    review_actions: bool = True  # CLI writers retry / refund orders in review while the run goes on
    kill_gap: tuple[float, float] = (0.3, 3.0)  # seconds between kills (a random moment in this range)
    sim_faults: str = "flaky"  # flaky | light: see chaos.scenarios
    proxy_faults: dict[str, Any] = field(default_factory=dict)
    drain_timeout: float = 600.0
    give_up_after: str = "60s"  # fulfil's ambiguity.give_up_after: an unanswerable purchase goes to review

    def sized(self, **changes: Any) -> Preset:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


# The network's faults, per request the client sends (see chaos.proxy): probabilities are exclusive.
NET_FAULTS: dict[str, Any] = {
    "latency_ms": [5, 150],  # added each way, uniform
    "bandwidth": 64_000,  # bytes per second each way, per connection
    "reset_before": 0.03,  # the request read, never forwarded, then RST
    "reset_after": 0.07,  # the request forwarded, the answer dropped, then RST: charged, answer lost
    "half_open": 0.03,  # the request forwarded (or not), then silence until the client gives up
    "blackhole": 0.02,  # a new connection accepted and never read from
}

PRESETS: dict[str, Preset] = {
    "sqlite": Preset(name="sqlite", database="sqlite", orders=5000, kills=100),
    "pg": Preset(name="pg", database="pg", orders=5000, kills=100, daemons=4, pg_restarts=2,
                 kill_gap=(0.2, 1.5)),
    "net": Preset(name="net", database="sqlite", orders=3000, kills=50, proxy=True, sim_faults="light",
                  proxy_faults=NET_FAULTS, kill_gap=(1.0, 5.0)),
}
