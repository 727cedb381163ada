"""`--sweep` (issue 25): the fan-outs at rising delivery rates, relay and Nchan-Redis side by side.

At each rate, for SSE and then for long-poll, relay's fan-out
(fanouts.py) and then Nchan's (nchan.py) run with the same clients, the
same sessions and the same step length; only the deltas per second of each
answer rise. Each step is judged in knee.py; a system stops on a transport
after knee.STOP_AFTER failed steps in a row, and the whole sweep prints the
knee of each, the CPU per operation, and draws chart.py's PNG.

Deliberate choices:
- The shape stays, the rate rises: 100 sessions x 10 clients at 1 to 40
  deltas/s each (1,000 to 40,000 deliveries/s), 10 s per step, so a step's
  CPU per delivery, per poll and per delta compare along the sweep, and
  20,000/s is scenario 2's load.
- The two systems alternate rate by rate rather than one after the other,
  so noise from the rest of a shared machine falls on both alike.
- Every step is bounded: fixed count and length, `grace_seconds` for
  stragglers, after which what did not arrive is lost. With two failures
  at most above each knee, a pinned sweep takes about 5 to 10 minutes.
- A step that cannot run (a process that would not start) fails, with its
  error in the results, and the sweep goes on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench import fanouts, knee, nchan
from bench.cpu import OTHERS
from bench.fanouts import Load
from bench.knee import LONGPOLL, NCHAN, RELAY, SSE, Step
from bench.report import fmt, say
from bench.stack import Stack

RATES = (1000, 2000, 5000, 10000, 20000, 40000)
# What each role of knee.ROLES is made of, in each system's CpuWindow.
PROCESSES = {RELAY: fanouts.SYSTEM, NCHAN: nchan.SYSTEM}
RUNS: dict[tuple[str, str], Callable[[Stack, Load], dict[str, Any]]] = {
    (RELAY, SSE): fanouts.sse_fanout,
    (RELAY, LONGPOLL): fanouts.longpoll_fanout,
    (NCHAN, SSE): nchan.sse_fanout,
    (NCHAN, LONGPOLL): nchan.longpoll_fanout,
}


@dataclass
class SweepPlan:
    """The rates, the fan-out's shape and each step's length; `quick()` is the smoke run."""

    rates: tuple[int, ...] = RATES
    sessions: int = 100
    per_session: int = 10
    step_seconds: float = 10.0
    grace_seconds: float = 10.0

    @classmethod
    def quick(cls) -> SweepPlan:
        return cls(rates=(1000, 2000), sessions=10, step_seconds=2.0, grace_seconds=5.0)

    def load(self, rate: float) -> Load:
        """The fan-out that delivers `rate` per second: each answer's deltas/s make the rate."""
        per_answer = rate / (self.sessions * self.per_session)
        count = max(1, round(per_answer * self.step_seconds))
        return Load(self.sessions, self.per_session, count, per_answer, 500, self.grace_seconds)


def measured(system: str, transport: str, load: Load, run: dict[str, Any], pinned: bool) -> Step:
    """A Step from one fan-out's answer (fanouts.py or nchan.py) and its CpuWindow."""
    result, cpu = run["result"], run["cpu"]
    processes = PROCESSES[system]
    roles = [name for names in processes.values() for name in names]
    percent = cpu.percent()
    if pinned:
        core, others = cpu.on_core(roles)
        load_others = cpu.others_on_load_core(roles)
        load_core = 100 * cpu.load_core_used / cpu.seconds
    else:
        core, others = sum(percent[name] for name in roles), percent[OTHERS]
        load_others = load_core = None
    # A loop cut off at its deadline reports no losses of its own: what never
    # arrived at all counts for it.
    lost = max(result["lost"], load.expected - result["deliveries"])
    return Step(
        system,
        transport,
        load.per_second,
        expected=load.expected,
        deliveries=result["deliveries"],
        lost=lost,
        p50_ms=result["latency_streaming"]["p50_ms"],
        p99_ms=result["latency_streaming"]["p99_ms"],
        p99_with_starts_ms=result["latency"]["p99_ms"],
        seconds=cpu.seconds,
        deltas=load.sessions * load.count,
        polls=result.get("polls", 0),
        cpu={role: sum(cpu.used[name] for name in names) for role, names in processes.items()},
        core_percent=core,
        others_percent=others,
        load_others_percent=load_others,
        client_percent=percent["client"],
        load_core_percent=load_core,
        client_lag_ms=result["client_loop_lag"]["p99_ms"],
        result=result,
    )


