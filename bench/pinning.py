"""`--pin`: the system under test on one core, the load on another (issue 18).

Unpinned, web, worker, Redis, the model server and the load client share
both cores, so the system under test borrows the load's core and the load
borrows its. Pinned, what is measured has one core to itself: web, worker
and their redis-server (and, for the Nchan anchor, nginx and its
redis-server) on the first core this process may use; the load client, the
model server, the Nchan publisher and the bench itself on the second.

Deliberate choices:
- Affinity is set with `sched_setaffinity` on every thread of a process and
  of its descendants, right after it is started: what it forks or spawns
  later inherits it, and threads that started before we got there (a
  redis-server's background threads) are caught by the walk.
- Other programs on the machine are not pinned away from the cores (the
  bench has no say over them): the CPU they take on the system's core is
  measured and printed instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil


def pin_tree(pid: int, cpus: frozenset[int]) -> None:
    """Every thread of `pid` and of its descendants onto `cpus` (gone ones are skipped)."""
    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in family:
        try:
            threads = [int(tid) for tid in os.listdir(f"/proc/{process.pid}/task")]
        except FileNotFoundError:
            continue
        for tid in threads:
            try:
                os.sched_setaffinity(tid, cpus)
            except ProcessLookupError:
                pass


@dataclass(frozen=True)
class Pinning:
    """Which cores the system under test and the load run on."""

    system: frozenset[int]
    load: frozenset[int]

    @classmethod
    def choose(cls) -> Pinning:
        """The first two cores this process may use: system on the first, load on the second."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit(f"--pin needs two cores; this process may use {cpus}")
        return cls(system=frozenset(cpus[:1]), load=frozenset(cpus[1:2]))

    @property
    def system_core(self) -> int:
        return min(self.system)

    def system_process(self, pid: int) -> None:
        pin_tree(pid, self.system)

    def load_process(self, pid: int) -> None:
        pin_tree(pid, self.load)

    def describe(self) -> str:
        return (
            f"pinned: web, worker, redis-server (and nginx with its redis-server) on CPU "
            f"{self.system_core}; load client, model server, publisher and bench on CPU "
            f"{min(self.load)}"
        )
