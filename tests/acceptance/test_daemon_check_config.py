"""Issue 2 acceptance: `fulfil check-config` on a file with three different mistakes reports all three with
their paths and exits non-zero; `fulfil run` refuses the same file with the same three lines.

tests/cli covers the command in-process (CliRunner); this runs the installed console script, as an
operator does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from daemonkit import fulfil

pytestmark = pytest.mark.slow

THREE_MISTAKES = """\
database: {url: "sqlite:///fulfil.db"}
daemon: {lease: one minute}
suppliers:
  - {name: shelf, type: stock}
products:
  steam-100:
    card_pattern: '^[A-Z0-9{16}$'
    offers:
      - {supplier: shelf}
      - {supplier: x, product_id: "1"}
"""

EXPECTED = (
    "daemon.lease: ",
    "products.steam-100.card_pattern: not a valid regular expression",
    "products.steam-100.offers[1].supplier: unknown supplier 'x'",
)


def test_check_config_reports_three_mistakes_with_their_paths(tmp_path: Path, env: dict[str, str]) -> None:
    config = tmp_path / "fulfil.yaml"
    config.write_text(THREE_MISTAKES, encoding="utf-8")

    checked = fulfil("check-config", config=config, env=env, expect=1)
    lines = checked.stdout.splitlines()
    assert len(lines) == 3, checked.stdout
    for expected in EXPECTED:
        assert sum(line.startswith(expected) for line in lines) == 1, (expected, lines)

    run = fulfil("run", config=config, env=env, expect=2, timeout=30)
    assert f"invalid configuration {config}" in run.stderr
    for expected in EXPECTED:
        assert f"  {expected}" in run.stderr, run.stderr
