"""Plugins and the napari plugin use only medrecon's public API, as a third party would."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medrecon

ROOT = Path(__file__).parent.parent
PACKAGES = sorted([*(ROOT / "plugins").glob("medrecon_*"), *(ROOT / "napari_plugin").glob("medrecon_*")])


def breaches(source: str, own_package: str) -> list[str]:
    """The imports of a module's source that reach past medrecon's public API: private core
    modules, or another plugin's package."""
    allowed = {"medrecon", *medrecon.PUBLIC_MODULES}
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if not top.startswith("medrecon") or top == own_package:
                continue
            public = name in allowed or any(name.startswith(m + ".") for m in medrecon.PUBLIC_MODULES)
            if top != "medrecon" or not public:
                found.append(name)
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=[p.name for p in PACKAGES])
def test_a_plugin_imports_only_the_public_api(package):
    bad = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in package.rglob("*.py")
        for name in breaches(path.read_text(), package.name)
    }
    assert not bad, f"imports past the public API: {sorted(bad)}"


def test_the_check_catches_a_deliberate_breach():
    source = "\n".join(
        [
            "import medrecon",
            "from medrecon.api import reconstruct",
            "from medrecon_priors.network import load_prior",
        ]
    )
    assert breaches(source, "medrecon_samplers") == ["medrecon.api", "medrecon_priors.network"]
    fine = "from medrecon.numerics import fftnc\nfrom medrecon_mri import masks\n"
    assert breaches(fine, "medrecon_mri") == []


def test_every_public_module_imports():
    import importlib

    for name in medrecon.PUBLIC_MODULES:
        importlib.import_module(name)
