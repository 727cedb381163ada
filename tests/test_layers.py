"""The layout's rules, checked: the layers contract (.importlinter) and no import cycles.

Each package's `__init__` docstring says what it owns and what it may
import; import-linter checks the same directions, so the picture in the
docs cannot drift from the code (STYLE.md, habit 20).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in (ROOT / "webapp").glob("*/__init__.py"))


def test_the_layers_contract_is_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = grimp.build_graph("webapp", cache_dir=None)
    cycles = sorted(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if module < imported and graph.chain_exists(importer=imported, imported=module)
    )
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_each_package_says_what_it_owns_and_may_import(package: Path) -> None:
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    assert "Owns:" in docstring and "May import:" in docstring, package
