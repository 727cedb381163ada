"""The scenarios of issues 5, 18 and 23. Each returns its rows for the table and its raw details.

Every scenario but the floor starts a fresh web process (one gunicorn gevent
worker) and worker.py, so what one leaves behind (memory, connections) does
not count against the next.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import fanouts, nchan, redis_floor, tool_steps
from bench.client import percentiles
from bench.cpu import OTHERS, CpuWindow
from bench.fanouts import Load, bench_prompt, post_all
from bench.profile import Profiler
from bench.report import Row, at_most, ratio, say
from bench.stack import Stack, cpu_seconds, log_summary, rss_kb

# Targets of issue 5 ("Done when").
MAX_RSS_PER_CONNECTION_KB = 20
MAX_WEB_REDIS_CONNECTIONS = 4
MAX_FANOUT_P99_MS = 25
MAX_ADDED_TTFT_P50_MS = 5
# Targets of issue 18 ("Done when"), for a run with --pin.
PINNED_SSE_P50_MS = 1
PINNED_SSE_P99_MS = 3
PINNED_LONGPOLL_P50_MS = 5
PINNED_LONGPOLL_P99_MS = 25
PINNED_POST_SECONDS = 2
# Under --pin, long-poll runs at 2 deltas/s (Nchan beside it) and at the SSE rate.
PINNED_LONGPOLL_RATE = 2.0
NCHAN_LONGPOLL_RATES = (PINNED_LONGPOLL_RATE,)
# The app's default, which the bench keeps (API.md: keep-alive after this much quiet).
HEARTBEAT_SECONDS = 15


@dataclass
class Plan:
    """Sizes and durations; `quick()` is the smoke run."""

    capacity_levels: list[int] = field(default_factory=lambda: [1000, 5000, 10000])
    # Twice HEARTBEAT_SECONDS (15), and some: every stream gets keep-alives.
    capacity_hold_seconds: float = 32.0
    connect_batch: int = 500
    sessions: int = 100
    clients: int = 1000
    deltas_per_second: float = 20.0
    stream_seconds: float = 20.0
    worker_generations: int = 32  # the default WORKER_CONCURRENCY
    worker_deltas: int = 1000
    sdk_streams: int = 16
    ttft_rounds: int = 100
    floor_seconds: float = 10.0
    floor_throughput_seconds: float = 2.0
    # --profile: py-spy samples of web and worker during each measured window.
    profile_dir: Path | None = None
    # 7. real-history capacity (issue 18): page-like streams at the end of long
    # histories, a few readers of whole histories, then a new answer everywhere.
    history_sessions: int = 2000
    history_streams: int = 10000
    history_readers: int = 200
    history_answers: int = 20
    history_chunks: int = 200
    history_deltas: int = 40
    history_rate: float = 2.0
    # 8. tool steps (issue 23): answers whose steps call a tool of known duration.
    tool_rounds: int = 100
    tool_steps: int = 3
    tool_ms: float = 20.0
    # --pin: issue 18's targets; `nchan`: Nchan runs beside the fan-outs.
    pinned: bool = False
    nchan: bool = False

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            capacity_levels=[200, 500],
            capacity_hold_seconds=1.0,
            sessions=10,
            clients=100,
            stream_seconds=3.0,
            worker_generations=8,
            worker_deltas=200,
            sdk_streams=4,
            ttft_rounds=10,
            floor_seconds=2.0,
            floor_throughput_seconds=0.5,
            history_sessions=100,
            history_streams=500,
            history_readers=10,
            history_answers=5,
            history_chunks=50,
            history_deltas=6,
            tool_rounds=10,
        )

    @property
    def deltas_per_stream(self) -> int:
        return int(self.deltas_per_second * self.stream_seconds)

    @property
    def longpoll_rates(self) -> list[float]:
        """Deltas/s per session in the long-poll fan-out: issue 18 asks for two under --pin."""
        if self.pinned:
            return [PINNED_LONGPOLL_RATE, self.deltas_per_second]
        return [self.deltas_per_second]


def _profiled(plan: Plan, scenario: str, stack: Stack) -> Profiler:
    return Profiler(
        plan.profile_dir, scenario, {"web": stack.web_worker_pid, "worker": stack.worker.pid}
    )


OTHERS_FIGURE = "CPU of other processes on the machine"


def others_row(scenario: str, window: CpuWindow) -> Row:
    """What the rest of the machine used meanwhile (a test run next door shows up here)."""
    return Row(scenario, OTHERS_FIGURE, window.percent()[OTHERS], "% of a core")


def cpu_rows(scenario: str, window: CpuWindow) -> list[Row]:
    """Two rows: ours, process by process, and everyone else's."""
    ours = {
        role: pct for role, pct in window.percent().items() if role not in ("web arbiter", OTHERS)
    }
    return [
        Row(
            scenario,
            f"CPU, % of a core: {' / '.join(ours)}",
            " / ".join(f"{pct:.0f}" for pct in ours.values()),
        ),
        others_row(scenario, window),
    ]


# -- 6. the Redis floor ------------------------------------------------------


