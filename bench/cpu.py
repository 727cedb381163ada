"""What CPU each process used during a measured window, and what everyone else used."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from bench.stack import cpu_seconds

OTHERS = "other processes"
_BUSY = ("user", "nice", "system", "irq", "softirq", "steal")


def _busy(times: object) -> float:
    return sum(getattr(times, part, 0.0) for part in _BUSY)


def threads_cpu_seconds(pid: int) -> float:
    """CPU time of a process's live threads, to the nanosecond (/proc/<pid>/task/*/schedstat).

    /proc/<pid>/stat counts in clock ticks (10 ms), too coarse for a window in
    which a fast server spends a few tens of milliseconds. Threads that exited
    are not counted: use it on processes whose threads live as long as they do.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy, on every core (/proc/stat)."""
    return _busy(psutil.cpu_times())


def core_busy_seconds(cpu: int) -> float:
    """CPU time the machine has spent busy on core `cpu`, whoever ran there (/proc/stat)."""
    return _busy(psutil.cpu_times(percpu=True)[cpu])


class CpuWindow:
    """CPU time each process used inside the `with` block, as % of one core.

    Also what every other process on the machine used meanwhile: other work
    on a 2-core machine (a test run, a browser) shows up in the latencies.
    Given a `core` (under --pin, the system under test's), also how busy that
    core was, so that what others ran there can be told apart from ours.
    """

    def __init__(
        self, pids: dict[str, int], core: int | None = None, precise: bool = False
    ) -> None:
        self.pids = dict(pids, bench=os.getpid())
        self.core = core
        # precise: read each process's threads to the nanosecond, for short windows.
        self.reader = threads_cpu_seconds if precise else cpu_seconds

    def _ours(self) -> dict[str, float]:
        used = {role: self.reader(pid) for role, pid in self.pids.items()}
        me = psutil.Process()
        used["bench"] += sum(
            c.cpu_times().user + c.cpu_times().system
            for c in me.children(recursive=True)
            if c.pid not in self.pids.values()
        )
        return used

    def __enter__(self) -> CpuWindow:
        self.started = time.monotonic()
        self.before = self._ours()
        self.machine_before = machine_busy_seconds()
        if self.core is not None:
            self.core_before = core_busy_seconds(self.core)
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started
        after = self._ours()
        self.used = {role: after[role] - self.before[role] for role in after}
        machine = machine_busy_seconds() - self.machine_before
        self.used[OTHERS] = max(0.0, machine - sum(self.used.values()))
        if self.core is not None:
            self.core_used = core_busy_seconds(self.core) - self.core_before

    def percent(self) -> dict[str, float]:
        return {role: 100 * used / self.seconds for role, used in self.used.items()}

    def on_core(self, roles: list[str]) -> tuple[float, float]:
        """% of the pinned core that `roles` used, and that everything else there used."""
        ours = sum(self.used[role] for role in roles)
        others = max(0.0, self.core_used - ours)
        return 100 * ours / self.seconds, 100 * others / self.seconds
