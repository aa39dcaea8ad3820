"""The layers of docs/ARCHITECTURE.md hold in the code: no import runs from a lower layer to a higher one."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _layers():
    spec = importlib.util.spec_from_file_location("import_layers", ROOT / "scripts" / "import_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _graph():
    return _layers().import_graph()  # parsed once for the module's tests


def test_no_import_runs_up_a_layer():
    assert _layers().violations(_graph()) == []


def test_the_check_sees_an_upward_import_and_an_unplaced_module():
    layers = _layers()
    found = layers.violations({"cellcount.io": {"cellcount.pipeline": {"cellcount/io/read.py"}},
                               "cellcount.newthing": {}})
    assert any("cellcount.io (input/output) imports cellcount.pipeline (pipeline)" in f for f in found)
    assert "cellcount.newthing: in no layer of LAYERS" in found


def test_lazy_imports_count_and_type_checking_ones_do_not():
    graph = _graph()
    assert "cellcount.batch" in graph["cellcount.cli"]  # imported inside cmd_count only
    assert "cellcount.params" not in graph["cellcount.sizing"]  # only under TYPE_CHECKING


def test_the_architecture_diagram_is_the_scripts_output():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert _layers().mermaid(_graph()) in text, "rerun python scripts/import_layers.py into docs/ARCHITECTURE.md"
