#!/usr/bin/env python3
"""Dependencies audited with pip-audit: CI fails only on a known vulnerability that has a fix available.

    .venv/bin/python .ci/pip_audit.py        # audits the environment of the interpreter that runs it

Every vulnerability is printed; one with non-empty `fix_versions` fails (exit 1), one without a fix is
printed and tolerated. No `--ignore-vuln` by default. When the vulnerability service cannot be reached, or
answers for no package at all (a mirror without PyPI's per-version JSON), that is printed loudly and does not
fail: an audit that could not look is not a pass, and the output says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

BANNER = "!" * 100


def decide(report: dict[str, Any]) -> tuple[int, list[str]]:
    """(exit status, lines to print) for pip-audit's JSON report."""
    deps = report.get("dependencies", [])
    audited = [d for d in deps if not d.get("skip_reason")]
    skipped = [d for d in deps if d.get("skip_reason")]
    lines: list[str] = []
    fixable = 0
    for dep in audited:
        for vuln in dep.get("vulns", []):
            fixes = vuln.get("fix_versions") or []
            fixable += 1 if fixes else 0
            aliases = ",".join(vuln.get("aliases") or [])
            lines.append(f"{'FAIL' if fixes else 'no fix yet'}: {dep['name']} {dep.get('version')} {vuln.get('id')}"
                         f"{f' ({aliases})' if aliases else ''}: fixed in {', '.join(fixes) or 'nothing yet'}")
    if deps and not audited:
        lines += [BANNER, f"pip-audit could audit NONE of {len(deps)} packages: the vulnerability service did not "
                  f"answer for any (e.g. {skipped[0]['skip_reason']}). NOT a pass: nothing was checked.", BANNER]
        return 0, lines
    lines.append(f"pip-audit: {len(audited)} package(s) audited, {len(skipped)} skipped, "
                 f"{sum(len(d.get('vulns', [])) for d in audited)} known vulnerabilit(ies), {fixable} with a fix")
    return (1 if fixable else 0), lines


def main() -> int:
    argv = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off", "--skip-editable",
            "--timeout", "30"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        print(f"{BANNER}\npip-audit did not finish in 600 s: the vulnerability service is unreachable. NOT a pass."
              f"\n{BANNER}")
        return 0
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        if "No module named pip_audit" in done.stderr:
            print("pip-audit is not installed in this environment (it is in the test extra)", file=sys.stderr)
            return 1
        print(f"{BANNER}\npip-audit gave no report (exit {done.returncode}); the vulnerability service is likely "
              f"unreachable. NOT a pass:\n{done.stderr.strip()[-2000:]}\n{BANNER}")
        return 0
    status, lines = decide(report)
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
