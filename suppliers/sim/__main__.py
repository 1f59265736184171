"""`python -m suppliers.sim --listen 127.0.0.1:8090 --protocol fulu --scenario FILE` (see `cli`)."""

from __future__ import annotations

from suppliers.sim.cli import sim

if __name__ == "__main__":
    sim(prog_name="python -m suppliers.sim")
