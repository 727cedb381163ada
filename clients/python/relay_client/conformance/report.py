"""Checks, their outcomes, and the table an operator reads.

A check is a function of the run (checks.py): it returns a short detail
when it passes, raises `Failed` with what it saw, or `Skipped` with why it
could not run. Anything else it raises (a refused connection, a timeout)
is a failure of that check too, not of the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIP = "pass", "FAIL", "skip"


class Failed(Exception):
    """The deployment broke the contract; the message says how."""


class Skipped(Exception):
    """The check could not run here; the message says why."""


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str
    detail: str
    seconds: float


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [o.name for o in self.outcomes if o.status == FAIL]

    def status(self, name: str) -> str | None:
        return next((o.status for o in self.outcomes if o.name == name), None)

    def run(self, name: str, check: Callable[[], str | None], needs: tuple[str, ...] = ()) -> None:
        missing = [n for n in needs if self.status(n) != PASS]
        started = time.monotonic()
        if missing:
            self.add(name, SKIP, f"needs {', '.join(missing)}", started)
            return
        try:
            detail = check() or ""
        except Failed as exc:
            self.add(name, FAIL, str(exc), started)
        except Skipped as exc:
            self.add(name, SKIP, str(exc), started)
        except Exception as exc:  # a check's own crash is that check's failure
            self.add(name, FAIL, f"{type(exc).__name__}: {exc}", started)
        else:
            self.add(name, PASS, detail, started)

    def add(self, name: str, status: str, detail: str, started: float) -> None:
        self.outcomes.append(Outcome(name, status, detail, time.monotonic() - started))

    def table(self) -> str:
        width = max([len(o.name) for o in self.outcomes] + [5])
        lines = [f"{'check':<{width}}  result  time    detail"]
        for o in self.outcomes:
            lines.append(f"{o.name:<{width}}  {o.status:<6}  {o.seconds:5.1f}s  {o.detail}")
        passed = sum(o.status == PASS for o in self.outcomes)
        skipped = sum(o.status == SKIP for o in self.outcomes)
        lines.append(f"{passed} passed, {len(self.failed)} failed, {skipped} skipped")
        if self.failed:
            lines.append("FAILED: " + ", ".join(self.failed))
        return "\n".join(lines)


def expect(condition: Any, message: str) -> None:
    """Failed(message) unless `condition` holds."""
    if not condition:
        raise Failed(message)
