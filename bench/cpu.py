"""What CPU each process used during a measured window, and what everyone else used."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from bench.pinning import Pinning
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
    core was, so that what others ran there can be told apart from ours; the
    same for a `load_core` (the load's), whose others slow the load client.
    """

    def __init__(
        self,
        pids: dict[str, int],
        core: int | None = None,
        precise: bool = False,
        load_core: int | None = None,
    ) -> None:
        self.pids = dict(pids, bench=os.getpid())
        self.core = core
        self.load_core = load_core
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
        self.cores_before = {core: core_busy_seconds(core) for core in self._cores()}
        return self

    def _cores(self) -> list[int]:
        return [core for core in (self.core, self.load_core) if core is not None]

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started
        after = self._ours()
        self.used = {role: after[role] - self.before[role] for role in after}
        machine = machine_busy_seconds() - self.machine_before
        self.used[OTHERS] = max(0.0, machine - sum(self.used.values()))
        used = {core: core_busy_seconds(core) - self.cores_before[core] for core in self._cores()}
        self.core_used = used.get(self.core, 0.0)
        self.load_core_used = used.get(self.load_core, 0.0)

    def percent(self) -> dict[str, float]:
        return {role: 100 * used / self.seconds for role, used in self.used.items()}

    def on_core(self, roles: list[str]) -> tuple[float, float]:
        """% of the pinned core that `roles` used, and that everything else there used."""
        ours = sum(self.used[role] for role in roles)
        others = max(0.0, self.core_used - ours)
        return 100 * ours / self.seconds, 100 * others / self.seconds

    def others_on_load_core(self, system_roles: list[str]) -> float:
        """% of the load's core that other programs used: every role but the system's is load."""
        load = sum(used for role, used in self.used.items() if role not in [*system_roles, OTHERS])
        return 100 * max(0.0, self.load_core_used - load) / self.seconds


def pinned_window(pids: dict[str, int], pinning: Pinning | None) -> CpuWindow:
    """A fan-out's window: under --pin, also how busy the system's core and the load's were."""
    if pinning is None:
        return CpuWindow(pids)
    return CpuWindow(pids, pinning.system_core, load_core=min(pinning.load))
