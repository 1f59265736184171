"""`fulfil operators add | list | disable`: the console's named accounts.

`add NAME --role viewer|agent|admin` generates a password and prints it once (nothing keeps it readable);
`--password-stdin` reads one instead (first line of standard input). Names are never reused: events carry them.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING

import click

from fulfil import render
from fulfil.cli.context import BadInput, CommandFailed, operator_option, run_with_store, utcnow
from fulfil.storage import Conflict, NotFound
from fulfil.storage.store_operators import ROLES, OperatorRecord
from fulfil.web.accounts import BadPassword, generate_password, hash_password

if TYPE_CHECKING:
    from fulfil.storage import Store

logger = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@click.group()
def operators() -> None:
    """Console accounts: add, list, disable."""


@operators.command()
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="viewer looks; agent acts on orders; admin too "
              "pauses offers and replays webhooks.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of generating one.")
@operator_option
def add(name: str, role: str, password_stdin: bool, operator: str) -> None:
    """Add a console account; without --password-stdin its generated password is printed once."""
    if not NAME.match(name):
        raise BadInput(f"operator name {name!r}: 1-64 letters, digits or . _ @ -")
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else generate_password()
    try:
        hashed = hash_password(password)
    except BadPassword as exc:
        raise BadInput(f"--password-stdin: {exc}") from exc

    async def body(store: Store) -> OperatorRecord:
        return await store.add_operator(name, role, hashed, operator, utcnow())

    try:
        run_with_store(body)
    except Conflict as exc:
        raise CommandFailed(str(exc)) from exc
    logger.info("operator.added", extra={"account": name, "role": role, "operator": operator})
    if password_stdin:
        click.echo(f"operator {name} ({role}) added")
    else:
        click.echo(f"operator {name} ({role}) added; password (shown once): {password}")


@operators.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_(as_json: bool) -> None:
    """Accounts with their role, state and last login (never a password or its hash)."""
    found = run_with_store(lambda store: store.list_operators())
    rows = [
        {
            "name": o.name,
            "role": o.role,
            "active": o.active,
            "created_at": o.created_at.isoformat(),
            "last_login_at": o.last_login_at.isoformat() if o.last_login_at else None,
            "disabled_at": o.disabled_at.isoformat() if o.disabled_at else None,
        }
        for o in found
    ]
    if as_json:
        click.echo(render.to_json(rows))
    elif rows:
        click.echo(
            render.table(
                ["name", "role", "state", "last login"],
                [(r["name"], r["role"], "active" if r["active"] else "disabled", r["last_login_at"]) for r in rows],
            )
        )
    else:
        click.echo("no operators: add one with `fulfil operators add NAME --role admin`")


@operators.command()
@click.argument("name")
@operator_option
def disable(name: str, operator: str) -> None:
    """No more logins for NAME; its open console sessions end now."""

    async def body(store: Store) -> None:
        await store.disable_operator(name, operator, utcnow())

    try:
        run_with_store(body)
    except NotFound as exc:
        raise BadInput(str(exc)) from exc
    logger.info("operator.disabled", extra={"account": name, "operator": operator})
    click.echo(f"operator {name} disabled")