def floor(stack: Stack, plan: Plan) -> tuple[list[Row], dict[str, Any]]:
    rate = plan.sessions * plan.deltas_per_second
    with CpuWindow({"redis": stack.redis_server.pid}) as cpu:
        latency = redis_floor.latency(
            stack.redis_server.url, rate, plan.sessions, plan.floor_seconds
        )
    throughput = redis_floor.throughput(stack.redis_server.url, plan.floor_throughput_seconds)
    lat = latency["latency"]
    name = "6 redis floor"
    rows = [
        Row(
            name, f"XADD->XREAD p50 ({rate:g}/s over {plan.sessions} streams)", lat["p50_ms"], "ms"
        ),
        Row(name, "XADD->XREAD p99", lat["p99_ms"], "ms"),
        Row(name, "XADD->XREAD max", lat["max_ms"], "ms"),
        Row(
            name,
            "XADD->XREAD lost",
            latency["sent"] - latency["received"],
            "",
            "0",
            latency["sent"] == latency["received"],
        ),
        Row(name, "sequential XADD round trips, one client", throughput["per_second"], "/s"),
        others_row(name, cpu),
    ]
    return rows, {"latency": latency, "throughput": throughput}


# -- 1. capacity -------------------------------------------------------------


def _commands(commands: list[str]) -> str:
    """['hmget', 'hmget', 'subscribe'] -> 'hmget x2, subscribe': what each connection last did."""
    counted = Counter(commands)
    return ", ".join(f"{cmd} x{n}" if n > 1 else cmd for cmd, n in sorted(counted.items()))


