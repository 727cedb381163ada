"""Limits on what one client may ask of us: prompts per period, open streams.

A client is its network address as the last trusted proxy saw it. Behind
Heroku's router (one hop, PROXY_HOPS=1) that is the last entry of
X-Forwarded-For, which the router appends and a client cannot forge; with
PROXY_HOPS=0 it is the socket's peer address.

The prompt and new-session limits are fixed-window counters in Redis,
shared by every web process (new sessions count per token `sub` when access
control is on). Open streams are counted per web process, in memory: the cap is
about one process's greenlets and sockets, which is what it protects. Each
stream holds an open file, and a held stream holds nothing else (no greenlet,
so gunicorn's WORKER_CONNECTIONS does not count it): the process-wide cap
keeps enough files free for requests, Redis and SQL. Past it a stream gets
503 `unavailable` with Retry-After, and the chat page falls back to polling.
"""

from __future__ import annotations

import functools
import logging
import math
import resource
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import redis
from flask import Request

from webapp.exceptions import ApiError
from webapp.settings.config import Rate
from webapp.storage import keys

log = logging.getLogger(__name__)


def client_address(request: Request, proxy_hops: int) -> str:
    """The client's address, trusting `proxy_hops` proxies in front of us."""
    return address_of(request.headers.get("X-Forwarded-For"), request.remote_addr, proxy_hops)


def address_of(forwarded_for: str | None, remote_addr: str | None, proxy_hops: int) -> str:
    """The client's address from X-Forwarded-For's value and the peer's, as client_address."""
    forwarded = [part.strip() for part in (forwarded_for or "").split(",")]
    forwarded = [part for part in forwarded if part]
    if proxy_hops > 0 and len(forwarded) >= proxy_hops:
        return forwarded[-proxy_hops]
    return remote_addr or "unknown"


def check_prompt_rate(client: redis.Redis, address: str, rate: Rate) -> None:
    """Count one prompt for `address`; raise 429 rate_limited over `rate` (RATE_LIMIT)."""
    _count(client, lambda window: keys.rate_limit(address, window), rate, "prompts")


def check_session_rate(client: redis.Redis, subject: str, rate: Rate) -> None:
    """Count one new session for `subject` (auth.rate_limit_subject); 429 over SESSION_RATE_LIMIT.

    Each session is an SQL row: without this, one client could add rows as
    fast as we answer (issue 15: 300 a second from one address). Sessions
    live in SQL, so while Redis is down they are still created, uncounted:
    the page can open and show its chat, and say that prompts must wait.
    """
    try:
        _count(client, lambda w: keys.session_rate_limit(subject, w), rate, "new sessions")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("new session not counted, redis unavailable: %s", exc)


def _count(client: redis.Redis, key_for: Callable[[int], str], rate: Rate, what: str) -> None:
    """A fixed-window counter: count one, and 429 with Retry-After past the limit."""
    limit, period = rate
    now = time.time()
    window = int(now // period)
    count = keys.COUNT(client, [key_for(window)], [period + 1])
    if count > limit:
        retry_after = max(1, math.ceil((window + 1) * period - now))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many {what}: at most {limit} per {period} s. Retry later.",
            {"Retry-After": str(retry_after)},
        )


# Files a web process keeps for everything but streams (requests in progress,
# Redis and SQL connections, logs): this many, or a quarter of a low limit.
FILES_KEPT_FOR_REQUESTS = 1024


def streams_per_process(configured: int) -> int:
    """MAX_STREAMS_PER_PROCESS, or when 0, what the open-file limit leaves for streams."""
    if configured > 0:
        return configured
    return _streams_the_file_limit_leaves()


@functools.cache
def _streams_the_file_limit_leaves() -> int:
    """Looked up once per process: nothing in relay changes its open-file limit.

    A system call less for every stream and every poll (a poll's CPU is
    issue 25's bottleneck).
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return soft - min(FILES_KEPT_FOR_REQUESTS, soft // 4)


class StreamCounter:
    """Open streams per client in this process, with a cap per client and one in all."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()
        self._total = 0

    def acquire(self, address: str, cap: int, process_cap: int) -> Callable[[], None]:
        """Count one open stream, returning its release.

        503 if the process has `process_cap` streams already, 429 if the client has `cap`.
        """
        if self._total >= process_cap:
            raise ApiError(
                503,
                "unavailable",
                "This server has as many open streams as it can hold. Retry shortly.",
                {"Retry-After": "5"},
            )
        if self._open[address] >= cap:
            raise ApiError(
                429,
                "too_many_streams",
                f"At most {cap} open streams per client.",
                {"Retry-After": "5"},
            )
        self._open[address] += 1
        self._total += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._total -= 1
                self._open[address] -= 1
                if self._open[address] <= 0:
                    del self._open[address]

        return release


streams = StreamCounter()


def acquire_stream(request: Request, config: Mapping[str, Any]) -> Callable[[], None]:
    """Count one open stream (429 past the client's cap, 503 past the process's); its release."""
    return acquire_stream_for(client_address(request, config["PROXY_HOPS"]), config)


def acquire_stream_for(address: str, config: Mapping[str, Any]) -> Callable[[], None]:
    """acquire_stream for a client's address (limits.address_of)."""
    process_cap = streams_per_process(config["MAX_STREAMS_PER_PROCESS"])
    return streams.acquire(address, config["MAX_STREAMS_PER_CLIENT"], process_cap)
