"""A fault-injecting supplier simulator (fulu v2 and acg-faka shared) for tests, benchmarks and the demo.

    async with running_sim("config/scenarios/fulu-flaky.yaml") as sim:
        ...  # point an adapter at sim.url; inspect sim.ledger, sim.requests; sim.set_faults([...])

Or as a process: `python -m suppliers.sim --listen 127.0.0.1:0 --scenario FILE` (see `suppliers.sim.cli`).
"""

from __future__ import annotations

from suppliers.sim.scenario import Fault, Product, Scenario, ScenarioError, load_scenario, scenario_from_data
from suppliers.sim.server import Simulator, main, running_sim

__all__ = [
    "Fault",
    "Product",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "load_scenario",
    "main",
    "running_sim",
    "scenario_from_data",
]
