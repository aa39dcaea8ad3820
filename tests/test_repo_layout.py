"""The project's top level holds what the brief names and the project files beside it, nothing dropped there by a
probe or a test run (two probe pictures were committed there once)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL = {
    # the product
    "streamlit_app.py", "pages", "cellcount", "weights", "data", "tests", "requirements.txt", "README.md",
    # how it is built, checked, trained and measured
    ".ci", ".gitignore", ".streamlit", "BENCHMARKS.md", "CHANGELOG.md", "CONTRIBUTING.md", "LICENSE", "configs",
    "docs", "pyproject.toml", "requirements-dev.txt", "results", "scripts", "setup.py",
}


def test_only_the_expected_files_are_tracked_at_the_top_level():
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    top = {line.split("/", 1)[0] for line in tracked.splitlines() if line}
    assert top <= TOP_LEVEL, f"unexpected at the top level: {sorted(top - TOP_LEVEL)}"
    assert {"streamlit_app.py", "pages", "cellcount", "weights", "data", "tests", "requirements.txt",
            "README.md"} <= top
