"""webapp/ stays small enough to read: no module over 400 lines, no class over 200, no function over 50.

Measured with `ast`, docstrings and comments included: what a reader has to
take in at once. A part that outgrows its limit is two concepts sharing a
home (issue 14); split it rather than raise the limit. The chat page's own
files in static/ (not the vendored libraries) are held to the module limit too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ROOT

MODULE_LINES = 400
CLASS_LINES = 200
FUNCTION_LINES = 50
MODULES = sorted((ROOT / "webapp").rglob("*.py"))
PAGE_FILES = sorted(
    path
    for path in (ROOT / "static").rglob("*")
    if path.suffix in (".js", ".css") and "vendor" not in path.relative_to(ROOT / "static").parts
)


def oversized(source: str) -> Iterator[str]:
    """What in this module's source is over its limit."""
    lines = len(source.splitlines())
    if lines > MODULE_LINES:
        yield f"the module is {lines} lines (at most {MODULE_LINES})"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            kind, limit = "class", CLASS_LINES
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind, limit = "function", FUNCTION_LINES
        else:
            continue
        length = node.end_lineno - node.lineno + 1
        if length > limit:
            yield f"{kind} {node.name} at line {node.lineno} is {length} lines (at most {limit})"


def test_there_are_modules_to_measure() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_part_of_webapp_is_within_its_limit(path: Path) -> None:
    found = list(oversized(path.read_text()))
    assert not found, f"{path.relative_to(ROOT)}: " + "; ".join(found)


def test_the_measure_finds_what_is_too_long() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES))
    assert list(oversized(f"def f():\n{body}\n"))
    assert not list(oversized(f"def f():\n{body[: body.rindex(chr(10))]}\n"))
    methods = "\n".join(f"    def m{i}(self):\n        pass\n" for i in range(CLASS_LINES // 3 + 1))
    assert [x for x in oversized(f"class C:\n{methods}") if x.startswith("class")]
    assert list(oversized("x = 1\n" * (MODULE_LINES + 1)))


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_of_the_page_is_within_the_module_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MODULE_LINES, (
        f"{path.relative_to(ROOT)} is {lines} lines (at most {MODULE_LINES})"
    )


def test_the_page_has_files_to_measure() -> None:
    assert len(PAGE_FILES) > 5
