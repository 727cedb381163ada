"""The docs hold together: README.md stays short, and nothing in docs/ points at nothing.

README.md is what a newcomer reads in five minutes (issue 22); the rest is
in docs/. Checked here, as GitHub renders them:

- every relative link and image (Markdown or HTML) names a file that exists,
  and an anchor names a heading of that file;
- every path the docs name in backticks exists (`webapp/http/sse.py`,
  `serving/handover.py`, or a bare `longpoll.py`), so a moved module fails
  here until the docs follow it;
- every setting of webapp/settings/config.py has its row in one settings
  table: docs/api.md's (what a client sees) or docs/deploy.md's (running it).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.support.processes import ROOT
from webapp.settings.config import SETTINGS

README_MAX_LINES = 250
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS_TABLES = [ROOT / "docs" / "api.md", ROOT / "docs" / "deploy.md"]

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
MD_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HTML_LINK = re.compile(r"""\b(?:src|href)=["']([^"']+)["']""")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# A path in backticks: folders and a file name with an extension, or a folder ending in /.
CODE_PATH = re.compile(
    r"`((?:[\w.-]+/)*[\w-]+\.(?:py|lua|js|mjs|css|html|json|md|png|ini|toml)|(?:[\w.-]+/)+)`"
)
# A module or script named in a code block (architecture.md's drawing), backticks or not.
CODE_FILE = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.(?:py|lua))\b")
# Named in the docs, made by running something: not in the repository.
GENERATED = ("bench/results/", "var/", "test-artifacts/", ".venv/", "node_modules/")


def named_paths(text: str) -> set[str]:
    """Paths in backticks in the prose, and module names in the code blocks."""
    in_code = {name for block in FENCE.findall(text) for name in CODE_FILE.findall(block)}
    named = set(CODE_PATH.findall(prose(text))) | in_code
    return {name for name in named if not name.startswith(GENERATED)}


def prose(text: str) -> str:
    """The text without fenced code blocks: a link or path in an example is not the docs'."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter[str] = Counter()
    found = set()
    for heading in HEADING.findall(prose(path.read_text())):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return found


def relative_links(path: Path) -> list[str]:
    text = INLINE_CODE.sub("", prose(path.read_text()))
    targets = MD_LINK.findall(text) + HTML_LINK.findall(text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, mailto: ...


def broken_link(path: Path, target: str) -> str | None:
    """Why `target`, linked from `path`, does not resolve; None when it does."""
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve() if file_part else path
    if not linked.exists():
        return f"{target}: no such file"
    if anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
        return f"{target}: no heading #{anchor} in {linked.name}"
    return None


def tracked_names() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return {Path(name).name for name in listed}


def path_exists(named: str, names: set[str]) -> bool:
    """A path as the docs name it: from the repository's root, from webapp/, or a bare file name."""
    if "/" not in named.rstrip("/"):
        return named.rstrip("/") in names or (ROOT / named).exists()
    return (ROOT / named).exists() or (ROOT / "webapp" / named).exists()


def settings_rows(path: Path) -> list[str]:
    """The variables named in the first cell of each table row of `path`."""
    names = []
    for line in prose(path.read_text()).splitlines():
        if line.startswith("| `"):
            names += re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])
    return names


def test_the_readme_is_a_five_minute_read() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md is {lines} lines: move the detail to docs/"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    broken = [why for target in relative_links(path) if (why := broken_link(path, target))]
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_the_docs_name_exists(path: Path) -> None:
    names = tracked_names()
    missing = sorted(p for p in named_paths(path.read_text()) if not path_exists(p, names))
    assert not missing, f"{path.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_every_setting_has_one_row_in_the_settings_tables() -> None:
    rows = Counter(name for path in SETTINGS_TABLES for name in settings_rows(path))
    undocumented = sorted(s.name for s in SETTINGS if s.name not in rows)
    assert not undocumented, (
        f"settings without a row in {[p.name for p in SETTINGS_TABLES]}: {undocumented}"
    )
    twice = sorted(name for name, count in rows.items() if count > 1)
    assert not twice, f"settings with two rows (one place for each fact): {twice}"


def test_the_checks_find_what_is_broken(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A title, with `code`\n\n## A title, with `code`\n\n```\n[not a link](nowhere.md)\n```\n"
    )
    assert anchors(page) == {"a-title-with-code", "a-title-with-code-1"}
    assert relative_links(page) == []
    assert broken_link(page, "#a-title-with-code-1") is None
    assert broken_link(page, "#no-such-title")
    assert broken_link(page, "missing.md")
    assert slug("Tools (since 2026-12)") == "tools-since-2026-12"
    assert slug("The AI SDK's routes") == "the-ai-sdks-routes"
    assert named_paths("`webapp/x.py` `var/relay.sqlite3`\n```\nrun api.py\n```\n") == {
        "webapp/x.py",
        "api.py",
    }
    assert not path_exists("webapp/no_such_module.py", set())
    assert path_exists("read/hub.py", set()) and path_exists("hub.py", {"hub.py"})
