"""Bad input in the configuration file: durations that would spin, and relative SQLite paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fulfil.cli import main
from fulfil.config import Config, ConfigError, config_from_data, load_config

# Every duration in the file that must be more than zero, with a zero in it.
ZERO_DURATIONS = {
    "daemon": {"poll_interval": "0s", "lease": "0ms"},
    "retry": {"budget": "0s", "initial_backoff": 0, "max_backoff": "0s"},
    "ambiguity": {"query_interval": "0ms", "give_up_after": "0s"},
    "cooldown": {"product_unavailable": "0s", "stock_empty": "0s", "stock_check": "0s"},
    "breaker": {"window": "0s", "base_ejection": "0s", "max_ejection": "0s"},
    "scoring": {"interval": "0s", "window": "0s", "balance_interval": "0s"},
    "suppliers": [
        {
            "name": "up",
            "type": "fulu",
            "base_url": "http://x",
            "app_key": "k",
            "secret": "s",
            "timeout": "0s",
            "connect_timeout": "0s",
            "poll_interval": "0s",
        }
    ],
    "products": {"p": {"promise": "0s", "offers": [{"supplier": "up", "product_id": "1"}]}},
}
ZERO_PATHS = {
    "daemon.poll_interval",
    "daemon.lease",
    "retry.budget",
    "retry.initial_backoff",
    "retry.max_backoff",
    "ambiguity.query_interval",
    "ambiguity.give_up_after",
    "cooldown.product_unavailable",
    "cooldown.stock_empty",
    "cooldown.stock_check",
    "breaker.window",
    "breaker.base_ejection",
    "breaker.max_ejection",
    "scoring.interval",
    "scoring.window",
    "scoring.balance_interval",
    "suppliers[0].timeout",
    "suppliers[0].connect_timeout",
    "suppliers[0].poll_interval",
    "products.p.promise",
}


def test_check_config_refuses_every_zero_duration_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "zero.yaml"
    path.write_text(yaml.safe_dump(ZERO_DURATIONS), encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(path), "check-config"])
    assert result.exit_code == 1
    refused = {line.split(":", 1)[0] for line in result.stdout.splitlines()}
    assert refused == ZERO_PATHS
    assert "zero would make the daemon spin" in result.stdout


def test_a_zero_shutdown_timeout_is_a_choice_and_tiny_durations_are_not() -> None:
    assert config_from_data({"daemon": {"shutdown_timeout": "0s"}}, environ={}).daemon.shutdown_timeout == 0
    with pytest.raises(ConfigError) as caught:
        config_from_data({"daemon": {"poll_interval": "0.1ms"}}, environ={})
    assert caught.value.errors[0].startswith("daemon.poll_interval: must be at least 1ms")
    assert config_from_data({"daemon": {"poll_interval": "1ms"}}, environ={}).daemon.poll_interval == 0.001


def test_code_may_still_build_configs_with_zero_waits() -> None:
    # Tests and the demo make waits immediate this way; only files are held to the rule.
    config = Config.model_validate({"ambiguity": {"query_interval": 0.0}, "daemon": {"lease": 0.0}})
    assert config.ambiguity.query_interval == 0 and config.daemon.lease == 0


# --- relative SQLite paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///fulfil.db", "sqlite:///{dir}/fulfil.db"),
        ("sqlite:///data/f.db", "sqlite:///{dir}/data/f.db"),
        ("sqlite+aiosqlite:///./f.db?timeout=5", "sqlite+aiosqlite:///{dir}/f.db?timeout=5"),
        ("sqlite:////var/lib/fulfil/fulfil.db", "sqlite:////var/lib/fulfil/fulfil.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_a_relative_sqlite_path_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "fulfil.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": url}}), encoding="utf-8")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_config(os.path.relpath(path, elsewhere))  # a relative --config path too
    assert loaded.database.url == expected.format(dir=folder.resolve())


def test_the_example_config_and_the_default_use_absolute_paths() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "fulfil.example.yaml"
    url = yaml.safe_load(example.read_text(encoding="utf-8"))["database"]["url"]
    assert url == "sqlite:////var/lib/fulfil/fulfil.db"  # the systemd unit's StateDirectory
    assert Config().database.url == "sqlite:////var/lib/fulfil/fulfil.db"
