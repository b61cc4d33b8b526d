"""`make audit`'s static half in the suite: bandit finds no high-severity issue in the project
(exceptions, each with its reason, in pyproject's [tool.bandit]). pip-audit needs the
vulnerability database online, so it is not run here (README: Security)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bandit_finds_no_high_severity_issue() -> None:
    paths = re.search(r"^AUDIT_PATHS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert paths is not None
    bandit = Path(sys.executable).with_name("bandit")
    options = ["-c", "pyproject.toml", "--severity-level", "high", "-f", "json", "-q"]
    done = subprocess.run(
        [str(bandit), *options, "-r", *paths.group(1).split()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    report = json.loads(done.stdout)
    high = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in report["results"]
        if r["issue_severity"] == "HIGH"
    ]
    assert high == [] and done.returncode == 0, high or done.stderr
    assert report["errors"] == []
