"""The UI stays thin: pages never import scipy/skimage/cv2; the library and viz never import streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UI_FILES = [ROOT / "streamlit_app.py", *sorted((ROOT / "pages").glob("*.py"))]
FORBIDDEN_IN_UI = {"scipy", "skimage", "cv2"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_pages_do_not_import_image_processing_libraries():
    assert len(UI_FILES) >= 7
    for path in UI_FILES:
        bad = imported_roots(path) & FORBIDDEN_IN_UI
        assert not bad, f"{path.name} imports {bad}: compute belongs in cellcount/"


def test_library_never_imports_streamlit():
    for path in sorted((ROOT / "cellcount").rglob("*.py")):
        assert "streamlit" not in imported_roots(path), f"{path} imports streamlit"


def test_every_page_is_registered_in_navigation():
    app = (ROOT / "streamlit_app.py").read_text(encoding="utf-8")
    for page in ("count", "batch", "evaluate", "compare", "models"):
        assert f'"pages/{page}.py"' in app
