"""The import graph of cellcount, the app and their layers, read from the source (nothing is imported).

``python scripts/import_layers.py`` prints a Mermaid diagram of :data:`LAYERS` with every import between
units that cross a layer, as in docs/ARCHITECTURE.md; ``--check`` lists imports that run from a lower layer
to a higher one (exit 1 if any). ``tests/test_layers.py`` runs the check.

A unit is a module, or a package taken as one (``cellcount.io``, ``cellcount.viz``, ``cellcount.models``
...). Imports inside functions count (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = ("cellcount.io", "cellcount.viz", "cellcount.models", "cellcount.training", "cellcount.synthetic",
            "cellcount.evaluate", "cellcount.groundtruth", "cellcount.finetune")
"""Packages drawn as one unit each (``cellcount.evaluate``'s command lines, ``cli`` and ``compare_cli``, stay apart)."""

LAYERS: list[tuple[str, list[str]]] = [
    ("app", ["streamlit_app", "pages"]),
    ("commands", ["cellcount.cli", "cellcount.outputs", "cellcount.resume", "cellcount.evaluate.cli", "cellcount.evaluate.compare_cli", "cellcount.train", "cellcount.finetune",
                  "cellcount.jobs", "cellcount.__main__", "cellcount.evaluate.__main__", "cellcount.finetune.__main__",
                  "cellcount.synthetic.__main__"]),
    ("workflows", ["cellcount", "cellcount.batch", "cellcount.evaluate", "cellcount.cliparams", "cellcount.blocks",
                   "cellcount.distributed"]),
    ("pipeline", ["cellcount.pipeline"]),
    ("models and pictures", ["cellcount.models", "cellcount.inference", "cellcount.training", "cellcount.viz",
                             "cellcount.labelled"]),
    ("array functions", ["cellcount.postprocess", "cellcount.sizing", "cellcount.flips", "cellcount.settingsfile",
                         "cellcount.groundtruth", "cellcount.synthetic", "cellcount.quality", "cellcount.measure",
                         "cellcount.metrics", "cellcount.annotate", "cellcount.synthetic_large",
                         "cellcount.novelty", "cellcount.overlay"]),
    ("parameters", ["cellcount.params"]),
    ("input/output", ["cellcount.io", "cellcount.csvout", "cellcount.history"]),
    ("foundations", ["cellcount.errors", "cellcount.protocols", "cellcount.parallel", "cellcount.memory",
                     "cellcount._version"]),
]
"""Top to bottom: a unit may import units of its own layer or of layers below it, never above."""


def unit_of(module: str) -> str:
    """The unit a dotted module name belongs to."""
    if module.endswith(".__main__"):  # ``python -m`` entry points are commands of their own
        return module
    if module.startswith("pages.") or module == "pages":
        return "pages"
    for command in ("cellcount.evaluate.cli", "cellcount.evaluate.compare_cli"):
        if module == command or module.startswith(command + "."):
            return command
    for pkg in PACKAGES:
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return module


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements, skipping the bodies of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path = ROOT) -> dict[str, dict[str, set[str]]]:
    """``{unit: {imported unit: {file that imports it, ...}}}`` over cellcount/, pages/ and streamlit_app.py."""
    files = [*sorted((root / "cellcount").rglob("*.py")), *sorted((root / "pages").glob("*.py")),
             root / "streamlit_app.py"]
    graph: dict[str, dict[str, set[str]]] = {}
    for path in files:
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        src = unit_of(name)
        edges = graph.setdefault(src, {})
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                # ``from . import x`` / ``from cellcount import evaluate``: x may itself be a module
                targets = [f"{target}.{a.name}" for a in node.names] if not node.module or target in (
                    "cellcount", "pages") else [target]
            else:
                targets = [a.name for a in node.names]
            for t in targets:
                if not (t.startswith("cellcount") or t.startswith("pages")):
                    continue
                dst = unit_of(_existing(t, root))
                if dst != src:
                    edges.setdefault(dst, set()).add(str(path.relative_to(root)))
    return graph


def _existing(module: str, root: Path) -> str:
    """The longest prefix of ``module`` that is a module or package on disk (``cellcount.io.read_image`` ->
    ``cellcount.io``)."""
    parts = module.split(".")
    while parts:
        base = root.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return module


def layer_index() -> dict[str, int]:
    """Unit -> its layer's position from the top (0 = the app)."""
    return {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def violations(graph: dict[str, dict[str, set[str]]] | None = None) -> list[str]:
    """Imports from a lower layer to a higher one, and units that no layer names."""
    graph = import_graph() if graph is None else graph
    index = layer_index()
    out = [f"{unit}: in no layer of LAYERS" for unit in sorted(graph) if unit not in index]
    for src, edges in sorted(graph.items()):
        for dst, files in sorted(edges.items()):
            if src in index and dst in index and index[dst] < index[src]:
                out.append(f"{src} ({LAYERS[index[src]][0]}) imports {dst} ({LAYERS[index[dst]][0]}): "
                           + ", ".join(sorted(files)))
    return out


def reduced(graph: dict[str, dict[str, set[str]]]) -> dict[str, set[str]]:
    """The imports no longer path implies (transitive reduction): A -> C is dropped when A -> B -> ... -> C."""
    edges = {u: set(v) for u, v in graph.items()}

    def reach(start: str, skip: tuple[str, str]) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            u = todo.pop()
            for v in edges.get(u, ()):
                if (u, v) != skip and v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen

    return {u: {v for v in vs if v not in reach(u, (u, v))} for u, vs in edges.items()}


def mermaid(graph: dict[str, dict[str, set[str]]] | None = None) -> str:
    """A Mermaid flowchart: one box per layer (top to bottom), an arrow per import that no longer path of
    imports implies (:func:`reduced`); the full list is ``import_graph()``."""
    graph = import_graph() if graph is None else graph
    index = layer_index()
    node = {u: u.replace("cellcount.", "").replace(".", "_") or "cellcount" for u in index}
    node["cellcount"] = "cellcount_api"
    lines = ["flowchart TB"]
    for i, (title, units) in enumerate(LAYERS):
        lines.append(f'  subgraph L{i}["{title}"]')
        lines += [f'    {node[u]}["{u}"]' for u in units]
        lines.append("  end")
    for src, edges in sorted(reduced(graph).items()):
        for dst in sorted(edges):
            if src in index and dst in index:
                lines.append(f"  {node[src]} --> {node[dst]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="list imports that run up a layer; exit 1 if any")
    args = p.parse_args(argv)
    if args.check:
        found = violations()
        print("\n".join(found) or "no import runs from a lower layer to a higher one")
        return 1 if found else 0
    print(mermaid())
    return 0


if __name__ == "__main__":
    sys.exit(main())
