"""The chat page's files in static/: vendored libraries pinned, no eval, modules that resolve,
and the JS client (clients/js/src) served beside them as the page's transport.

The page's Content-Security-Policy has no 'unsafe-eval' (webapp/pages.py),
so a library that evaluated strings would break under it; and the vendored
files must be the ones static/vendor/README.md names, byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ROOT

STATIC = ROOT / "static"
CLIENT = ROOT / "clients" / "js" / "src"
CLIENT_URL = "./client/"
VENDOR = STATIC / "vendor"
# The client's files run on the page too, under the same policy.
SCRIPTS = sorted(STATIC.rglob("*.js")) + sorted(CLIENT.glob("*.js"))
OURS = sorted(path for path in STATIC.rglob("*.js") if VENDOR not in path.parents)
# `eval(`, `new Function`, `Function(`, and timers given a string: each runs text as code.
EVALUATES = re.compile(
    r"\beval\s*\(|\bnew\s+Function\b|(?<![\w.])Function\s*\(|\bset(?:Timeout|Interval)\s*\(\s*[\"'`]"
)
# A row of the README's table: | `file` | package | path | licence | `sha256` |
PINNED = re.compile(r"^\| `([\w.-]+\.js)` \|.*\| `([0-9a-f]{64})` \|$", re.MULTILINE)
IMPORT = re.compile(r"""^import\s[^;]*?from\s+"([^"]+)";""", re.MULTILINE | re.DOTALL)


def pinned() -> dict[str, str]:
    return dict(PINNED.findall((VENDOR / "README.md").read_text()))


def test_every_vendored_file_is_pinned_and_unchanged() -> None:
    table = pinned()
    files = {path.name for path in VENDOR.glob("*.js")}
    assert files and set(table) == files, "static/vendor/README.md names each vendored file"
    for name, digest in table.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_every_vendored_file_has_its_licence_beside_it() -> None:
    readme = (VENDOR / "README.md").read_text()
    for licence in re.findall(r"`(licenses/[\w.-]+\.txt)`", readme):
        assert (VENDOR / licence).stat().st_size > 500, licence


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_script_evaluates_strings(path: Path) -> None:
    found = [m.group(0) for m in EVALUATES.finditer(path.read_text())]
    assert not found, f"{path.relative_to(ROOT)} evaluates strings: {found}"


def test_the_eval_check_finds_what_it_should() -> None:
    for code in ["eval('1')", "new Function('x')", "Function('x')()", "setTimeout('x()', 1)"]:
        assert EVALUATES.search(code), code
    for code in ["tablevalues", "isRegexOrFunction(x)", "setTimeout(f, 1)", "x.Function(1)"]:
        assert not EVALUATES.search(code), code


@pytest.mark.parametrize("path", OURS, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_opens_with_a_docstring_and_imports_files_that_exist(path: Path) -> None:
    source = path.read_text()
    assert source.startswith("/**"), f"{path.name} opens with a /** docstring */"
    for target in IMPORT.findall(source):
        assert target.startswith("./"), f"{path.name}: {target} is not a file of ours"
        assert resolve(path.parent, target).is_file(), (
            f"{path.name} imports {target}, which is missing"
        )


def resolve(folder: Path, target: str) -> Path:
    """An import's file: /static/client/ serves the JS client's own files (webapp/http/pages.py)."""
    if folder == STATIC and target.startswith(CLIENT_URL):
        return CLIENT / target.removeprefix(CLIENT_URL)
    return folder / target


def test_the_page_imports_the_client_and_gets_it_as_javascript(client: httpx.Client) -> None:
    """One copy of the transport: the page's modules import clients/js/src as it is."""
    imports = {t for path in OURS for t in IMPORT.findall(path.read_text())}
    assert "./client/index.js" in imports
    assert not (STATIC / "transport.js").exists() and not (STATIC / "api.js").exists()
    page_module = client.get("/static/chat.js")
    for name in ("index.js", "session.js", "connection.js", "transports.js"):
        response = client.get(f"/static/client/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("text/javascript"), name
        assert response.text == (CLIENT / name).read_text()
        assert response.headers.get("cache-control") == page_module.headers.get("cache-control")
    for outside in ("../package.json", "../../../README.md", "index.d.ts", ""):
        assert client.get(f"/static/client/{outside}").status_code == 404, outside
