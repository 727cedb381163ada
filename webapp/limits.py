"""Limits on what one client may ask of us: prompts per period, open streams.

A client is its network address as the last trusted proxy saw it. Behind
Heroku's router (one hop, PROXY_HOPS=1) that is the last entry of
X-Forwarded-For, which the router appends and a client cannot forge; with
PROXY_HOPS=0 it is the socket's peer address.

The prompt limit is a fixed-window counter in Redis, shared by every web
process. Open streams are counted per web process, in memory: the cap is
about one process's greenlets and sockets, which is what it protects.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import redis
from flask import Request

from . import keys
from .errors import ApiError

_UNIT_SECONDS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
# Count one prompt in a window; its first prompt starts the window's expiry.
# A script, not a pipeline: one command, and redis-py's pipeline costs more
# CPU than the round trip it saves.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
_RATE = re.compile(r"\A\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*\Z")


@functools.lru_cache(maxsize=8)
def parse_rate(spec: str) -> tuple[int, int]:
    """'20/minute' -> (20, 60); '5/10s' -> (5, 10). Raises ValueError."""
    match = _RATE.match(spec.lower())
    unit = _UNIT_SECONDS.get(match[3]) if match else None
    if unit is None or int(match[1]) == 0:
        raise ValueError(f"not a rate: {spec!r} (try 20/minute)")
    return int(match[1]), int(match[2] or 1) * unit


def client_address(request: Request, proxy_hops: int) -> str:
    """The client's address, trusting `proxy_hops` proxies in front of us."""
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if proxy_hops > 0 and len(forwarded) >= proxy_hops:
        return forwarded[-proxy_hops]
    return request.remote_addr or "unknown"


def check_prompt_rate(client: redis.Redis, address: str, rate: tuple[int, int]) -> None:
    """Count one prompt for `address`; raise 429 rate_limited over the limit."""
    limit, period = rate
    now = time.time()
    window = int(now // period)
    count = client.eval(_COUNT, 1, keys.rate_limit(address, window), period + 1)
    if count > limit:
        retry_after = max(1, math.ceil((window + 1) * period - now))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many prompts: at most {limit} per {period} s. Retry later.",
            {"Retry-After": str(retry_after)},
        )


class StreamCounter:
    """Open streams per client in this process, with a cap."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def acquire(self, address: str, cap: int) -> Callable[[], None]:
        """Count one open stream, returning its release; 429 if the client has `cap` already."""
        if self._open[address] >= cap:
            raise ApiError(
                429,
                "too_many_streams",
                f"At most {cap} open streams per client.",
                {"Retry-After": "5"},
            )
        self._open[address] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[address] -= 1
                if self._open[address] <= 0:
                    del self._open[address]

        return release


streams = StreamCounter()


def acquire_stream(request: Request, config: Mapping[str, Any]) -> Callable[[], None]:
    """Take one of the client's open streams (429 beyond the cap); returns its release."""
    address = client_address(request, config["PROXY_HOPS"])
    return streams.acquire(address, config["MAX_STREAMS_PER_CLIENT"])
