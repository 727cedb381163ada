"""The load sweep's figures: one Step per system, transport and rate; the knee; the tables.

Nothing here runs a process: sweep.py measures the steps, this module judges
and prints them, chart.py draws them. So the rule that decides the knee can
be tested on steps written by hand (tests/test_bench_sweep.py).

The knee (issue 25) is the highest delivery rate whose step kept the p99
latency within MAX_P99_MS and lost nothing. Rates are tried from the lowest
up, and a system stops being loaded on a transport once STOP_AFTER steps in
a row have failed: the rates above would fail too, and take the longest.

Deliberate choices:
- The p99 judged is that of the deltas sent once every answer had begun
  (the load client's `latency_streaming`). relay's 100 answers all start in
  the first second of a step (the POSTs, the SQL claims, the model
  requests), and in a 10 s step that second holds 5-10 % of the deliveries
  at every rate: the whole step's p99 would measure those starts, which do
  not change with the rate, not the delivery rate. Nchan's publisher has no
  such start. The whole step's p99 is kept beside it (`p99_with_starts_ms`).
- A step that fails below the knee does not lower it: one noisy step on a
  shared machine would otherwise decide the figure. It is listed beside the
  knee instead (`failed below`), so it is not hidden either.
- A failed step whose load client used a whole core (LOAD_BOUND_PERCENT),
  or whose load's core was full (LOAD_CORE_BUSY_PERCENT: the client, the
  model server or Nchan's publisher, the bench, and anything else there)
  measured the load, not the server: when every step above the knee is
  such a step, the knee is printed as a lower bound (`>= 20,000`), as it is
  when the highest rate tried passed.
- CPU is counted per operation for three roles: the web process (nginx for
  Nchan), the worker (Nchan has none: its publisher is on the load's core,
  as relay's model server is) and Redis. CPU seconds of a role over the
  measured window, divided by what the step did: deliveries received, polls
  answered, deltas written (Nchan: messages published). The window holds
  each answer's start too (the POST, the SQL claim, the model request),
  spread over its deltas: 10 an answer at 1,000/s, 400 at 40,000/s. So
  compare the two systems at one rate, not one rate with another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.report import columns, fmt

MAX_P99_MS = 25.0
STOP_AFTER = 2
# The load client is one asyncio thread: at this much of a core it is what limits.
LOAD_BOUND_PERCENT = 85.0
# Under --pin the load (client, model server or publisher, the bench) shares one
# core with whatever else runs there: this busy, the load falls behind its rate.
LOAD_CORE_BUSY_PERCENT = 90.0
RELAY, NCHAN = "relay", "Nchan-Redis"
SYSTEMS = (RELAY, NCHAN)
SSE, LONGPOLL = "SSE", "long-poll"
TRANSPORTS = (SSE, LONGPOLL)
ROLES = ("web", "worker", "redis")
OPERATIONS = ("delivery", "poll", "delta")


@dataclass
class Step:
    """What one system did over one transport at one delivery rate."""

    system: str
    transport: str
    rate: float  # deliveries per second asked for
    expected: int = 0
    deliveries: int = 0
    # Deltas that never arrived, with those of loops that never finished.
    lost: int = 0
    # Of the deltas sent once every answer streams: what the knee is judged on.
    p50_ms: float | None = None
    p99_ms: float | None = None
    p99_with_starts_ms: float | None = None  # of every delta of the step
    seconds: float = 0.0  # the measured window
    deltas: int = 0  # written by the worker (relay), published (Nchan)
    polls: int = 0
    # CPU seconds in the window by role (ROLES); a system without a role has no key.
    cpu: dict[str, float] = field(default_factory=dict)
    # % of a core: the system on its core, anyone else there (unpinned: on the
    # machine), anyone else on the load's core (pinned only), the load client.
    core_percent: float | None = None
    others_percent: float | None = None
    load_others_percent: float | None = None
    client_percent: float = 0.0
    load_core_percent: float | None = None  # how busy the load's core was, all told (pinned)
    # p99 of how late the load client's own event loop ran: its share of the latencies.
    client_lag_ms: float | None = None
    # What failed the step outright: its traceback, or prompts or messages refused.
    error: str | None = None
    # The load client's whole answer (latency split, loop lag, streams without an end).
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Within the knee's bound: p99 <= MAX_P99_MS and nothing lost."""
        return (
            self.error is None
            and self.lost == 0
            and self.p99_ms is not None
            and self.p99_ms <= MAX_P99_MS
        )

    @property
    def load_bound(self) -> bool:
        """The load, not the system, was the limit: the client or the load's core was full."""
        core = self.load_core_percent or 0.0
        return self.client_percent >= LOAD_BOUND_PERCENT or core >= LOAD_CORE_BUSY_PERCENT

    def per(self, operation: str) -> dict[str, float | None]:
        """Microseconds of CPU per `operation` (OPERATIONS) of each role; None where none."""
        count = {"delivery": self.deliveries, "poll": self.polls, "delta": self.deltas}[operation]
        return {
            role: 1e6 * self.cpu[role] / count if count and role in self.cpu else None
            for role in ROLES
        }


@dataclass(frozen=True)
class Knee:
    """The highest rate that passed, and how far to trust it."""

    rate: float | None  # None: no rate passed
    # True when no rate above it failed for the system's own reasons (it is
    # the highest rate tried, or the client was the limit above it).
    at_least: bool
    failed_below: tuple[float, ...] = ()

    def text(self, lowest: float) -> str:
        if self.rate is None:
            return f"< {fmt(int(lowest))}"
        return f"{'>= ' if self.at_least else ''}{fmt(int(self.rate))}"


