"""Tests marked `gevent` run in a child process patched by gevent, as web and worker run.

The hub's listener and the worker's loops wait on sockets in greenlets:
only a patched process lets a test wait beside them. pytest's own process is
not patched (most tests drive real threads and subprocesses), and patching
it late would be unsound, so conftest.py swaps each `gevent` test for a
`GreenItem`. The first of a module's green tests runs all of them, in one
child started as

    python -c "<patch_all(), then pytest.main()>" --junitxml=REPORT NODEID...

and each item then reports its own outcome from the child's report. In the
child, the marked tests are ordinary tests with the same fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The whole batch of one module, startup included, must end well inside this.
BATCH_TIMEOUT_SECONDS = 300
# The child: patched before anything else is imported, then pytest as usual.
CHILD = "from gevent import monkey; monkey.patch_all(); import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))"


def turn_until(condition: Any, seconds: float = 10.0) -> None:
    """In a `gevent` test: let the event loop turn until `condition()` holds, under a deadline.

    Not a sleep: each turn serves every greenlet and socket that is ready
    (webapp/serving/priority.py, `next_turn`), and the test goes on as soon
    as what it asserts on is true.
    """
    import time

    from webapp.serving.priority import next_turn

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        next_turn()


def patched() -> bool:
    """Whether this process runs under gevent's monkey-patching."""
    from gevent import monkey

    return monkey.is_module_patched("socket")


class GreenItem(pytest.Item):
    """Stands in for a `gevent` test in the unpatched process; its outcome comes from the child."""

    def __init__(self, *, original: pytest.Item, batch: Batch, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.original = original
        self.batch = batch
        self.own_markers = list(original.own_markers)
        # The first item of a batch waits for all of it.
        self.add_marker(pytest.mark.timeout(BATCH_TIMEOUT_SECONDS + 30))

    def runtest(self) -> None:
        outcome, text = self.batch.outcome(self.original)
        if outcome == "skipped":
            pytest.skip(text or "skipped in the gevent process")
        if outcome != "passed":
            raise GreenFailure(text)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, GreenFailure):
            return f"in the gevent process:\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.original.reportinfo()


class GreenFailure(Exception):
    """A test failed in the gevent process."""


class Batch:
    """The green tests of one module, run together in one child when the first is due."""

    def __init__(self) -> None:
        self.items: list[pytest.Item] = []
        self._results: dict[str, tuple[str, str]] | None = None
        self._log = ""

    def outcome(self, item: pytest.Item) -> tuple[str, str]:
        if self._results is None:
            self._results = self._run()
        return self._results.get(item.name, ("failed", self._log or "no result for this test"))

    def _run(self) -> dict[str, tuple[str, str]]:
        with tempfile.TemporaryDirectory(prefix="relay-green-") as folder:
            report = Path(folder) / "report.xml"
            argv = [
                sys.executable,
                "-c",
                CHILD,
                f"--junitxml={report}",
                "-p",
                "no:cacheprovider",
                "-q",
                *(item.nodeid for item in self.items),
            ]
            done = subprocess.run(
                argv,
                cwd=ROOT,
                env=dict(os.environ),
                capture_output=True,
                text=True,
                timeout=BATCH_TIMEOUT_SECONDS,
            )
            self._log = (done.stdout + done.stderr)[-6000:]
            if not report.exists():
                return {}
            return results(report)


def results(report: Path) -> dict[str, tuple[str, str]]:
    """{test name: (outcome, text)} from a JUnit XML report."""
    found: dict[str, tuple[str, str]] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, text = "failed", (child.text or child.get("message") or "")
            elif child.tag == "skipped":
                outcome, text = "skipped", child.get("message") or ""
        found[case.get("name", "")] = (outcome, text)
    return found


def swap_green_items(items: list[pytest.Item]) -> None:
    """Replace each `gevent` test with a GreenItem, one Batch per module (conftest's hook)."""
    batches: dict[str, Batch] = {}
    for index, item in enumerate(items):
        if item.get_closest_marker("gevent") is None:
            continue
        module = item.nodeid.split("::", 1)[0]
        batch = batches.setdefault(module, Batch())
        batch.items.append(item)
        items[index] = GreenItem.from_parent(
            item.parent, name=item.name, original=item, batch=batch
        )
