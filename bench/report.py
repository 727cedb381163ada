"""Figures, the table that prints them, and the JSON file that keeps them."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One figure of one scenario, with its target and its ratio to the Redis floor."""

    scenario: str
    figure: str
    value: float | int | str | None
    unit: str = ""
    target: str = ""
    ok: bool | None = None  # None: no target
    floor_ratio: float | None = None


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


def table(rows: list[Row]) -> str:
    """A plain-text table: scenario, figure, value, target, met?, x Redis floor."""
    header = ("scenario", "figure", "value", "target", "met", "x floor")
    lines = [header]
    for row in rows:
        value = fmt(row.value) + (f" {row.unit}" if row.unit and row.value is not None else "")
        value = value if len(value) <= 60 else value[:57] + "..."
        met = {True: "yes", False: "NO", None: ""}[row.ok]
        lines.append(
            (
                row.scenario,
                row.figure,
                value,
                row.target,
                met,
                "" if row.floor_ratio is None else f"{row.floor_ratio:.1f}x",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        cells = [
            line[0].ljust(widths[0]),
            line[1].ljust(widths[1]),
            line[2].rjust(widths[2]),
            line[3].ljust(widths[3]),
            line[4].ljust(widths[4]),
            line[5].rjust(widths[5]),
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
