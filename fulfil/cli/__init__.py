"""The `fulfil` command: one click group, subcommands loaded from the modules listed in `COMMANDS`.

Adding a command is one line in `COMMANDS`. Modules are imported when their command is used (or when help
lists them), so a slow import in one command does not tax the others. An optional module that is not there
yet is simply not listed; one that is there but fails to import still shows, and says why when run.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from fulfil.cli.context import CliState
from fulfil.logs import LOG_FORMATS, LOG_LEVELS, setup_logging

# name -> "module:attribute" of a click command or group
COMMANDS: dict[str, str] = {
    "check-config": "fulfil.cli.config_cmd:check_config",
    "keygen": "fulfil.cli.config_cmd:keygen",
    "db": "fulfil.cli.db:db",
    "orders": "fulfil.cli.orders:orders",
    "stock": "fulfil.cli.stock:stock",
    "review": "fulfil.cli.review:review",
    "held": "fulfil.cli.held:held",
    "claims": "fulfil.cli.claims:claims",
    "webhooks": "fulfil.cli.webhooks:webhooks",
    "sources": "fulfil.cli.sources_cmd:sources",
    "aftersales": "fulfil.cli.aftersales_cmd:aftersales",
    "reissues": "fulfil.cli.aftersales_cmd:reissues",
    "evidence": "fulfil.cli.aftersales_cmd:evidence",
    "operators": "fulfil.cli.operators:operators",
    "risk": "fulfil.cli.risk:risk",
}
# Commands other modules provide; absent until those modules exist.
OPTIONAL_COMMANDS: dict[str, str] = {
    "run": "fulfil.cli.run:run",
    "demo": "fulfil.cli.demo:demo",
    "sim": "suppliers.sim.cli:sim",
    "suppliers": "fulfil.cli.suppliers_cmd:suppliers",
}


def _module_present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _unavailable(name: str, target: str, exc: Exception) -> click.Command:
    @click.command(name, help=f"(unavailable: {target} failed to import)", add_help_option=False)
    def broken() -> None:
        raise click.ClickException(f"`fulfil {name}` is unavailable: importing {target} failed: {exc!r}")

    return broken


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(COMMANDS) | {n for n, t in OPTIONAL_COMMANDS.items() if _module_present(t.split(":")[0])}
        return sorted(names | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name) or OPTIONAL_COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        if cmd_name in OPTIONAL_COMMANDS and not _module_present(module_name):
            return None
        try:
            module = importlib.import_module(module_name)
            command = getattr(module, attribute)
        except Exception as exc:
            if cmd_name in COMMANDS:
                raise  # our own commands failing to import is a bug to see at once
            return _unavailable(cmd_name, target, exc)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        self.commands[cmd_name] = command
        return command


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Configuration file. Default: $FULFIL_CONFIG, else config/fulfil.yaml.",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="json",
    envvar="FULFIL_LOG_FORMAT",
    show_default=True,
    help="JSON lines for machines and journald, text for people.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    envvar="FULFIL_LOG_LEVEL",
    show_default=True,
)
@click.version_option(package_name="fulfil")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_format: str, log_level: str) -> None:
    """fulfil: paid orders in, card keys out, never twice.

    Exit codes: 0 ok, 1 the job failed, 2 bad usage or input (config, arguments, file contents).
    """
    setup_logging("json" if log_format == "json" else "text", log_level)
    ctx.obj = CliState(config_path=config_path, log_format=log_format, log_level=log_level.upper())
