"""The core library knows no physics: its code (names and the strings it uses, not the examples its
docstrings and comments give) holds no MRI, CT or dataset vocabulary; that lives in the plugins."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import medrecon

CORE = Path(medrecon.__file__).parent
#: the applications compose plugins' components by name (the demo's cases): not the library core
APPLICATIONS = CORE / "apps"
PHYSICS = {
    "mri",
    "fastmri",
    "multicoil",
    "k-space",
    "kspace",
    "coil",
    "coils",
    "espirit",
    "ct",
    "sinogram",
    "sinograms",
    "radon",
    "fbp",
    "hounsfield",
}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _texts(node: ast.AST, docstrings: set[int]) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword) and node.arg:
        return [node.arg]
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
        return [node.value]
    return []


def physics_words(source: str) -> list[str]:
    """Physics words in a module's identifiers and non-docstring strings (snake_case and kebab-case
    split into words)."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        for text in _texts(node, docstrings):
            words = re.findall(r"[a-z]+(?:-space)?", text.replace("_", " ").lower())
            found += [f"{getattr(node, 'lineno', '?')}: {w} in {text[:60]!r}" for w in words if w in PHYSICS]
    return found


def test_the_core_library_names_no_physics():
    modules = [p for p in sorted(CORE.rglob("*.py")) if APPLICATIONS not in p.parents]
    assert len(modules) > 30  # the scan sees the whole library
    found = [f"{p.relative_to(CORE.parent)}:{hit}" for p in modules for hit in physics_words(p.read_text())]
    assert not found, "physics in the core (it belongs in a plugin):\n" + "\n".join(found)


def test_the_scan_catches_physics_in_code_and_leaves_docstrings_alone():
    source = '''
def simulate(volume):
    """Simulate k-space, e.g. with mri-multicoil."""
    coil_maps = estimate(volume)  # ESPIRiT
    return {"name": "ct-parallel", "maps": coil_maps}
'''
    words = [hit.split(": ")[1].split(" in ")[0] for hit in physics_words(source)]
    assert sorted(words) == ["coil", "coil", "ct"]