def past_knee(steps: list[Step]) -> bool:
    """True once the last STOP_AFTER steps (of one system and transport) all failed."""
    return len(steps) >= STOP_AFTER and not any(s.passed for s in steps[-STOP_AFTER:])


def knee(steps: list[Step]) -> Knee:
    """The knee of one system over one transport, from its steps in any order."""
    ordered = sorted(steps, key=lambda s: s.rate)
    passed = [s.rate for s in ordered if s.passed]
    if not passed:
        return Knee(None, False)
    top = passed[-1]
    above = [s for s in ordered if s.rate > top]
    return Knee(
        top,
        at_least=all(s.load_bound for s in above),
        failed_below=tuple(s.rate for s in ordered if s.rate < top and not s.passed),
    )


def of(steps: list[Step], system: str, transport: str) -> list[Step]:
    return [s for s in steps if s.system == system and s.transport == transport]


def knees(steps: list[Step]) -> dict[tuple[str, str], Knee]:
    """The knee of each (system, transport) that has steps."""
    return {
        (system, transport): knee(of(steps, system, transport))
        for transport in TRANSPORTS
        for system in SYSTEMS
        if of(steps, system, transport)
    }


def _per_text(step: Step, operation: str) -> str:
    values = step.per(operation)
    if all(v is None for v in values.values()):
        return ""
    return " / ".join("-" if v is None else fmt(v) for v in values.values())


def _others(step: Step) -> str:
    """Other programs' CPU: on the system's core / on the load's, or on the whole machine."""
    if step.load_others_percent is None:
        return _ms(step.others_percent)
    return f"{fmt(step.others_percent or 0.0)} / {fmt(step.load_others_percent)}"


def _load(step: Step) -> str:
    """The client's CPU / the load's whole core (pinned), and whether it was the limit."""
    text = fmt(step.client_percent)
    if step.load_core_percent is not None:
        text += f" / {fmt(step.load_core_percent)}"
    return text + (" load-bound" if step.load_bound else "")


def _ms(value: float | None) -> str:
    return "-" if value is None else fmt(value)


CPU_HEADER = tuple(f"CPU/{op}" for op in OPERATIONS)
# Printed under the tables: what the columns hold.
LEGEND = (
    "CPU/delivery, CPU/poll, CPU/delta: us of CPU per operation, each as web / worker / redis "
    f"({NCHAN}: nginx / - / redis)\n"
    "core %: the system's processes, % of the core they run on; others %: other programs, on "
    "that core / on the load's (unpinned: on the machine); load %: the load client's CPU / "
    "the load's core, all told (load-bound from "
    f"{LOAD_BOUND_PERCENT:g} / {LOAD_CORE_BUSY_PERCENT:g} %); client lag: p99 of the client's "
    "event-loop lateness, ms"
)


def steps_table(steps: list[Step]) -> str:
    """Every step, the two systems beside each other at each rate."""
    lines = [
        ("transport", "rate /s", "system", "p50 ms", "p99 ms", "with starts", "lost", "within")
        + ("core %", "others %", "load %", "client lag", *CPU_HEADER)
    ]
    for step in sorted(steps, key=lambda s: (TRANSPORTS.index(s.transport), s.rate)):
        within = "yes" if step.passed else ("no *" if step.error else "no")
        lines.append(
            (step.transport, fmt(int(step.rate)), step.system, _ms(step.p50_ms), _ms(step.p99_ms))
            + (_ms(step.p99_with_starts_ms), fmt(step.lost), within, _ms(step.core_percent))
            + (_others(step),)
            + (_load(step),)
            + (_ms(step.client_lag_ms),)
            + tuple(_per_text(step, op) for op in OPERATIONS)
        )
    return columns(lines, right={1, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14})


def error_notes(steps: list[Step]) -> list[str]:
    """One line per step failed by an error (the `*` of the steps table): its last line."""
    return [
        f"* {step.system} {step.transport} {fmt(int(step.rate))}/s: "
        f"{step.error.strip().splitlines()[-1][:200]}"
        for step in steps
        if step.error
    ]


def ratio_text(ours: Knee, theirs: Knee, lowest: float) -> str:
    """relay's knee as a multiple of Nchan's, with `<=`/`>=` where a knee is a bound."""
    if not theirs.rate:
        return ""
    if ours.rate is None:
        return f"< {lowest / theirs.rate:.2f}x"
    value = f"{ours.rate / theirs.rate:.2f}x"
    if ours.at_least and theirs.at_least:
        return f"~{value}"
    return ("<= " if theirs.at_least else ">= " if ours.at_least else "") + value


def knee_table(steps: list[Step]) -> str:
    """Each system's knee per transport, relay's as a multiple of Nchan's, the CPU at the knee."""
    lowest = min((s.rate for s in steps), default=0.0)
    found = knees(steps)
    lines = [
        ("transport", "system", "knee /s", "x Nchan", "p99 there", "failed below", *CPU_HEADER)
    ]
    for (system, transport), k in found.items():
        theirs = found.get((NCHAN, transport))
        times = ratio_text(k, theirs, lowest) if system == RELAY and theirs else ""
        there = next((s for s in of(steps, system, transport) if s.rate == k.rate), None)
        lines.append(
            (transport, system, k.text(lowest), times, _ms(there.p99_ms if there else None))
            + (", ".join(fmt(int(r)) for r in k.failed_below),)
            + tuple(_per_text(there, op) if there else "" for op in OPERATIONS)
        )
    return columns(lines, right={2, 3, 4, 6, 7, 8})
