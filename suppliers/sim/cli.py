"""`fulfil sim` / `python -m suppliers.sim`: run a simulated supplier until interrupted.

Once listening it prints exactly one line on stdout, which scripts wait for:
    sim listening on http://127.0.0.1:8090 protocol=fulu control=http://127.0.0.1:40123
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import click

from suppliers.sim.scenario import PROTOCOLS, ScenarioError, load_scenario
from suppliers.sim.server import Simulator, serve


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"expected HOST:PORT such as 127.0.0.1:8090, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _announce(sim: Simulator) -> None:
    control = f" control={sim.control_url}" if sim.control_url else ""
    click.echo(f"sim listening on {sim.url} protocol={sim.scenario.protocol}{control}")  # click.echo flushes


@click.command("sim")
@click.option("--listen", default="127.0.0.1:8090", show_default=True, help="HOST:PORT (port 0: any free port).")
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default=None,
    help="Protocol to speak (default: the scenario's).",
)
@click.option(
    "--scenario",
    "scenario_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Scenario YAML (catalogue, credentials, faults); see config/scenarios/.",
)
@click.option(
    "--control-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port of the control-only listener (same host) that stays up while refusing; 0: any free port.",
)
def sim(listen: str, protocol: str | None, scenario_path: str, control_port: int) -> None:
    """Run a fault-injecting supplier simulator (fulu or acg_faka) on loopback."""
    try:
        scenario = load_scenario(scenario_path, protocol)
    except ScenarioError as exc:
        raise click.ClickException("invalid scenario:\n  " + "\n  ".join(exc.errors)) from None
    host, port = parse_listen(listen)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(serve(scenario, host, port, control_port, _announce))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc.strerror or exc}") from None


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command with `argv` (without the program name); the exit status."""
    try:
        sim.main(args=list(argv) if argv is not None else None, prog_name="sim", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 1
    return 0