def step(stack: Stack, plan: SweepPlan, system: str, transport: str, rate: int) -> Step:
    """One system over one transport at one rate; a step that cannot run fails with its error."""
    load = plan.load(rate)
    say(f"sweep: {transport} {rate:,}/s on {system} ({load.rate:g} deltas/s per answer)")
    try:
        run = RUNS[system, transport](stack, load)
    except Exception:  # the sweep goes on; the results keep the traceback
        traceback.print_exc()
        error = traceback.format_exc()
        return Step(system, transport, load.per_second, expected=load.expected, error=error)
    found = measured(system, transport, load, run, stack.pinning is not None)
    found.error = _refused(run)
    return found


def _refused(run: dict[str, Any]) -> str | None:
    """Why a step whose deliveries came is still no good: prompts or messages that failed."""
    errors = run.get("post_errors") or []
    published = run.get("published") or {}
    if errors:  # refused, or not answered within the POST's timeout
        return f"{len(errors)} prompt POSTs failed, first: {errors[0]}"
    if published.get("refused") or published.get("failed_channels"):
        return f"Nchan publisher: {published}"
    return None


def run(stack: Stack, plan: SweepPlan, with_nchan: bool) -> list[Step]:
    """Every step of the sweep, in the order they ran."""
    systems = (RELAY, NCHAN) if with_nchan else (RELAY,)
    steps: list[Step] = []
    started = time.monotonic()
    for transport in knee.TRANSPORTS:
        for rate in plan.rates:
            for system in systems:
                if knee.past_knee(knee.of(steps, system, transport)):
                    continue
                steps.append(step(stack, plan, system, transport, rate))
                last = steps[-1]
                say(
                    f"sweep: {'within' if last.passed else 'PAST'} the bound: p99 "
                    f"{fmt(last.p99_ms)} ms, lost {last.lost:,} "
                    f"({time.monotonic() - started:.0f} s into the sweep)"
                )
    return steps


def details(plan: SweepPlan, steps: list[Step], chart: str | None) -> dict[str, Any]:
    """What goes into the results' JSON: the plan, every step and the knees."""
    return {
        "plan": asdict(plan),
        "bound": {"p99_ms": knee.MAX_P99_MS, "lost": 0},
        "steps": [asdict(s) for s in steps],
        "knees": [
            {"system": system, "transport": transport, **asdict(k)}
            for (system, transport), k in knee.knees(steps).items()
        ],
        "chart": chart,
    }


def busiest(steps: list[Step], pinned: bool) -> str:
    """How much other programs took in the worst step, where the system and the load ran."""
    others = max((s.others_percent or 0.0 for s in steps), default=0.0)
    if not pinned:
        return f"up to {others:.0f} % of a core on the machine"
    load = max((s.load_others_percent or 0.0 for s in steps), default=0.0)
    return f"up to {others:.0f} % of the system's core and {load:.0f} % of the load's"


def chart_title(plan: SweepPlan, steps: list[Step], meta: dict[str, Any]) -> str:
    """What the chart shows, of which commit, on what CPU, and how quiet the machine was."""
    placement = "on one pinned core" if meta.get("pinned") else "not pinned"
    commit = f"{meta.get('commit')}{'+' if meta.get('dirty_files') else ''}"
    return (
        f"relay {commit} and Nchan-Redis {placement} ({meta.get('cpu_model') or '?'}); "
        f"other programs: {busiest(steps, bool(meta.get('pinned')))}\n"
        f"p99 against delivery rate: {plan.sessions} sessions x {plan.per_session} clients, "
        f"{plan.step_seconds:g} s a step"
    )


def text(plan: SweepPlan, steps: list[Step], meta: dict[str, Any], chart: str | None) -> str:
    """The sweep as printed: what ran on what, every step, the knees, the chart's path."""
    lines = [
        f"load sweep: {plan.sessions} sessions x {plan.per_session} clients, "
        f"{plan.step_seconds:g} s a step; the knee is the highest rate with "
        f"p99 <= {knee.MAX_P99_MS:g} ms and 0 lost (p99 of the deltas sent once every "
        "answer streams; `with starts`: of them all)",
        f"CPU: {meta.get('cpu_model') or '?'} (lscpu model name), {meta.get('cpus')} CPUs; "
        f"{meta.get('pinned') or 'not pinned: a smoke run, its figures are not to quote'}",
        "",
        knee.steps_table(steps),
        *knee.error_notes(steps),
        "",
        knee.knee_table(steps),
        knee.LEGEND,
        f"other programs during a step: {busiest(steps, bool(meta.get('pinned')))}",
    ]
    if chart:
        lines.append(f"chart: {chart}")
    return "\n".join(lines)
