"""Prometheus metrics: what the processes record, for `GET /metrics` (scrape.py) to answer.

Two kinds of figures, kept where they can be read from:

- Web-process figures (open SSE streams, waiting long-polls, SSE reconnects
  with a cursor, resets, API errors by code, long-polls the fast path
  handed to Flask by reason) are prometheus_client metrics
  in multiprocess mode: gunicorn's processes each write theirs to files in
  PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py makes a fresh folder when it is
  unset, and drops a dead process's gauges in `child_exit`), and a scrape,
  whichever process answers it, adds them all up. The request hooks of
  `init_app` keep the first four up to date without touching the views.
- Generation figures (time to first token, duration, chunks, tokens, errors
  by code, tool calls by tool and status, tool durations, answers waiting
  for a person) happen in worker processes, which on Heroku run on other dynos
  that no scraper can reach. Workers add them to one Redis hash
  (`relay:{metrics}:generation`, pipelined, once or twice per answer), and
  every web process reports the same service-wide totals from it at scrape
  time (scrape.py), with the job list's depth read the same way.

Deliberate choices:
- No label carries a session or message id: the endpoint is public and its
  series must stay few.
- Recording never fails a request or a generation: a Redis error while
  recording is logged and the figure is lost.
- Histograms kept in Redis use fixed buckets, each stored as its own count
  and summed into Prometheus' cumulative form when scraped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from webapp.settings.config import multiproc_dir


def _ensure_multiprocess_dir() -> None:
    """prometheus_client picks its storage when imported: the folder must exist by then.

    gunicorn.conf.py creates it for web processes; any other process that
    inherits the setting (a worker dyno, the CLI) gets it created here.
    """
    folder = multiproc_dir()
    if folder:
        os.makedirs(folder, exist_ok=True)


_ensure_multiprocess_dir()

import redis  # noqa: E402
from flask import Flask, Response, g, request  # noqa: E402
from prometheus_client import (  # noqa: E402
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
)
from prometheus_client.utils import floatToGoString  # noqa: E402

from webapp.storage import keys  # noqa: E402

log = logging.getLogger(__name__)

# `_created` series exist only in single-process mode; leave them out everywhere.
disable_created_metrics()

# Metrics of this web process; in multiprocess mode their values live in files.
LOCAL = CollectorRegistry(auto_describe=True)

SSE_OPEN = Gauge(
    "relay_sse_streams_open",
    "SSE responses streaming now.",
    registry=LOCAL,
    multiprocess_mode="livesum",
)
SSE_HELD = Gauge(
    "relay_sse_streams_held",
    "SSE streams held by the hub: caught up, written to directly, no greenlet of their own.",
    registry=LOCAL,
    multiprocess_mode="livesum",
)
POLLS_WAITING = Gauge(
    "relay_long_polls_waiting",
    "Long-polls and ?wait= requests in progress.",
    registry=LOCAL,
    multiprocess_mode="livesum",
)
SSE_RECONNECTS = Counter(
    "relay_sse_reconnects",
    "SSE requests that resumed from a cursor (Last-Event-ID or last_event_id).",
    registry=LOCAL,
)
RESETS = Counter(
    "relay_resets",
    "Cursors older than the retained stream, by transport.",
    ["transport"],
    registry=LOCAL,
)
API_ERRORS = Counter(
    "relay_api_errors", "Error responses, by API.md code.", ["code"], registry=LOCAL
)
FAST_POLL_FALLBACKS = Counter(
    "relay_fast_poll_fallbacks",
    "Long-polls the fast path handed to Flask, by reason (serving/fast_poll.py).",
    ["reason"],
    registry=LOCAL,
)
KEPT_POLLS = Counter(
    "relay_kept_polls",
    "Long-polls read and answered or parked on a kept connection, without gunicorn "
    "(serving/poll_connections.py).",
    registry=LOCAL,
)
KEPT_POLL_HANDBACKS = Counter(
    "relay_kept_poll_handbacks",
    "Requests on a kept connection handed to gunicorn, by reason (serving/poll_connections.py).",
    ["reason"],
    registry=LOCAL,
)

# Everything workers record, in one hash (one Cluster slot); its fields are ours alone.
GENERATION_KEY = keys.METRICS_GENERATION
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TOOL_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Answers waiting for a person or the front end: a set, so that a retried
# pause or resume counts once (keys.py).
WAITING_KEY = keys.METRICS_WAITING
# The label of a tool the model named but no source offers: names the model
# makes up must not each become a series.
UNKNOWN_TOOL = "(unknown)"


# -- web side: called by the request hooks below, by sse.py and stream.py -----


def sse_opened(resumed: bool) -> None:
    SSE_OPEN.inc()
    if resumed:
        SSE_RECONNECTS.inc()


def sse_closed() -> None:
    SSE_OPEN.dec()


def sse_held() -> None:
    SSE_HELD.inc()


def sse_let_go() -> None:
    SSE_HELD.dec()


def poll_started() -> None:
    POLLS_WAITING.inc()


def poll_finished() -> None:
    POLLS_WAITING.dec()


def polls_waiting_changed(delta: int) -> None:
    """Parked polls counted in a batch: each gauge write takes a lock and a file write."""
    POLLS_WAITING.inc(delta)


def reset_sent(transport: str) -> None:
    """A `reset` went to a client; transport is "sse" or "poll"."""
    RESETS.labels(transport).inc()


def api_error(code: str) -> None:
    API_ERRORS.labels(code).inc()


def fast_poll_fallback_reasons(reasons: Iterable[str]) -> None:
    """Show every reason's count, 0 included, from the start (a fixed, small set)."""
    for reason in reasons:
        FAST_POLL_FALLBACKS.labels(reason)


