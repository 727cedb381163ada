"""`python -m bench`: run the benchmark scenarios of issues 5, 18 and 23 and print one table.

    .venv/bin/python -m bench                     # everything, a few minutes
    .venv/bin/python -m bench --quick             # small counts, seconds per scenario
    .venv/bin/python -m bench --scenario fanout   # one scenario (repeatable)
    .venv/bin/python -m bench --scenario tools    # answers in steps: relay's time per tool call
    .venv/bin/python -m bench --pin               # system on one core, load on the other,
                                                  # and Nchan beside relay where installed
    .venv/bin/python -m bench --pin --sweep       # the load sweep alone (issue 25): the knee of
                                                  # relay and Nchan over SSE and long-poll

The Redis floor (scenario 6) runs before the scenarios, on the same
redis-server, so the other figures can be quoted as a ratio to it (a sweep
alone does not run it). The figures also go to
bench/results/latest.json (or --json PATH), with the details behind them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import nchan, scenarios, sweep
from bench.client import raise_fd_limit
from bench.pinning import Pinning
from bench.report import ROOT, Row, machine, say, table, write_json
from bench.scenarios import Plan
from bench.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
# Where a full pinned sweep draws its chart: the performance docs show it.
SWEEP_CHART = ROOT / "docs" / "performance-sweep.png"
# Above this, someone else's work (a test run, a browser) shared the cores.
BUSY_PERCENT = 20.0


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small client counts and a few seconds per scenario (a smoke run)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(scenarios.SCENARIOS),
        help="run only this scenario (repeatable); the Redis floor runs before them",
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record py-spy profiles of web and worker into DIR "
        "(needs py-spy; a profiled run's figures are not the ones to quote)",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="the SQL database of the app (default: a new SQLite file); give one the bench "
        "may fill: it migrates it and leaves its rows",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="web, worker and Redis on one core, the load client and the model server on "
        "another; where nginx and its Nchan module are installed, the fan-outs also run "
        "against Nchan with its Redis store, pinned the same way (issue 18)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (logs, database) and print its path",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an app setting for web and worker, on top of the bench's (repeatable), to "
        "compare runs with and without it, e.g. --set WORKER_JOIN_PIECES=false",
    )
    sweep_arguments(parser)
    return parser.parse_args(argv)


def sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="the load sweep (issue 25): SSE and long-poll fan-outs at 1,000 to 40,000 "
        "deliveries/s, relay and Nchan (where installed) side by side, and the knee of each; "
        "alone, unless --scenario is given too. About 5-10 minutes; --quick: about a minute",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        metavar="PNG",
        help=f"where the sweep draws p99 against rate (default: {SWEEP_CHART} for a full "
        "--pin --sweep, else beside the JSON file)",
    )


def run_scenarios(stack: Stack, plan: Plan, chosen: list[str], started: float) -> dict:
    """The Redis floor, then each chosen scenario: rows, details, failures, notes."""
    out: dict = {"rows": [], "details": {}, "failed": [], "notes": []}
    rows, details = out["rows"], out["details"]
    say("6 redis floor")
    floor_rows, floor = scenarios.floor(stack, plan)
    rows += floor_rows
    details["floor"] = floor
    for name in chosen:
        label = scenarios.LABELS[name]
        say(f"{label} ({time.monotonic() - started:.0f} s into the run)")
        try:
            scenario_rows, details[name] = scenarios.SCENARIOS[name](stack, plan, floor)
            rows += scenario_rows
        except Exception as exc:  # the next scenarios still run; the exit status says so
            out["failed"].append(name)
            details[name] = {"error": traceback.format_exc()}
            rows.append(Row(label, "FAILED", f"{type(exc).__name__}: {exc}"))
            traceback.print_exc()
            stack.stop_app()
        log_rows, log_notes, details[f"{name} logs"] = scenarios.log_rows(label, stack)
        rows += log_rows
        out["notes"] += log_notes
    return out


def chart_path(args: argparse.Namespace) -> Path:
    """Only a full pinned sweep replaces the chart in docs/: a smoke run's goes beside the JSON."""
    if args.chart:
        return args.chart
    if args.pin and not args.quick:
        return SWEEP_CHART
    return args.json.with_name(f"{args.json.stem}-sweep.png")


def sweep_chart(steps: list, plan: sweep.SweepPlan, meta: dict, path: Path) -> str:
    """Draw the sweep's chart; its path, relative to the repository when inside it."""
    from bench.chart import write_chart  # matplotlib: only a sweep needs it

    write_chart(steps, path, sweep.chart_title(plan, steps, meta))
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved)


