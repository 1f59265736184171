"""`fulfil operators add | list | disable`: a generated password printed once (and it logs in), a given one
read from stdin, bad input refused with nothing written, no hash in any output, disabling recorded."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fulfil.web.accounts import verify_password

if TYPE_CHECKING:
    from tests.cli.conftest import Env


def test_add_prints_a_generated_password_once_and_stores_only_its_hash(env: Env) -> None:
    result = env.cli("operators", "add", "alice", "--role", "agent", "--operator", "root")
    assert result.exit_code == 0, result.output
    password = re.search(r"password \(shown once\): (\S+)", result.output).group(1)  # type: ignore[union-attr]
    found = env.store(lambda store: store.get_operator("alice"))
    assert found is not None and found.role == "agent" and found.active
    assert found.password_hash.startswith("$argon2") and password not in found.password_hash
    assert verify_password(found.password_hash, password)
    listed = env.cli("operators", "list")
    assert "alice" in listed.output and "agent" in listed.output and "argon2" not in listed.output
    assert env.json("operators", "list", "--json")[0]["name"] == "alice"
    events = env.store(lambda store: store.events(name="operator.added"))
    assert [(e.operator, e.data["name"]) for e in events] == [("root", "alice")]


def test_password_from_stdin_and_bad_input_is_refused_with_nothing_written(env: Env) -> None:
    ok = env.cli("operators", "add", "bob", "--role", "admin", "--password-stdin", input="a long enough secret\n")
    assert ok.exit_code == 0 and "secret" not in ok.output
    found = env.store(lambda store: store.get_operator("bob"))
    assert found is not None and verify_password(found.password_hash, "a long enough secret")
    short = env.cli("operators", "add", "carol", "--role", "viewer", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "at least 10 characters" in short.output
    bad_role = env.cli("operators", "add", "dave", "--role", "root")
    assert bad_role.exit_code == 2 and "root" in bad_role.output
    bad_name = env.cli("operators", "add", "no spaces please", "--role", "viewer")
    assert bad_name.exit_code == 2 and "operator name" in bad_name.output
    again = env.cli("operators", "add", "bob", "--role", "viewer")
    assert again.exit_code == 1 and "exists already" in again.output
    names = [o.name for o in env.store(lambda store: store.list_operators())]
    assert names == ["bob"]
    assert env.store(lambda store: store.get_operator("bob")).role == "admin"  # type: ignore[union-attr]


def test_disable_ends_logins_and_is_recorded(env: Env) -> None:
    assert env.cli("operators", "add", "erin", "--role", "viewer").exit_code == 0
    done = env.cli("operators", "disable", "erin", "--operator", "boss")
    assert done.exit_code == 0 and "disabled" in done.output
    assert env.store(lambda store: store.get_operator("erin")).disabled_at is not None  # type: ignore[union-attr]
    assert "disabled" in env.cli("operators", "list").output
    assert [e.operator for e in env.store(lambda store: store.events(name="operator.disabled"))] == ["boss"]
    missing = env.cli("operators", "disable", "nobody")
    assert missing.exit_code == 2 and "no operator" in missing.output
