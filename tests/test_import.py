"""The library imports and runs without streamlit, and never imports it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cellcount"

# Block streamlit, then import every module of the package (except __main__, which runs the CLI).
SCRIPT = """
import importlib, pkgutil, sys
sys.modules["streamlit"] = None  # any 'import streamlit' now raises ImportError
import cellcount
names = sorted(m.name for m in pkgutil.walk_packages(cellcount.__path__, "cellcount.")
               if not m.name.endswith("__main__"))
for name in names:
    importlib.import_module(name)
assert sys.modules["streamlit"] is None
print(" ".join(names))
"""


@pytest.mark.slow
def test_every_module_imports_without_streamlit():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PACKAGE.parent, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = set(proc.stdout.split())
    assert {"cellcount.cli", "cellcount.evaluate", "cellcount.batch", "cellcount.pipeline",
            "cellcount.train", "cellcount.models.loading"} <= imported


def test_no_module_imports_streamlit():
    pattern = re.compile(r"^\s*(import\s+streamlit|from\s+streamlit\b)", re.MULTILINE)
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, f"these library modules import streamlit: {offenders}"
    assert len(list(PACKAGE.rglob("*.py"))) > 10


@pytest.mark.slow
def test_import_cellcount_does_not_import_torch():
    """torch (seconds to import) loads when a network is first built, not on ``import cellcount``."""
    script = "import sys, cellcount; cellcount.list_models(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", script], cwd=PACKAGE.parent, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
