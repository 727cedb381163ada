"""relay's two fan-outs, measured: the counterparts of nchan.sse_fanout and nchan.longpoll_fanout.

Scenarios 2 and 3 (scenarios.py) and the load sweep (sweep.py) run the same
code, so a figure of the sweep at 20,000 deliveries/s is the scenario's.
Each call starts a fresh web process and worker, seeds its sessions, runs
one load client on them, and stops them all before it returns.

What a call returns, as Nchan's do: `result` (the load client's answer:
deliveries, lost, latencies), `cpu` (the CpuWindow over posting and
streaming, every process of the system and of the load), and the posting's
seconds and errors.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.cpu import CpuWindow, pinned_window
from bench.profile import Profiler
from bench.report import say
from bench.stack import LoadClient, Stack

# relay's processes by the roles the load sweep counts CPU for (knee.ROLES);
# Nchan's are in nchan.SYSTEM.
SYSTEM = {"web": ("web", "web arbiter"), "worker": ("worker",), "redis": ("redis",)}
# How long the fan-outs may take to post their prompts.
POST_TIMEOUT_SECONDS = 60.0
# Seconds a long-poll waits before answering with no events (API.md's `timeout`).
POLL_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class Load:
    """One fan-out: `sessions` x `per_session` clients, `count` deltas at `rate`/s per session."""

    sessions: int
    per_session: int
    count: int
    rate: float
    batch: int = 500  # streams opened at once
    # How long past the last delta the clients wait for every end before
    # counting what is missing as lost.
    grace_seconds: float = 30.0

    @property
    def clients(self) -> int:
        return self.sessions * self.per_session

    @property
    def seconds(self) -> float:
        return self.count / self.rate

    @property
    def per_second(self) -> float:
        """Deliveries per second: what the load is named by."""
        return self.clients * self.rate

    @property
    def expected(self) -> int:
        """Deliveries in all."""
        return self.clients * self.count

    def fan(self, sessions: list[str]) -> list[str]:
        """Each session once per client of it: what the load client opens."""
        return [s for s in sessions for _ in range(self.per_session)]


def bench_prompt(deltas: int, rate: float) -> str:
    """A prompt the bench model server answers with `deltas` stamped deltas (model_server.py)."""
    return f"bench n={deltas} rate={rate:g}"


def post_all(
    stack: Stack, sessions: list[str], prompt: str, timeout: float = POST_TIMEOUT_SECONDS
) -> tuple[float, list[str]]:
    """Post one prompt per session, 4 at a time; (seconds it took, errors)."""
    started = time.monotonic()
    deadline = started + timeout
    errors: list[str] = []

    def post(http: httpx.Client, session_id: str) -> None:
        if time.monotonic() > deadline:
            errors.append("not posted: out of time")
            return
        try:
            stack.post_prompt(http, session_id, prompt)
        except (httpx.HTTPError, RuntimeError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])

    with httpx.Client(timeout=10) as http, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda sid: post(http, sid), sessions))
    if errors:
        say(f"{len(errors)} prompts failed, first: {errors[0]}")
    return time.monotonic() - started, errors


def _start(stack: Stack, load: Load) -> tuple[list[str], LoadClient]:
    """A fresh app sized so one worker runs every session's answer; the sessions; a load client."""
    stack.start_app(
        WORKER_CONCURRENCY=str(load.sessions + 16),
        WORKER_CONNECTIONS=str(load.clients + 1000),
    )
    return stack.seed_sessions(load.sessions), stack.load_client()


def _window(stack: Stack, client: LoadClient) -> CpuWindow:
    return pinned_window(dict(stack.pids(), client=client.pid), stack.pinning)


def _profiler(stack: Stack, profile_dir: Path | None, name: str) -> Profiler:
    return Profiler(profile_dir, name, {"web": stack.web_worker_pid, "worker": stack.worker.pid})


def sse_fanout(
    stack: Stack, load: Load, profile_dir: Path | None = None, name: str = "fanout"
) -> dict[str, Any]:
    """`per_session` SSE streams on each session, opened before the prompts are posted."""
    sessions, client = _start(stack, load)
    try:
        with CpuWindow({"web": stack.web_worker_pid}, precise=True) as connect:
            opened = client.call(
                "sse_open", sessions=load.fan(sessions), batch=load.batch, timeout=120
            )
        if opened["failed"]:
            raise RuntimeError(f"could not open every stream: {opened}")
        say(f"{name}: {opened['opened']:,} streams open, posting {load.sessions} prompts")
        with _window(stack, client) as cpu, _profiler(stack, profile_dir, name):
            post_seconds, post_errors = post_all(
                stack, sessions, bench_prompt(load.count, load.rate)
            )
            result = client.call(
                "sse_wait_end",
                expected=dict.fromkeys(sessions, load.count),
                timeout=load.seconds + load.grace_seconds,
            )
    finally:
        client.call("sse_close")
        client.stop()
        stack.stop_app()
    return {
        "result": result,
        "opened": opened,
        "post_seconds": post_seconds,
        "post_errors": post_errors,
        "connect_cpu_ms": 1000 * connect.used["web"] / max(opened["opened"], 1),
        "cpu": cpu,
    }


def longpoll_fanout(
    stack: Stack, load: Load, profile_dir: Path | None = None, name: str = "longpoll"
) -> dict[str, Any]:
    """`per_session` long-poll loops on each session, polling before the prompts are posted."""
    sessions, client = _start(stack, load)
    try:
        client.call(
            "poll_start",
            sessions=load.fan(sessions),
            expected=load.count,
            poll_timeout=POLL_TIMEOUT_SECONDS,
            # Posting may take long while 1,000 loops keep the web busy: the
            # loops' own deadline leaves room for it (POST_TIMEOUT_SECONDS).
            timeout=POST_TIMEOUT_SECONDS + load.seconds + load.grace_seconds,
        )
        time.sleep(0.5)  # the first polls are waiting
        say(
            f"{name}: {load.clients:,} loops polling, "
            f"posting {load.sessions} prompts of {load.rate:g} deltas/s"
        )
        with _window(stack, client) as cpu, _profiler(stack, profile_dir, name):
            post_seconds, post_errors = post_all(
                stack, sessions, bench_prompt(load.count, load.rate)
            )
            result = client.call("poll_wait", timeout=load.seconds + load.grace_seconds + 5)
    finally:
        client.stop()
        stack.stop_app()
    return {
        "result": result,
        "post_seconds": post_seconds,
        "post_errors": post_errors,
        "poll_cpu_ms": 1000 * cpu.used["web"] / max(result["polls"], 1),
        "cpu": cpu,
    }