def capacity(stack: Stack, plan: Plan, floor: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    name = "1 capacity"
    top = plan.capacity_levels[-1]
    # gunicorn's gevent worker serves at most WORKER_CONNECTIONS at once (default 5000).
    stack.start_app(WORKER_CONNECTIONS=str(top + 1000))
    sessions = stack.seed_sessions(top + 20)
    warm, sessions = sessions[:20], sessions[20:]
    pid = stack.web_worker_pid
    client = stack.load_client()
    rows: list[Row] = []
    details: dict[str, Any] = {"levels": []}
    try:
        # Warm up: the hub's listener and the lazily built parts of the app.
        client.call("sse_open", sessions=warm, timeout=30)
        client.call("sse_close")
        time.sleep(0.5)
        rss_before = rss_kb(pid)
        cpu_before = cpu_seconds(pid)
        details["rss_before_kb"] = rss_before
        opened = 0
        for level in plan.capacity_levels:
            started = time.monotonic()
            answer = client.call(
                "sse_open", sessions=sessions[opened:level], batch=plan.connect_batch, timeout=120
            )
            connect_seconds = time.monotonic() - started
            say(
                f"capacity: {level:,} streams asked for, {answer['opened']:,} opened "
                f"in {connect_seconds:.1f} s"
            )
            opened = level
            time.sleep(1.0)
            status = client.call("sse_status")
            rss = rss_kb(pid)
            # Per stream still open: streams the server closed are no longer held.
            per_connection = (rss - rss_before) / max(status["open"], 1)
            connections = stack.redis_connections()
            details["levels"].append(
                {
                    "clients": level,
                    "open": answer,
                    "status": status,
                    "rss_kb": rss,
                    "redis": connections,
                    "connect_seconds": connect_seconds,
                }
            )
            rows += [
                Row(
                    name,
                    f"{level:,} idle SSE: open",
                    status["open"],
                    "",
                    f"{level:,}",
                    status["open"] == level,
                ),
                Row(
                    name,
                    f"{level:,} idle SSE: web RSS per connection",
                    per_connection,
                    "kB",
                    f"<= {MAX_RSS_PER_CONNECTION_KB} kB",
                    per_connection <= MAX_RSS_PER_CONNECTION_KB,
                ),
                Row(
                    name,
                    f"{level:,} idle SSE: web Redis connections",
                    f"{connections['web']} ({_commands(connections['web commands'])})",
                    "",
                    f"<= {MAX_WEB_REDIS_CONNECTIONS}",
                    connections["web"] <= MAX_WEB_REDIS_CONNECTIONS,
                ),
                Row(
                    name,
                    f"{level:,} idle SSE: worker Redis connections",
                    f"{connections['worker']} ({_commands(connections['worker commands'])})",
                ),
            ]
        details["web_cpu_ms_per_connect"] = 1000 * (cpu_seconds(pid) - cpu_before) / top
        rows.append(
            Row(name, "web CPU per connection opened", details["web_cpu_ms_per_connect"], "ms")
        )
        # Held: still open after a while, each having had a keep-alive when the
        # hold is longer than HEARTBEAT_SECONDS.
        client.call("sse_reset_counters")
        say(f"capacity: holding {top:,} streams for {plan.capacity_hold_seconds:g} s")
        with CpuWindow({"web": pid}) as idle:
            time.sleep(plan.capacity_hold_seconds)
        status = client.call("sse_status")
        details["held"] = status
        rows.append(
            Row(
                name,
                f"{top:,} held {plan.capacity_hold_seconds:g} s later",
                status["open"],
                "",
                f"{top:,}",
                status["open"] == top,
            )
        )
        if plan.capacity_hold_seconds > 2 * HEARTBEAT_SECONDS:
            rows.append(
                Row(
                    name,
                    "streams that got a keep-alive in that time",
                    status["with_keepalive"],
                    "",
                    f"{top:,}",
                    status["with_keepalive"] == top,
                )
            )
            quiet = status["longest_quiet"]
            rows.append(
                Row(
                    name,
                    "longest silence of a stream, p50 / max",
                    f"{quiet['p50_ms'] / 1000:.1f} / {quiet['max_ms'] / 1000:.1f}",
                    "s",
                    f"~{HEARTBEAT_SECONDS} s (the heartbeat)",
                )
            )
        rows.append(
            Row(name, f"web CPU holding {top:,} idle streams", idle.percent()["web"], "% of a core")
        )
    finally:
        client.call("sse_close")
        client.stop()
        stack.stop_app()
    return rows, details


# -- 2. fan-out over SSE, 3. the same over long-poll -------------------------


def _post_rows(name: str, seconds: float, errors: list[str]) -> list[Row]:
    rows = [Row(name, "all prompts posted (4 at a time) in", seconds, "s")]
    if errors:
        rows.append(Row(name, "prompts refused", len(errors), "", "0", False))
    return rows


def _delivery_rows(
    name: str,
    result: dict[str, Any],
    expected: int,
    floor: dict[str, Any],
    targets: dict[str, float],
    nchan: dict[str, Any] | None = None,
) -> list[Row]:
    """Deliveries, losses and latencies; `targets` may hold p50_ms, p99_ms and duplicated."""
    lat, base = result["latency"], floor.get("latency", {}).get("latency", {})
    up, down, lag = result["upstream"], result["downstream"], result["client_loop_lag"]

    def latency(figure: str, key: str) -> Row:
        row = Row(name, figure, lat[key], "ms", floor_ratio=ratio(lat[key], base.get(key)))
        if key in targets:
            row.target, row.ok = f"<= {targets[key]:g} ms", at_most(targets[key])(lat[key])
        return row.beside(nchan["latency"][key] if nchan else None)

    duplicated = Row(name, "duplicated", result["duplicated"])
    if "duplicated" in targets:
        duplicated.target, duplicated.ok = "0", result["duplicated"] == 0
    rows = [
        Row(name, "deliveries received / expected", f"{result['deliveries']:,} / {expected:,}"),
        Row(name, "lost", result["lost"], "", "0", result["lost"] == 0),
        duplicated,
        latency("latency p50", "p50_ms"),
        latency("latency p99, model send -> client receipt", "p99_ms"),
        latency("latency max", "max_ms"),
        _streaming_row(name, result, nchan),
        Row(
            name,
            "  model send -> Redis append (worker) p50 / p99",
            f"{up['p50_ms']:.1f} / {up['p99_ms']:.1f}" if up["count"] else None,
            "ms",
        ),
        Row(
            name,
            "  Redis append -> client (web) p50 / p99",
            f"{down['p50_ms']:.1f} / {down['p99_ms']:.1f}" if down["count"] else None,
            "ms",
        ),
        Row(
            name,
            "  load client's own loop lag p99 / max",
            _lag(lag),
            "ms",
        ).beside(_lag(nchan["client_loop_lag"]) if nchan else None),
    ]
    if nchan:
        rows[0].beside(f"{nchan['deliveries']:,} / {expected:,}")
        rows[1].beside(nchan["lost"])
        rows[2].beside(nchan["duplicated"])
    return rows


def _streaming_row(name: str, result: dict[str, Any], nchan: dict[str, Any] | None) -> Row:
    """p50 / p99 of the deltas sent once every answer had begun: the fan-out without the starts.

    The whole-run figures above include the first second, when every answer
    starts at once (SQL, the model request, the POSTs) on the same core.
    """

    def figure(lat: dict[str, Any]) -> str | None:
        return f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f}" if lat.get("count") else None

    row = Row(
        name, "  p50 / p99 once every answer streams", figure(result["latency_streaming"]), "ms"
    )
    return row.beside(figure(nchan["latency_streaming"]) if nchan else None)


def _lag(lag: dict[str, Any]) -> str | None:
    return f"{lag['p99_ms']:.1f} / {lag['max_ms']:.1f}" if lag["count"] else None


# The processes of each system under test, for the CPU of the pinned core.
RELAY_ROLES = [name for names in fanouts.SYSTEM.values() for name in names]


def _pinned_rows(name: str, stack: Stack, cpu: CpuWindow, nchan_cpu: CpuWindow | None) -> list[Row]:
    """Under --pin: how busy the system's core was with the system, and with anything else."""
    if stack.pinning is None:
        return []
    ours, others = cpu.on_core(RELAY_ROLES)
    rows = [
        Row(name, "CPU of the pinned core: the system under test", ours, "% of a core"),
        Row(name, "CPU of other processes on the pinned core", others, "% of a core"),
    ]
    if nchan_cpu is not None:
        theirs, theirs_others = nchan_cpu.on_core(nchan.SYSTEM_ROLES)
        rows[0].beside(theirs)
        rows[1].nchan = theirs_others  # someone else's CPU: no ratio
        percent = nchan_cpu.percent()
        roles = [*nchan.SYSTEM_ROLES, "client", "publisher"]
        rows.append(
            Row(
                name,
                f"CPU, % of a core, Nchan: {' / '.join(roles)}",
                None,
                nchan=" / ".join(f"{percent[role]:.0f}" for role in roles),
            )
        )
    return rows


