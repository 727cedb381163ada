"""`--profile DIR`: py-spy samples of the web and worker processes during a scenario.

py-spy (https://github.com/benfred/py-spy) reads a running interpreter's
stacks from outside, so the app is profiled unchanged. Each profiled process
gets `<scenario>-<role>.txt` (collapsed stacks: open it with speedscope or
flamegraph.pl) and `<scenario>-<role>.top.txt`, the functions with the most
samples, by own time and by time including callees.

`--nonblocking` keeps the sampled process running while it is read; sampling
at 100 Hz still costs it a few percent, so figures from a profiled run are
not the ones to quote.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE_HZ = 100
TOP = 25


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """Samples the given processes while the `with` block runs."""

    def __init__(self, out_dir: Path | None, scenario: str, pids: dict[str, int]) -> None:
        self.out_dir = out_dir
        self.scenario = scenario.replace(" ", "-")
        self.pids = pids
        self.procs: list[tuple[str, Path, subprocess.Popen]] = []

    def __enter__(self) -> Profiler:
        binary = py_spy()
        if self.out_dir is None:
            return self
        if binary is None:
            print("  --profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for role, pid in self.pids.items():
            path = self.out_dir / f"{self.scenario}-{role}.txt"
            proc = subprocess.Popen(
                [
                    binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(RATE_HZ),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.procs.append((role, path, proc))
        return self

    def __exit__(self, *exc: object) -> None:
        for _, _, proc in self.procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for _, path, proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if path.exists():
                path.with_suffix(".top.txt").write_text(summarise(path.read_text()))


def summarise(collapsed: str) -> str:
    """The functions with the most samples, own and inclusive, from collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples at {RATE_HZ} Hz", "", "own time:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(TOP)]
    lines += ["", "including callees:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(TOP)]
    return "\n".join(lines) + "\n"
