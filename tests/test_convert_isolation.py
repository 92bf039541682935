"""The converter is a tool: nothing in the plugin imports it, and the plugin build leaves it out.

(No PyTorch needed: these run everywhere, quickly.)
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "geoplant_qgis"


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_no_plugin_module_imports_the_converter():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "convert" in path.relative_to(PACKAGE).parts[:1] or "_deps" in path.parts:
            continue
        if any(
            n == "geoplant_qgis.convert" or n.startswith("geoplant_qgis.convert.") for n in _imports(path)
        ):
            offenders.append(str(path.relative_to(ROOT)))
        text = path.read_text(encoding="utf-8")
        if re.search(r"^\s*(import torch|from torch)", text, re.M):
            offenders.append(f"{path.relative_to(ROOT)} imports torch")
    assert offenders == []


def test_the_converter_package_imports_without_torch_at_module_level():
    """``import geoplant_qgis.convert`` (and its cli) must not import torch: the command line
    says what to install when torch is missing."""
    code = (
        "import sys; import geoplant_qgis.convert, geoplant_qgis.convert.cli, geoplant_qgis.convert.species; "
        "print('torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_the_plugin_build_leaves_the_converter_out():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    build = makefile[makefile.index("\nbuild:") :].split("\n\n")[0]
    assert "--exclude=./convert" in build
    listing = subprocess.run(
        f"tar -C {PACKAGE} --exclude=__pycache__ --exclude=_deps --exclude=./convert -cf - . | tar -tf -",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not [n for n in listing if "convert" in n.split("/")[1:2]]
    assert "./core/modelcard.py" in listing
    assert os.path.isdir(PACKAGE / "convert")