def _nchan_run(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """Nchan's counterpart of a fan-out, or None if it failed: relay's figures stand anyway."""
    try:
        return run()
    except Exception:  # the table says so; relay's rows are still printed
        say(f"{name}: the Nchan run failed, relay's figures are printed alone")
        traceback.print_exc()
        return None


def fanout(stack: Stack, plan: Plan, floor: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    name = "2 fan-out SSE"
    per_session = plan.clients // plan.sessions
    load = Load(
        plan.sessions,
        per_session,
        plan.deltas_per_stream,
        plan.deltas_per_second,
        plan.connect_batch,
    )
    ours = fanouts.sse_fanout(stack, load, plan.profile_dir, "fanout")
    result, cpu, connect_ms = ours["result"], ours["cpu"], ours["connect_cpu_ms"]
    post_seconds, post_errors = ours["post_seconds"], ours["post_errors"]
    anchor = None
    if plan.nchan:
        anchor = _nchan_run(name, lambda: nchan.sse_fanout(stack, load))
    theirs = anchor["result"] if anchor else None
    expected, rate = load.expected, load.per_second
    rows = [
        Row(
            name,
            f"{plan.sessions} sessions x {per_session} clients, "
            f"{plan.deltas_per_second:g} deltas/s each",
            f"{rate:,.0f}",
            "deliveries/s",
        )
    ]
    if plan.nchan and anchor is None:
        rows.append(Row(name, "Nchan's run", "FAILED (its traceback is on stderr)"))
    rows += _post_rows(name, post_seconds, post_errors)
    if plan.pinned:
        targets = {"p50_ms": PINNED_SSE_P50_MS, "p99_ms": PINNED_SSE_P99_MS, "duplicated": 0}
    else:
        targets = {"p99_ms": MAX_FANOUT_P99_MS, "duplicated": 0}
    rows += _delivery_rows(name, result, expected, floor, targets, theirs)
    ends = Row(
        name,
        "streams without their end / dropped",
        f"{result['no_end']} / {result['dropped']}",
        "",
        "0 / 0",
        result["no_end"] == 0 and result["dropped"] == 0,
    )
    rows += [
        ends.beside(f"{theirs['no_end']} / {theirs['dropped']}" if theirs else None),
        Row(name, "web CPU per new SSE connection", connect_ms, "ms").beside(
            anchor["connect_cpu_ms"] if anchor else None
        ),
    ]
    rows += _pinned_rows(name, stack, cpu, anchor["cpu"] if anchor else None)
    rows += cpu_rows(name, cpu)
    details = {
        "result": result,
        "opened": ours["opened"],
        "post_seconds": post_seconds,
        "web_cpu_ms_per_connect": connect_ms,
        "cpu_percent": cpu.percent(),
    }
    if anchor:
        details["nchan"] = dict(anchor, cpu=anchor["cpu"].percent())
    return rows, details


def longpoll(stack: Stack, plan: Plan, floor: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    """The long-poll fan-out at each rate of the plan (under --pin, 2 and 20 deltas/s)."""
    rows: list[Row] = []
    details: dict[str, Any] = {}
    for rate in plan.longpoll_rates:
        rate_rows, details[f"{rate:g} deltas/s"] = _longpoll_at(stack, plan, floor, rate)
        rows += rate_rows
    if len(details) == 1:  # unpinned: the details as they were before --pin
        details = next(iter(details.values()))
    return rows, details


def _longpoll_at(
    stack: Stack, plan: Plan, floor: dict[str, Any], rate: float
) -> tuple[list[Row], dict[str, Any]]:
    per_session = plan.clients // plan.sessions
    deliveries = plan.sessions * per_session * rate
    name = "3 fan-out long-poll"
    if len(plan.longpoll_rates) > 1:
        name += f" {deliveries:,.0f}/s"
    load = Load(plan.sessions, per_session, int(rate * plan.stream_seconds), rate)
    ours = fanouts.longpoll_fanout(stack, load, plan.profile_dir, f"longpoll-{rate:g}")
    result, cpu, poll_ms = ours["result"], ours["cpu"], ours["poll_cpu_ms"]
    post_seconds, post_errors = ours["post_seconds"], ours["post_errors"]
    anchor = None
    if plan.nchan and rate in NCHAN_LONGPOLL_RATES:
        anchor = _nchan_run(name, lambda: nchan.longpoll_fanout(stack, load))
    theirs = anchor["result"] if anchor else None
    expected = load.expected
    rows = [
        Row(
            name,
            f"{plan.sessions} sessions x {per_session} polling clients, {rate:g} deltas/s each",
            f"{deliveries:,.0f}",
            "deliveries/s",
        )
    ]
    if plan.nchan and rate in NCHAN_LONGPOLL_RATES and anchor is None:
        rows.append(Row(name, "Nchan's run", "FAILED (its traceback is on stderr)"))
    posted = _post_rows(name, post_seconds, post_errors)
    targets: dict[str, float] = {}
    if plan.pinned and rate in NCHAN_LONGPOLL_RATES:
        targets = {"p50_ms": PINNED_LONGPOLL_P50_MS, "p99_ms": PINNED_LONGPOLL_P99_MS}
    elif plan.pinned:
        posted[0].target = f"<= {PINNED_POST_SECONDS:g} s"
        posted[0].ok = at_most(PINNED_POST_SECONDS)(post_seconds)
    rows += posted
    rows += _delivery_rows(name, result, expected, floor, targets, theirs)
    unfinished = result["no_end"] + result["unfinished"]
    rows += [
        Row(name, "polls answered", result["polls"] / cpu.seconds, "/s").beside(
            theirs["polls"] / anchor["cpu"].seconds if anchor else None
        ),
        Row(name, "events per poll", result["deliveries"] / max(result["polls"], 1)).beside(
            theirs["deliveries"] / max(theirs["polls"], 1) if theirs else None
        ),
        Row(name, "web CPU per poll", poll_ms, "ms").beside(
            anchor["poll_cpu_ms"] if anchor else None
        ),
        Row(
            name,
            "loops without their end / poll errors",
            f"{unfinished} / {result['errors']}",
            "",
            "0 / 0",
            unfinished == 0 and result["errors"] == 0,
        ).beside(
            f"{theirs['no_end'] + theirs['unfinished']} / {theirs['errors']}" if theirs else None
        ),
    ]
    rows += _pinned_rows(name, stack, cpu, anchor["cpu"] if anchor else None)
    rows += cpu_rows(name, cpu)
    details = {
        "result": result,
        "post_seconds": post_seconds,
        "web_cpu_ms_per_poll": poll_ms,
        "cpu_percent": cpu.percent(),
    }
    if anchor:
        details["nchan"] = dict(anchor, cpu=anchor["cpu"].percent())
    return rows, details


# -- 4. worker throughput ----------------------------------------------------


def _stream_bounds(stack: Stack, sessions: list[str]) -> tuple[int, int, int, int, list[str]]:
    """(chunk entries, model deltas in them, first entry ms, last entry ms, problems).

    Chunks are counted in Redis (entries other than `start` and `end`) and
    checked against what each `end` says it covered; deltas by their stamps
    in the chunks' text (relay joins deltas that come together into one chunk).
    """
    import json

    from bench.client import STAMP
    from webapp.storage import keys  # key names live in one place: use it, do not copy it

    chunks, deltas, first_ms, last_ms, problems = 0, 0, None, None, []
    with stack.redis.pipeline(transaction=False) as pipe:
        for session_id in sessions:
            pipe.xrange(keys.stream(session_id))
        answers = pipe.execute()
    for session_id, entries in zip(sessions, answers, strict=True):
        if not entries or entries[-1][1].get("event") != "end":
            problems.append(f"{session_id}: no end ({entries[-1:]})")
            continue
        said = json.loads(entries[-1][1]["data"])["chunks"]
        if said != len(entries) - 2:
            problems.append(f"{session_id}: {len(entries) - 2} chunk entries, `end` says {said}")
        chunks += len(entries) - 2
        for _, fields in entries[1:-1]:
            deltas += len(STAMP.findall(json.loads(fields["data"])["text"].encode()))
        start, end = int(entries[0][0].split("-")[0]), int(entries[-1][0].split("-")[0])
        first_ms = start if first_ms is None else min(first_ms, start)
        last_ms = end if last_ms is None else max(last_ms, end)
    return chunks, deltas, first_ms or 0, last_ms or 0, problems


def sdk_alone(base_url: str, prompt: str, streams: int) -> dict[str, float]:
    """CPU time of the `openai` SDK alone reading the same streams, as llm.py reads them."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=60)

    def read_one() -> int:
        deltas = 0
        chunks = client.chat.completions.create(
            model="bench-model",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=1024,
            stream=True,
            stream_options={"include_usage": True},
        )
        with chunks:
            for chunk in chunks:
                for choice in chunk.choices[:1]:
                    if choice.delta is not None and choice.delta.content:
                        deltas += 1
        return deltas

    read_one()  # warm: imports, the connection
    cpu_before, started = time.process_time(), time.monotonic()
    deltas = sum(read_one() for _ in range(streams))
    cpu = time.process_time() - cpu_before
    client.close()
    return {
        "deltas": deltas,
        "cpu_seconds": cpu,
        "wall_seconds": time.monotonic() - started,
        "cpu_us_per_delta": 1e6 * cpu / max(deltas, 1),
    }


def worker(stack: Stack, plan: Plan, floor: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    from webapp.storage import keys

    name = "4 worker"
    n, count = plan.worker_deltas, plan.worker_generations
    prompt = bench_prompt(n, 0)
    stack.start_app(WORKER_CONCURRENCY=str(count))
    sessions = stack.seed_sessions(count)
    say(f"worker: posting {count} prompts of {n:,} instant deltas")
    try:
        pids = {
            role: pid
            for role, pid in stack.pids().items()
            if role in ("worker", "redis", "web", "model server")
        }
        with CpuWindow(pids) as cpu, _profiled(plan, "worker", stack):
            post_seconds, post_errors = post_all(stack, sessions, prompt)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with stack.redis.pipeline(transaction=False) as pipe:
                    for session_id in sessions:
                        pipe.exists(keys.active(session_id))
                    if not any(pipe.execute()):
                        break
                time.sleep(0.02)
        chunks, deltas, first_ms, last_ms, problems = _stream_bounds(stack, sessions)
        span = max(last_ms - first_ms, 1) / 1000
        per_second = deltas / span
        worker_us = 1e6 * cpu.used["worker"] / max(deltas, 1)
        redis_us = 1e6 * cpu.used["redis"] / max(deltas, 1)
        say(f"worker: the openai SDK alone, {plan.sdk_streams} streams")
        sdk = sdk_alone(stack.model.base_url, prompt, plan.sdk_streams)
        xadds = floor.get("throughput", {}).get("per_second")
        rows = (
            [
                Row(
                    name,
                    f"{count} concurrent generations x {n:,} deltas, instant model",
                    f"{deltas:,} / {count * n:,}",
                    "written",
                    f"{count * n:,}",
                    deltas == count * n,
                ),
                Row(name, "chunk events they were written as", chunks, ""),
                Row(
                    name,
                    "deltas written per second",
                    per_second,
                    "/s",
                    floor_ratio=ratio(per_second, xadds),
                ),
                Row(name, "worker CPU per delta", worker_us, "us"),
                Row(
                    name,
                    "openai SDK alone: CPU per delta (same stream)",
                    sdk["cpu_us_per_delta"],
                    "us",
                ),
                Row(name, "worker / SDK alone", worker_us / sdk["cpu_us_per_delta"], "x"),
                Row(name, "redis-server CPU per delta", redis_us, "us"),
            ]
            + _post_rows(name, post_seconds, post_errors)
            + cpu_rows(name, cpu)
        )
        if problems:
            rows.append(
                Row(name, "streams without an end, or miscounted", len(problems), "", "0", False)
            )
        return rows, {
            "chunks": chunks,
            "deltas": deltas,
            "span_seconds": span,
            "post_seconds": post_seconds,
            "cpu_seconds": cpu.used,
            "sdk": sdk,
            "problems": problems[:10],
        }
    finally:
        stack.stop_app()


# -- 5. time to first token --------------------------------------------------


def ttft(stack: Stack, plan: Plan, floor: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    name = "5 time to first token"
    stack.start_app()
    warmup, rounds = 3, plan.ttft_rounds
    sessions = stack.seed_sessions(2 * rounds + warmup)
    client = stack.load_client()
    try:
        prompt = bench_prompt(5, 0)
        say(f"ttft: {rounds} prompts, one at a time")
        client.call("ttft", sessions=sessions[:warmup], prompt=prompt, timeout=60)
        pids = dict(stack.pids(), client=client.pid)
        with CpuWindow(pids) as cpu, _profiled(plan, "ttft", stack):
            answer = client.call(
                "ttft", sessions=sessions[warmup:][:rounds], prompt=prompt, timeout=60 + rounds
            )
        # A reasoning model's answer: 3 reasoning deltas, then 2 of answer text.
        say(f"ttft: {rounds} prompts to a reasoning model, one at a time")
        thinking = client.call(
            "ttft",
            sessions=sessions[warmup + rounds :],
            prompt=f"{bench_prompt(5, 0)} think=3",
            timeout=60 + rounds,
        )
    finally:
        client.stop()
        stack.stop_app()
    samples = answer["samples"]
    total = [s["received"] - s["posted"] for s in samples]
    model = [s["model_sent"] - s["model_requested"] for s in samples]
    added = [t - m for t, m in zip(total, model, strict=True)]
    to_model = [s["model_requested"] - s["posted"] for s in samples]
    to_start = [s["start_appended"] - s["posted"] for s in samples if s["start_appended"]]
    # `start` goes to Redis while the model is asked (generation.py); an entry
    # id tells its append time to the millisecond, so this is a rough figure.
    model_to_start = [
        s["start_appended"] - s["model_requested"] for s in samples if s["start_appended"]
    ]
    from_model = [s["received"] - s["model_sent"] for s in samples]
    post = [s["answered"] - s["posted"] for s in samples]
    added_p, base = percentiles(added), floor.get("latency", {}).get("latency", {})
    rows = [
        Row(
            name,
            f"added by relay p50 ({len(samples)} prompts, one at a time)",
            added_p["p50_ms"],
            "ms",
            f"<= {MAX_ADDED_TTFT_P50_MS} ms",
            at_most(MAX_ADDED_TTFT_P50_MS)(added_p["p50_ms"]),
            ratio(added_p["p50_ms"], base.get("p50_ms")),
        ),
        Row(
            name,
            "added by relay p99",
            added_p["p99_ms"],
            "ms",
            floor_ratio=ratio(added_p["p99_ms"], base.get("p99_ms")),
        ),
        Row(
            name,
            "  of which POST -> model request (queue, SQL, SDK) p50",
            percentiles(to_model)["p50_ms"],
            "ms",
        ),
        Row(name, "  of which model send -> client p50", percentiles(from_model)["p50_ms"], "ms"),
        Row(
            name,
            "  `start` appended after the model request p50",
            percentiles(model_to_start)["p50_ms"],
            "ms",
        ),
        Row(name, "POST answered (202) p50", percentiles(post)["p50_ms"], "ms"),
        Row(name, "model server's own first token p50", percentiles(model)["p50_ms"], "ms"),
    ]
    rows += _reasoning_rows(name, thinking["samples"])
    errors = answer["errors"] + thinking["errors"]
    if errors:
        rows.append(Row(name, "rounds that failed", len(errors), "", "0", False))
    rows.append(others_row(name, cpu))
    return rows, {
        "reasoning": _reasoning_figures(thinking["samples"]),
        "added": added_p,
        "total": percentiles(total),
        "model": percentiles(model),
        "post_to_model_request": percentiles(to_model),
        "post_to_start_appended": percentiles(to_start),
        "model_request_to_start_appended": percentiles(model_to_start),
        "model_send_to_client": percentiles(from_model),
        "post": percentiles(post),
        "errors": errors[:10],
    }


def _reasoning_figures(samples: list[dict[str, int]]) -> dict[str, Any]:
    """A reasoning model's rounds: when its first reasoning piece and first chunk reached us."""
    thought = [s for s in samples if s["reasoning_received"]]
    return {
        "rounds": len(samples),
        "with_reasoning": len(thought),
        "first_reasoning": percentiles([s["reasoning_received"] - s["posted"] for s in thought]),
        "first_reasoning_added": percentiles(
            [
                (s["reasoning_received"] - s["posted"])
                - (s["reasoning_model_sent"] - s["model_requested"])
                for s in thought
            ]
        ),
        "first_chunk": percentiles([s["received"] - s["posted"] for s in samples]),
    }


def _reasoning_rows(name: str, samples: list[dict[str, int]]) -> list[Row]:
    """Time to the first reasoning token (issue 16), beside the first answer token after it."""
    figures = _reasoning_figures(samples)
    return [
        Row(
            name,
            f"reasoning model: first reasoning token p50 ({len(samples)} prompts)",
            figures["first_reasoning"]["p50_ms"],
            "ms",
            f"{len(samples)} of {len(samples)} with reasoning",
            figures["with_reasoning"] == len(samples) > 0,
        ),
        Row(
            name,
            "  of which added by relay p50",
            figures["first_reasoning_added"]["p50_ms"],
            "ms",
        ),
        Row(
            name, "reasoning model: first answer token p50", figures["first_chunk"]["p50_ms"], "ms"
        ),
    ]


# -- 7. real-history capacity -----------------------------------------------


def history(stack: Stack, plan: Plan, floor: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    """Streams on sessions with long histories, then a new answer in every session (issue 18).

    The chat page opens its stream after its snapshot's cursor, at the end of
    the history: most streams here do that. A few readers (a client with no
    cursor, a reconnect from an old one) read a whole history from the start.
    Web RSS per stream is read after each step, and the new answers' fan-out
    is timed as scenario 2 times its own.
    """
    name = "7 real-history capacity"
    sessions_count = plan.history_sessions
    per_session = plan.history_streams // sessions_count
    n, rate = plan.history_deltas, plan.history_rate
    entries = sessions_count * plan.history_answers * (plan.history_chunks + 2)
    stack.start_app(
        WORKER_CONCURRENCY=str(sessions_count + 16),
        WORKER_CONNECTIONS=str(plan.history_streams + plan.history_readers + 1000),
    )
    sessions = stack.seed_sessions(sessions_count + 20)
    warm, sessions = sessions[:20], sessions[20:]
    say(
        f"history: seeding {sessions_count:,} sessions x {plan.history_answers} answers x "
        f"{plan.history_chunks} chunks ({entries:,} entries)"
    )
    started = time.monotonic()
    last = stack.seed_history(sessions, plan.history_answers, plan.history_chunks)
    seed_seconds = time.monotonic() - started
    redis_mib = stack.redis.info("memory")["used_memory"] / 2**20
    pid = stack.web_worker_pid
    client = stack.load_client()
    rss: dict[str, int] = {}
    try:
        client.call("sse_open", sessions=warm, timeout=30)  # the hub's listener, lazy parts
        client.call("sse_close")
        time.sleep(0.5)
        rss["before"] = rss_kb(pid)
        page = [s for s in sessions for _ in range(per_session)]
        say(f"history: opening {len(page):,} streams after each history's last entry")
        with CpuWindow({"web": pid}, precise=True) as connect:
            opened = client.call(
                "sse_open", sessions=page, batch=plan.connect_batch, timeout=300, after=last
            )
        time.sleep(1.0)
        status = client.call("sse_status")
        rss["page streams"] = rss_kb(pid)
        readers = sessions[: plan.history_readers]
        say(f"history: {len(readers)} more streams read their whole history")
        with CpuWindow({"web": pid}, precise=True) as replay:
            read = client.call("sse_open", sessions=readers, batch=plan.connect_batch, timeout=300)
            seen = client.call("sse_seen", last_ids={s: last[s] for s in readers}, timeout=300)
        rss["readers"] = rss_kb(pid)
        client.call("sse_reset_counters")
        say(f"history: a new answer of {n} deltas at {rate:g}/s in each of {len(sessions):,}")
        pids = dict(stack.pids(), client=client.pid)
        core = stack.pinning.system_core if stack.pinning else None
        with CpuWindow(pids, core) as cpu:
            post_seconds, post_errors = post_all(stack, sessions, bench_prompt(n, rate))
            result = client.call(
                "sse_wait_end", expected=dict.fromkeys(sessions, n), timeout=n / rate + 60
            )
        rss["after the answers"] = rss_kb(pid)
    finally:
        client.call("sse_close")
        client.stop()
        stack.stop_app()
    streams = status["open"]
    total = streams + read["opened"]

    def per_stream(stage: str, count: int) -> float:
        return (rss[stage] - rss["before"]) / max(count, 1)

    after = per_stream("after the answers", total)
    delivered = total * n
    rows = [
        Row(
            name,
            f"{sessions_count:,} sessions x {plan.history_answers} finished answers x "
            f"{plan.history_chunks} chunks, seeded in",
            seed_seconds,
            "s",
        ),
        Row(name, "Redis used_memory with the histories", redis_mib, "MiB"),
        Row(
            name,
            f"streams open after the history's last entry (the page's way), of {len(page):,}",
            streams,
            "",
            f"{len(page):,}",
            streams == len(page) and not opened["failed"],
        ),
        Row(name, "  web RSS per stream", per_stream("page streams", streams), "kB"),
        Row(
            name, "  web CPU per stream opened", 1000 * connect.used["web"] / max(streams, 1), "ms"
        ),
        Row(
            name,
            "whole-history readers caught up / opened",
            f"{read['opened'] - seen['behind']} / {read['opened']}",
            "",
            f"{len(readers)} / {len(readers)}",
            seen["behind"] == 0 and read["opened"] == len(readers),
        ),
        Row(
            name,
            "  web RSS growth per reader",
            (rss["readers"] - rss["page streams"]) / max(read["opened"], 1),
            "kB",
        ),
        Row(
            name,
            "  web CPU per entry replayed",
            1e6 * replay.used["web"] / max(read["opened"] * (entries // sessions_count), 1),
            "us",
        ),
    ]
    rows += _post_rows(name, post_seconds, post_errors)
    rows += [
        Row(name, f"new answers: {n} deltas at {rate:g}/s, deliveries", f"{delivered:,}"),
        Row(name, "  lost", result["lost"], "", "0", result["lost"] == 0),
        Row(
            name,
            "  streams without their end / dropped",
            f"{result['no_end']} / {result['dropped']}",
            "",
            "0 / 0",
            result["no_end"] == 0 and result["dropped"] == 0,
        ),
        Row(name, "  latency p50", result["latency"]["p50_ms"], "ms"),
        Row(name, "  latency p99", result["latency"]["p99_ms"], "ms"),
        Row(
            name,
            f"web RSS per stream after the answers ({total:,} streams)",
            after,
            "kB",
            f"<= {MAX_RSS_PER_CONNECTION_KB} kB",
            after <= MAX_RSS_PER_CONNECTION_KB,
        ),
    ]
    rows += _pinned_rows(name, stack, cpu, None)
    rows += cpu_rows(name, cpu)
    return rows, {
        "seed_seconds": seed_seconds,
        "redis_used_mib": redis_mib,
        "rss_kb": rss,
        "opened": opened,
        "status": status,
        "readers": {"opened": read, "seen": seen},
        "result": result,
        "post_seconds": post_seconds,
        "cpu_percent": cpu.percent(),
    }


SCENARIOS = {
    "capacity": capacity,
    "fanout": fanout,
    "longpoll": longpoll,
    "worker": worker,
    "ttft": ttft,
    "history": history,
    "tools": tool_steps.tools,
}
LABELS = {
    "capacity": "1 capacity",
    "fanout": "2 fan-out SSE",
    "longpoll": "3 fan-out long-poll",
    "worker": "4 worker",
    "ttft": "5 time to first token",
    "history": "7 real-history capacity",
    "tools": "8 tool steps",
}


def log_rows(name: str, stack: Stack) -> tuple[list[Row], list[str], dict[str, Any]]:
    """What web and worker logged during the scenario (a quiet log is part of passing).

    Returns rows for the table, notes to print under it (the most common
    message of each noisy log) and the details.
    """
    notes, details, values = [], {}, []
    for role, path in stack.app_logs().items():
        summary = details[role] = log_summary(path)
        values.append("/".join(f"{summary[k]:,}" for k in ("warnings", "errors", "tracebacks")))
        if summary["top"]:
            message, count = summary["top"][0]
            notes.append(f"{name}: the {role} logged {count:,}x: {message}")
    if not details:
        return [], notes, details
    quiet = all(not (d["warnings"] or d["errors"] or d["tracebacks"]) for d in details.values())
    row = Row(
        name,
        f"log warnings/errors/tracebacks: {' | '.join(details)}",
        " | ".join(values),
        "",
        " | ".join("0/0/0" for _ in details),
        quiet,
    )
    return [row], notes, details
