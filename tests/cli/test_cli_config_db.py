"""`fulfil check-config`, `keygen`, `db`, the shared start-up errors, and the entry points."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pytest
from click.testing import CliRunner

from fulfil.cli import COMMANDS, OPTIONAL_COMMANDS, LazyGroup, main
from fulfil.crypto import load_card_key

if TYPE_CHECKING:
    from tests.cli.conftest import Env

THREE_MISTAKES = """\
database: {url: "sqlite:///x.db"}
daemon: {poll_interval: soon}
suppliers:
  - {name: shelf, type: stock}
products:
  steam-100:
    max_qty: 0
    offers:
      - {supplier: shelf}
      - {supplier: x, product_id: "1"}
"""


def test_check_config_ok(env: Env) -> None:
    result = env.cli("check-config")
    assert result.exit_code == 0
    assert result.stdout == "OK\n"


def test_check_config_lists_every_error_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(THREE_MISTAKES, encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(path), "check-config"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines
    assert any(
        line.startswith("products.steam-100.offers[1].supplier: unknown supplier 'x'") for line in lines
    )
    assert any(line.startswith("daemon.poll_interval: ") for line in lines)
    assert any(line.startswith("products.steam-100.max_qty: ") for line in lines)


def test_check_config_unreadable_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "none.yaml"), "check-config"])
    assert result.exit_code == 1
    assert "cannot read the configuration" in result.stdout


def test_check_config_warns_about_a_missing_card_key(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FULFIL_CARD_KEY")
    result = env.cli("check-config")
    assert result.exit_code == 0 and result.stdout == "OK\n"
    assert "warning: no card encryption key" in result.stderr


def test_commands_refuse_a_bad_config_with_every_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(THREE_MISTAKES, encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(path), "orders", "list"])
    assert result.exit_code == 2
    assert f"invalid configuration {path}:" in result.stderr
    assert "unknown supplier 'x'" in result.stderr and "daemon.poll_interval" in result.stderr


def test_commands_refuse_without_a_card_key(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FULFIL_CARD_KEY")
    result = env.cli("orders", "list")
    assert result.exit_code == 2
    assert "no card encryption key" in result.stderr and "fulfil keygen" in result.stderr
    monkeypatch.setenv("FULFIL_CARD_KEY", "not-a-key")
    result = env.cli("orders", "list")
    assert result.exit_code == 2 and "FULFIL_CARD_KEY" in result.stderr


def test_keygen_prints_a_usable_key() -> None:
    result = CliRunner().invoke(main, ["keygen"])
    assert result.exit_code == 0
    assert len(load_card_key(None, {"FULFIL_CARD_KEY": result.stdout.strip()})) == 32
    assert CliRunner().invoke(main, ["keygen"]).stdout != result.stdout


def test_keygen_output_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "card.key"
    result = CliRunner().invoke(main, ["keygen", "--output", str(path)])
    assert result.exit_code == 0 and result.stdout == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text(encoding="ascii")
    assert len(load_card_key(str(path), {})) == 32
    again = CliRunner().invoke(main, ["keygen", "--output", str(path)])
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert path.read_text(encoding="ascii") == key


def test_db_status_and_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "sub" / "fulfil.db"
    config = tmp_path / "fulfil.yaml"
    config.write_text(f'database: {{url: "sqlite:///{db}"}}\n', encoding="utf-8")
    monkeypatch.setenv("FULFIL_CONFIG", str(config))
    monkeypatch.delenv("FULFIL_CARD_KEY", raising=False)  # status and upgrade need no card key

    before = CliRunner().invoke(main, ["db", "status"])
    assert before.exit_code == 1
    assert "never migrated" in before.stdout and "fulfil db upgrade" in before.stderr

    monkeypatch.setenv("FULFIL_CARD_KEY", load_key_text())
    refused = CliRunner().invoke(main, ["orders", "list"])
    assert refused.exit_code == 2 and "run `fulfil db upgrade`" in refused.stderr

    upgraded = CliRunner().invoke(main, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert "up to date" in upgraded.stdout and db.exists()
    monkeypatch.delenv("FULFIL_CARD_KEY")
    after = CliRunner().invoke(main, ["db", "status"])
    assert after.exit_code == 0, after.output
    assert "schema:     up to date" in after.stdout and "pending 0" in after.stdout


def load_key_text() -> str:
    from fulfil.crypto import generate_key

    return generate_key()


def test_every_registered_command_loads() -> None:
    group = main
    assert isinstance(group, LazyGroup)
    ctx = click.Context(group)
    for name in COMMANDS:
        command = group.get_command(ctx, name)
        assert isinstance(command, click.Command), name
    listed = group.list_commands(ctx)
    assert set(COMMANDS) <= set(listed)
    assert group.get_command(ctx, "no-such-command") is None


def test_a_missing_optional_module_is_left_out_and_a_broken_one_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(OPTIONAL_COMMANDS, "ghost", "fulfil.cli.no_such_module:ghost")
    monkeypatch.setitem(OPTIONAL_COMMANDS, "broken", "fulfil.render:no_such_attribute")
    group = main
    ctx = click.Context(group)
    assert "ghost" not in group.list_commands(ctx)
    assert group.get_command(ctx, "ghost") is None
    result = CliRunner().invoke(main, ["broken"])
    assert result.exit_code == 1
    assert "`fulfil broken` is unavailable" in result.stderr
    main.commands.pop("broken", None)


@pytest.mark.slow  # two fresh interpreters
def test_python_dash_m_and_run_py_entry_points(env: Env) -> None:
    root = Path(__file__).resolve().parents[2]
    environ = {**os.environ, "FULFIL_CONFIG": str(env.config_path), "FULFIL_CARD_KEY": env.key}
    module = subprocess.run(
        [sys.executable, "-m", "fulfil", "check-config"],
        capture_output=True,
        text=True,
        env=environ,
        cwd=root,
        timeout=60,
    )
    assert module.returncode == 0, module.stderr
    assert module.stdout == "OK\n"
    run_py = subprocess.run(
        [sys.executable, "run.py", "--help"],
        capture_output=True,
        text=True,
        env=environ,
        cwd=root,
        timeout=60,
    )
    assert run_py.returncode == 0, run_py.stderr
    assert "Usage: fulfil run" in run_py.stdout