def tidy(workdir: Path, keep: bool) -> None:
    """Remove the run's directory, unless it is asked for or something failed in it."""
    if keep:
        print(f"logs and database kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def finish_sweep(
    args: argparse.Namespace, plan: sweep.SweepPlan, steps: list, meta: dict, details: dict
) -> str:
    """The sweep's chart drawn, its figures into the JSON details; the text to print."""
    chart = sweep_chart(steps, plan, meta, chart_path(args)) if steps else None
    details["sweep"] = sweep.details(plan, steps, chart)
    return sweep.text(plan, steps, meta, chart)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    raise_fd_limit()  # every connection is a file descriptor, in our children's too
    plan = Plan.quick() if args.quick else Plan()
    plan.profile_dir = args.profile
    sweep_plan = sweep.SweepPlan.quick() if args.quick else sweep.SweepPlan()
    pinning = Pinning.choose() if args.pin else None
    # The sweep compares with Nchan pinned or not; the scenarios only pinned.
    nchan_missing = nchan.missing() if args.pin or args.sweep else None
    plan.pinned = pinning is not None
    plan.nchan = plan.pinned and nchan_missing is None
    if pinning is not None:
        # The bench posts prompts and runs the floor's producer: it is load.
        # What it starts inherits this; the system's processes are moved.
        pinning.load_process(os.getpid())
    chosen = args.scenario or ([] if args.sweep else list(scenarios.SCENARIOS))
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    ran: dict = {"rows": [], "details": {}, "failed": [], "notes": []}
    steps: list = []
    started = time.monotonic()
    stack = Stack(workdir, args.database_url, pinning)
    stack.settings = dict(setting.partition("=")[::2] for setting in args.set)
    try:
        stack.start()
        if chosen:
            ran = run_scenarios(stack, plan, chosen, started)
        if args.sweep:
            say(f"load sweep ({time.monotonic() - started:.0f} s into the run)")
            steps = sweep.run(stack, sweep_plan, with_nchan=nchan_missing is None)
    finally:
        stack.close()
        tidy(workdir, keep=args.keep or ran["failed"] or any(step.error for step in steps))

    elapsed = time.monotonic() - started
    meta = dict(
        machine(),
        database=stack.database_kind,
        quick=args.quick,
        pinned=pinning.describe() if pinning else None,
        settings=stack.settings,
        nchan=plan.nchan,
        scenarios=chosen,
        seconds=elapsed,
        plan=plan.__dict__,
    )
    sweep_text = finish_sweep(args, sweep_plan, steps, meta, ran["details"]) if args.sweep else ""
    write_json(args.json, ran["rows"], ran["details"], meta)
    show(args, meta, stack, plan, ran, nchan_missing, elapsed)
    if sweep_text:
        print(f"\n{sweep_text}")
    print(f"\n(written to {args.json})")
    return 1 if ran["failed"] else 0


def show(
    args: argparse.Namespace,
    meta: dict,
    stack: Stack,
    plan: Plan,
    ran: dict,
    nchan_missing: str | None,
    elapsed: float,
) -> None:
    """The heading, the scenarios' table, its notes and warnings."""
    print()
    print(
        f"relay bench{' --quick' if args.quick else ''}: "
        f"{meta['cpus']} CPUs ({meta['cpu_model']}),"
        f" Python {meta['python']}, {stack.database_kind}, commit {meta['commit']}"
        f"{' + local changes' if meta['dirty_files'] else ''}, {elapsed:.0f} s"
    )
    if stack.pinning is not None:
        print(stack.pinning.describe())
    if stack.settings:
        print("settings: " + " ".join(f"{k}={v}" for k, v in stack.settings.items()))
    if stack.pinning is not None or args.sweep:
        print(
            "Nchan (Redis): nginx with the Nchan module and its own redis-server, same load"
            if nchan_missing is None
            else f"Nchan not measured: {nchan_missing}"
        )
    if not ran["rows"]:
        return
    print(table(ran["rows"]))
    for note in ran["notes"]:
        print(note if len(note) <= 160 else note[:157] + "...")
    for row in ran["rows"]:
        if (
            row.figure == scenarios.OTHERS_FIGURE
            and isinstance(row.value, float)
            and row.value > BUSY_PERCENT
        ):
            print(
                f"warning: other processes used {row.value:.0f}% of a core during "
                f"'{row.scenario}': its figures include waiting for the CPU"
            )


if __name__ == "__main__":
    sys.exit(main())
