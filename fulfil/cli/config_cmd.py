"""`fulfil check-config` and `fulfil keygen`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fulfil.cli.context import EXIT_FAILURE, BadInput, get_state
from fulfil.config import ConfigError, load_config
from fulfil.crypto import CardKeyError, generate_key, load_card_key


@click.command("check-config")
def check_config() -> None:
    """Validate the configuration: print OK, or every error with its path (exit 1)."""
    state = get_state()
    path = state.resolved_config_path
    try:
        config = load_config(path)
    except ConfigError as exc:
        for error in exc.errors:
            click.echo(error)
        raise click.exceptions.Exit(EXIT_FAILURE) from exc
    # The key is not part of the file, but a daemon without one refuses to start: say so now.
    try:
        load_card_key(config.security.card_key_file)
    except CardKeyError as exc:
        click.echo(f"warning: {exc}", err=True)
    click.echo("OK")


@click.command("keygen")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the key to this file (mode 0600). Refuses to overwrite an existing file.",
)
def keygen(output: Path | None) -> None:
    """Print a new card encryption key (or write it to --output).

    Keep it safe and back it up: stock and delivered keys cannot be read without it.
    """
    key = generate_key()
    if output is None:
        click.echo(key)
        return
    try:
        # O_EXCL: overwriting the key of a live database would make its stored keys unreadable.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise BadInput(f"{output} already exists; not overwriting a card key") from exc
    except OSError as exc:
        raise BadInput(f"cannot create {output}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    click.echo(f"wrote a new card key to {output}", err=True)