def fast_poll_fell_back(reason: str) -> None:
    FAST_POLL_FALLBACKS.labels(reason).inc()


def kept_polls(count: int) -> None:
    KEPT_POLLS.inc(count)


def kept_poll_handback_reasons(reasons: Iterable[str]) -> None:
    """Show every reason's count, 0 included, from the start (a fixed, small set)."""
    for reason in reasons:
        KEPT_POLL_HANDBACKS.labels(reason)


def kept_poll_handed_back(reason: str) -> None:
    KEPT_POLL_HANDBACKS.labels(reason).inc()


# -- worker side: called by generation.py ----------------------------------


def _bucket(value: float, bounds: tuple[float, ...]) -> str:
    return next((floatToGoString(b) for b in bounds if value <= b), "+Inf")


def _record(
    client: redis.Redis, increments: Mapping[str, int], float_increments: Mapping[str, float]
) -> None:
    try:
        with client.pipeline(transaction=False) as pipe:
            for field, amount in increments.items():
                pipe.hincrby(GENERATION_KEY, field, amount)
            for field, amount in float_increments.items():
                pipe.hincrbyfloat(GENERATION_KEY, field, amount)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("metrics not recorded: %s", exc)


def first_token(client: redis.Redis, seconds: float, *, reasoning: bool = False) -> None:
    """The first chunk (or reasoning piece) of an answer was written, `seconds` after its prompt.

    Two figures, not one: a reasoning model thinks for seconds before it
    answers, and that wait says nothing about relay's own speed (issue 16).
    """
    seconds, prefix = max(seconds, 0.0), "ttfr" if reasoning else "ttft"
    _record(
        client,
        {f"{prefix}:count": 1, f"{prefix}:le:{_bucket(seconds, TTFT_BUCKETS)}": 1},
        {f"{prefix}:sum": seconds},
    )


def generation_ended(
    client: redis.Redis,
    *,
    finish_reason: str,
    duration_seconds: float,
    chunks: int,
    usage: Mapping[str, int] | None,
) -> None:
    """An answer ended (`end` written): its duration, chunks and tokens."""
    duration_seconds = max(duration_seconds, 0.0)
    increments = {
        f"ended:{finish_reason}": 1,
        "chunks": chunks,
        "duration:count": 1,
        f"duration:le:{_bucket(duration_seconds, DURATION_BUCKETS)}": 1,
    }
    for kind in ("prompt", "completion"):
        tokens = (usage or {}).get(f"{kind}_tokens")
        if tokens:
            increments[f"tokens:{kind}"] = int(tokens)
    _record(client, increments, {"duration:sum": duration_seconds})


def generation_failed(client: redis.Redis, code: str, chunks: int = 0) -> None:
    """An answer ended with `error` (upstream_error, upstream_timeout, worker_lost, ...)."""
    increments = {f"errors:{code}": 1}
    if chunks:
        increments["chunks"] = chunks
    _record(client, increments, {})


def tool_result(client: redis.Redis, tool: str, status: str, seconds: float | None) -> None:
    """A tool call got its result (`ok`, `error`, `denied`, `in_doubt`); `seconds` if it ran here."""
    increments = {f"tool:{status}:{tool}": 1}
    floats: dict[str, float] = {}
    if seconds is not None:
        seconds = max(seconds, 0.0)
        increments["tool_duration:count"] = 1
        increments[f"tool_duration:le:{_bucket(seconds, TOOL_DURATION_BUCKETS)}"] = 1
        floats["tool_duration:sum"] = seconds
    _record(client, increments, floats)


def answer_waiting(client: redis.Redis, session_id: str, message_id: str, waiting: bool) -> None:
    """An answer paused for inputs (True), or went on, ended or was deleted (False)."""
    member = f"{session_id} {message_id}"
    try:
        if waiting:
            client.sadd(WAITING_KEY, member)
        else:
            client.srem(WAITING_KEY, member)
    except redis.RedisError as exc:
        log.warning("metrics not recorded: %s", exc)


def cache_lookup(client: redis.Redis, hit: bool) -> None:
    """The answer cache was asked (only when it is on)."""
    _record(client, {f"cache:{'hit' if hit else 'miss'}": 1}, {})


# -- request hooks: the web-side figures without code in the views ----------


def waits() -> bool:
    """Whether this request waits for news: a long-poll or a `?wait=` (not work to do)."""
    return request.endpoint == "stream.poll" or (
        request.endpoint == "api.get_message" and bool(request.args.get("wait"))
    )


def _before() -> None:
    if waits():
        poll_started()
        g.relay_poll_waiting = True


def _after(response: Response) -> Response:
    # SSE opens and closes are counted by sse.py, which knows when a held stream ends.
    if response.status_code >= 400 and response.is_json:
        body: Any = response.get_json(silent=True)
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        if isinstance(code, str):
            api_error(code)
    return response


def _teardown(exc: BaseException | None) -> None:
    if g.pop("relay_poll_waiting", False):
        poll_finished()


def init_app(app: Flask) -> None:
    """The request hooks; the scrape (`GET /metrics`) is scrape.py's blueprint."""
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)
