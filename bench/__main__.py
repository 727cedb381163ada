"""`python -m bench`: run the benchmark scenarios of issues 5 and 18 and print one table.

    .venv/bin/python -m bench                     # everything, a few minutes
    .venv/bin/python -m bench --quick             # small counts, seconds per scenario
    .venv/bin/python -m bench --scenario fanout   # one scenario (repeatable)
    .venv/bin/python -m bench --pin               # system on one core, load on the other,
                                                  # and Nchan beside relay where installed

The Redis floor (scenario 6) always runs first, on the same redis-server, so
the other figures can be quoted as a ratio to it. The figures also go to
bench/results/latest.json (or --json PATH), with the details behind them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import nchan, scenarios
from bench.pinning import Pinning
from bench.report import Row, machine, say, table, write_json
from bench.scenarios import Plan
from bench.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
# Above this, someone else's work (a test run, a browser) shared the cores.
BUSY_PERCENT = 20.0


def main(argv: list[str] | None = None) -> int:
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
        help="run only this scenario (repeatable); the floor always runs",
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
    args = parser.parse_args(argv)

    # Every connection is a file descriptor, in this process's children too.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    plan = Plan.quick() if args.quick else Plan()
    plan.profile_dir = args.profile
    pinning = Pinning.choose() if args.pin else None
    nchan_missing = nchan.missing() if args.pin else None
    plan.pinned = pinning is not None
    plan.nchan = plan.pinned and nchan_missing is None
    if pinning is not None:
        # The bench posts prompts and runs the floor's producer: it is load.
        # What it starts inherits this; the system's processes are moved.
        pinning.load_process(os.getpid())
    chosen = args.scenario or list(scenarios.SCENARIOS)
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    rows: list[Row] = []
    details: dict = {}
    failed: list[str] = []
    notes: list[str] = []
    started = time.monotonic()
    stack = Stack(workdir, args.database_url, pinning)
    try:
        stack.start()
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
                failed.append(name)
                details[name] = {"error": traceback.format_exc()}
                rows.append(Row(label, "FAILED", f"{type(exc).__name__}: {exc}"))
                traceback.print_exc()
                stack.stop_app()
            log_rows, log_notes, details[f"{name} logs"] = scenarios.log_rows(label, stack)
            rows += log_rows
            notes += log_notes
    finally:
        stack.close()
        if args.keep or failed:
            print(f"logs and database kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - started
    meta = dict(
        machine(),
        database=stack.database_kind,
        quick=args.quick,
        pinned=pinning.describe() if pinning else None,
        nchan=plan.nchan,
        scenarios=chosen,
        seconds=elapsed,
        plan=plan.__dict__,
    )
    write_json(args.json, rows, details, meta)
    print()
    print(
        f"relay bench{' --quick' if args.quick else ''}: "
        f"{meta['cpus']} CPUs ({meta['cpu_model']}),"
        f" Python {meta['python']}, {stack.database_kind}, commit {meta['commit']}"
        f"{' + local changes' if meta['dirty_files'] else ''}, {elapsed:.0f} s"
    )
    if pinning is not None:
        print(pinning.describe())
        print(
            "Nchan (Redis): nginx with the Nchan module and its own redis-server, same load"
            if plan.nchan
            else f"Nchan not measured: {nchan_missing}"
        )
    print(table(rows))
    for note in notes:
        print(note if len(note) <= 160 else note[:157] + "...")
    for row in rows:
        if (
            row.figure == scenarios.OTHERS_FIGURE
            and isinstance(row.value, float)
            and row.value > BUSY_PERCENT
        ):
            print(
                f"warning: other processes used {row.value:.0f}% of a core during "
                f"'{row.scenario}': its figures include waiting for the CPU"
            )
    print(f"\n(written to {args.json})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
