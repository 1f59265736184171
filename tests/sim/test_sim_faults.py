"""The fault decision as a pure function of the fault list, the seeded RNG, and a fake clock."""

from __future__ import annotations

from collections import Counter
from typing import Any

from simkit import FULU_DATA, scenario

from suppliers.sim.faults import FaultEngine
from suppliers.sim.scenario import Fault, scenario_from_data


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def faults(*specs: dict[str, Any]) -> tuple[Fault, ...]:
    return scenario_from_data(scenario(FULU_DATA, faults=list(specs))).faults


def engine(*specs: dict[str, Any], seed: int = 1, clock: FakeClock | None = None) -> FaultEngine:
    return FaultEngine(faults(*specs), seed, clock or FakeClock())


def kinds(e: FaultEngine, n: int, op: str = "order", product: str | None = "10001") -> list[str | None]:
    out = []
    for _ in range(n):
        fault = e.decide(op, product).fault
        out.append(fault.kind if fault else None)
    return out


def test_no_faults_no_decision() -> None:
    decision = engine().decide("order", "10001")
    assert decision.fault is None and decision.delay == 0


def test_request_schedule_counts_matching_requests() -> None:
    e = engine({"kind": "system_error", "requests": "3-4"})
    assert kinds(e, 6) == [None, None, "system_error", "system_error", None, None]


def test_open_ended_and_single_request_schedules() -> None:
    assert kinds(engine({"kind": "system_error", "requests": "5-"}), 7)[3:] == [
        None,
        "system_error",
        "system_error",
        "system_error",
    ]
    assert kinds(engine({"kind": "system_error", "requests": 2}), 3) == [None, "system_error", None]


def test_only_matching_requests_are_counted() -> None:
    e = engine({"kind": "system_error", "requests": "2", "products": [10002]})
    assert kinds(e, 3, product="10001") == [None, None, None]  # other product: not counted
    assert kinds(e, 2, product="10002") == [None, "system_error"]
    assert kinds(engine({"kind": "system_error"}), 1, op="query") == [None]  # default `on` is order


def test_time_window_follows_the_clock() -> None:
    clock = FakeClock()
    e = engine({"kind": "drop_before_commit", "from": "5s", "to": "15s"}, clock=clock)
    assert kinds(e, 1) == [None]
    clock.now += 5
    assert kinds(e, 1) == ["drop_before_commit"]
    clock.now += 10
    assert kinds(e, 1) == [None]


def test_reloading_restarts_windows_and_counters() -> None:
    clock = FakeClock()
    e = engine({"kind": "system_error", "requests": "1"}, clock=clock)
    assert kinds(e, 2) == ["system_error", None]
    clock.now += 50
    e.load(e.faults)
    assert e.elapsed() == 0
    assert kinds(e, 1) == ["system_error"]


def test_probabilities_are_exclusive_shares_of_one_draw() -> None:
    e = engine(
        {"kind": "lost_after_commit", "probability": 0.10},
        {"kind": "system_error", "probability": 0.10},
        {"kind": "invalid_keys", "probability": 0.05},
        seed=11,
    )
    counts = Counter(kinds(e, 20_000))
    assert abs(counts["lost_after_commit"] / 20_000 - 0.10) < 0.01
    assert abs(counts["system_error"] / 20_000 - 0.10) < 0.01
    assert abs(counts["invalid_keys"] / 20_000 - 0.05) < 0.01


def test_the_same_seed_gives_the_same_faults() -> None:
    spec = {"kind": "lost_after_commit", "probability": 0.3}
    assert kinds(engine(spec, seed=4), 200) == kinds(engine(spec, seed=4), 200)
    assert kinds(engine(spec, seed=4), 200) != kinds(engine(spec, seed=5), 200)
    e = engine(spec, seed=4)
    first = kinds(e, 50)
    e.reset()
    assert kinds(e, 50) == first


def test_first_certain_fault_wins_and_latencies_add_up() -> None:
    e = engine(
        {"kind": "latency", "delay": "20ms"},
        {"kind": "system_error"},
        {"kind": "latency", "delay": "30ms"},
        {"kind": "http_5xx"},
    )
    decision = e.decide("order", "10001")
    assert decision.fault is not None and decision.fault.kind == "system_error"
    assert abs(decision.delay - 0.05) < 1e-9
    assert e.decide("account", None).fault is None  # latency applies to every operation by default
    assert abs(e.decide("account", None).delay - 0.05) < 1e-9


def test_latency_distributions_stay_in_range() -> None:
    e = engine({"kind": "latency", "distribution": "uniform", "min": "10ms", "max": "20ms"})
    delays = [e.decide("order", "10001").delay for _ in range(500)]
    assert min(delays) >= 0.010 and max(delays) <= 0.020 and len(set(delays)) > 100
    e = engine({"kind": "latency", "distribution": "normal", "mean": "5ms", "stddev": "10ms"})
    delays = [e.decide("order", "10001").delay for _ in range(500)]
    assert min(delays) >= 0.0  # clamped: no negative waits
    assert 0.003 < sum(delays) / len(delays) < 0.012


def test_refuse_windows() -> None:
    clock = FakeClock()
    e = engine({"kind": "refuse", "from": "2s", "to": "4s"}, clock=clock)
    assert not e.refusing() and e.next_change() == 2.0
    clock.now += 2
    assert e.refusing() and e.next_change() == 2.0
    clock.now += 2
    assert not e.refusing() and e.next_change() is None
    assert e.decide("order", "10001").fault is None  # refuse is the listener's business, not a request's
    always = engine({"kind": "refuse"})
    assert always.refusing() and always.next_change() is None
