"""Figures, the table that prints them, and the JSON file that keeps them."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One figure of one scenario, with its target, its ratio to the Redis floor, and Nchan's."""

    scenario: str
    figure: str
    value: float | int | str | None
    unit: str = ""
    target: str = ""
    ok: bool | None = None  # None: no target
    floor_ratio: float | None = None
    # Under --pin: the same figure measured on Nchan with its Redis store (bench/nchan.py).
    nchan: float | int | str | None = None
    nchan_ratio: float | None = None

    def beside(self, nchan: float | int | str | None) -> Row:
        """This row with Nchan's figure, and the ratio of ours to it where both are numbers."""
        self.nchan = nchan
        if isinstance(self.value, int | float) and isinstance(nchan, int | float):
            self.nchan_ratio = ratio(self.value, nchan)
        return self


def say(message: str) -> None:
    """Progress on stderr: a full run takes minutes."""
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def at_most(limit: float) -> Callable[[float | None], bool]:
    return lambda value: value is not None and value <= limit


def at_least(limit: float) -> Callable[[float | None], bool]:
    return lambda value: value is not None and value >= limit


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or not floor:
        return None
    return value / floor


def fmt(value: float | int | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _with_unit(value: float | int | str | None, unit: str) -> str:
    text = fmt(value) + (f" {unit}" if unit and value is not None else "")
    return text if len(text) <= 60 else text[:57] + "..."


def _times(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def table(rows: list[Row]) -> str:
    """A plain-text table: scenario, figure, value, target, met?, x Redis floor.

    When some row has Nchan's figure beside it (--pin), two more columns: that
    figure, and ours as a multiple of it.
    """
    header = ("scenario", "figure", "value", "target", "met", "x floor")
    with_nchan = any(row.nchan is not None for row in rows)
    if with_nchan:
        header += ("Nchan (Redis)", "x Nchan")
    lines = [header]
    for row in rows:
        met = {True: "yes", False: "NO", None: ""}[row.ok]
        line = (
            row.scenario,
            row.figure,
            _with_unit(row.value, row.unit),
            row.target,
            met,
            "" if row.floor_ratio is None else f"{row.floor_ratio:.1f}x",
        )
        if with_nchan:
            nchan = "" if row.nchan is None else _with_unit(row.nchan, row.unit)
            line += (nchan, _times(row.nchan_ratio))
        lines.append(line)
    return columns(lines, right={2, 5, 6, 7})  # figures and ratios line up on the right


def columns(lines: list[tuple[str, ...]], right: set[int]) -> str:
    """Rows of cells as aligned plain text; the first row is the header, underlined.

    Columns whose index is in `right` are aligned on the right (figures).
    """
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for index, line in enumerate(lines):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty_files": len(git("status", "--porcelain", "--untracked-files=no").splitlines()),
    }


def write_json(path: Path, rows: list[Row], details: dict[str, Any], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"meta": meta, "rows": [asdict(r) for r in rows], "details": details},
            indent=2,
            default=str,
        )
        + "\n"
    )
