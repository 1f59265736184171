"""What every command shares: the loaded config, the card key, an open Store, and how failures exit.

Exit codes: 0 ok, 1 operational failure (the database failed, the job could not be done), 2 usage or bad
input (bad config, no card key, unknown SKU or ref, a move the record does not allow). `fulfil run` and
`fulfil demo` reuse `CliState` and `run_with_store`.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from fulfil.config import Config, ConfigError, load_config, resolve_config_path
from fulfil.crypto import CardCipher, CardKeyError, load_card_key
from fulfil.notes import clean_note

if TYPE_CHECKING:
    from fulfil.storage import Store

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class CommandFailed(click.ClickException):
    """The command could not do its job (exit 1)."""

    exit_code = EXIT_FAILURE


class BadInput(click.ClickException):
    """The request itself is wrong: config, arguments, file contents (exit 2)."""

    exit_code = EXIT_BAD_INPUT


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (containers with an unnamed uid)
        return "unknown"


operator_option = click.option(
    "--operator",
    default=default_operator,
    show_default="the OS user",
    help="Who is doing this, recorded with the event.",
)


def note_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--note`: an operator's why (fulfil.notes), refused with what is wrong before anything is done."""

    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        try:
            return clean_note(value)
        except ValueError as exc:
            raise BadInput(f"--note: {exc}") from None

    return click.option("--note", callback=check, help=help_text)


@dataclass
class CliState:
    """Built by the `fulfil` group from its options; loads what a command needs on first use."""

    config_path: str | None = None
    log_format: str = "json"
    log_level: str = "INFO"
    _config: Config | None = field(default=None, repr=False)
    _key: bytes | None = field(default=None, repr=False)

    @property
    def resolved_config_path(self) -> Path:
        return resolve_config_path(self.config_path)

    @property
    def config(self) -> Config:
        """The validated config; an invalid one prints every error and exits 2."""
        if self._config is None:
            path = self.resolved_config_path
            try:
                self._config = load_config(path)
            except ConfigError as exc:
                lines = "\n".join(f"  {error}" for error in exc.errors)
                raise BadInput(f"invalid configuration {path}:\n{lines}") from exc
        return self._config

    def use_config(self, config: Config) -> None:
        """For commands that build their own config (`fulfil demo`)."""
        self._config = config

    @property
    def card_key(self) -> bytes:
        if self._key is None:
            try:
                self._key = load_card_key(self.config.security.card_key_file)
            except CardKeyError as exc:
                raise BadInput(str(exc)) from exc
        return self._key

    def cipher(self) -> CardCipher:
        return CardCipher(self.card_key)

    async def open_store(self, *, check_schema: bool = True, cipher: CardCipher | None = None) -> Store:
        from fulfil.storage import SchemaStatus, Store
        from fulfil.storage.database import head_revision, schema_error
        from fulfil.storage.errors import SchemaOutOfDate, StoreError

        url = self.config.database.url
        try:
            # A missing SQLite file is a database never migrated: say so, rather than create an empty file
            # (or fail on a missing directory) as connecting would.
            if check_schema and _sqlite_file_missing(url):
                raise schema_error(SchemaStatus(current=None, head=head_revision()))
            store = await Store.open(url, cipher or self.cipher(), check_schema=check_schema)
            store.risk_credit = self.config.risk.credit
        except SchemaOutOfDate as exc:
            raise BadInput(str(exc)) from exc
        except StoreError as exc:
            raise CommandFailed(str(exc)) from exc
        # Changes made by a command (an order taken in, refunded, resolved) notify like the daemon's do.
        from fulfil.notify.events import build_routes

        store.notify_routes = build_routes(self.config.notify)
        return store


def _sqlite_file_missing(url: str) -> bool:
    from fulfil.storage.database import parse_url

    dialect, parsed = parse_url(url)
    return dialect == "sqlite" and not Path(str(parsed.database)).expanduser().exists()


def get_state(ctx: click.Context | None = None) -> CliState:
    ctx = ctx or click.get_current_context()
    state = ctx.find_object(CliState)
    if state is None:  # a command invoked on its own, outside the `fulfil` group (tests, embedding)
        state = ctx.ensure_object(CliState)
    return state


def run_async(body: Coroutine[Any, Any, T]) -> T:
    """Run a command's async body, turning storage refusals into the CLI's exit codes."""
    from fulfil.storage.errors import DuplicateCard, InvalidTransition, NotFound, StoreError

    try:
        return asyncio.run(body)
    except (NotFound, InvalidTransition, DuplicateCard) as exc:
        raise BadInput(str(exc)) from exc
    except StoreError as exc:
        raise CommandFailed(str(exc)) from exc


def run_with_store(
    fn: Callable[[Store], Coroutine[Any, Any, T]],
    *,
    state: CliState | None = None,
    check_schema: bool = True,
    cipher: CardCipher | None = None,
) -> T:
    """Open the Store (config, card key, schema check), run `fn(store)`, close it, return the result."""
    state = state or get_state()
    # Fail on config and key before starting a loop, so those errors read the same in every command.
    _ = state.config
    if cipher is None:
        cipher = state.cipher()

    async def body() -> T:
        store = await state.open_store(check_schema=check_schema, cipher=cipher)
        try:
            return await fn(store)
        finally:
            await store.close()

    return run_async(body())
