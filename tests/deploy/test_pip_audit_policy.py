"""The pip-audit gate of .ci/run (.ci/pip_audit.py): only a known vulnerability with a fix fails CI, and an
audit that could check nothing says so loudly instead of passing quietly. Pure: no network here."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "pip_audit.py"


def _gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pip_audit_gate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dep(name: str, *vulns: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "vulns": list(vulns)}


def test_a_vulnerability_with_a_fix_fails() -> None:
    status, lines = _gate().decide({"dependencies": [
        _dep("ok"), _dep("bad", {"id": "PYSEC-1", "fix_versions": ["1.1"], "aliases": ["CVE-1"]})]})
    assert status == 1
    assert "FAIL: bad 1.0 PYSEC-1 (CVE-1): fixed in 1.1" in lines


def test_a_vulnerability_without_a_fix_is_printed_not_fatal() -> None:
    status, lines = _gate().decide({"dependencies": [_dep("old", {"id": "GHSA-x", "fix_versions": []})]})
    assert status == 0
    assert lines[0].startswith("no fix yet: old 1.0 GHSA-x") and "1 known" in lines[-1]


def test_nothing_audited_is_loud_and_not_a_failure() -> None:
    status, lines = _gate().decide({"dependencies": [{"name": "a", "skip_reason": "Dependency not found on PyPI"}]})
    assert status == 0
    assert any("could audit NONE" in line and "NOT a pass" in line for line in lines)
