"""`GET /metrics`: this process's figures (all web processes' in multiprocess mode) and the service's.

What metrics.py records is read here, once per scrape: the web processes'
prometheus_client files added up (MultiProcessCollector), or this
process's registry when there is no folder (flask run, tests); and the
figures the workers keep in Redis (the job list's depth, and the hash of
generation figures), the same service-wide totals whichever process
answers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping

import redis
from flask import Blueprint, Response, request
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from webapp.ops.metrics import (
    DURATION_BUCKETS,
    GENERATION_KEY,
    LOCAL,
    TOOL_DURATION_BUCKETS,
    TTFT_BUCKETS,
    WAITING_KEY,
)
from webapp.settings.config import multiproc_dir
from webapp.storage import jobs
from webapp.storage.extensions import redis_store

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


class RedisCollector(Collector):
    """Service-wide figures read from Redis when scraped: the job list and the workers' hash."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def collect(self) -> Iterator[Metric]:
        try:
            queued, running = jobs.queue_depth(self._client)
            fields = self._client.hgetall(GENERATION_KEY)
            waiting = self._client.scard(WAITING_KEY)
        except redis.RedisError as exc:
            log.warning("metrics scrape without Redis figures: %s", exc)
            return
        yield GaugeMetricFamily("relay_jobs_queued", "Jobs waiting for a worker.", queued)
        yield GaugeMetricFamily(
            "relay_jobs_running", "Jobs a worker has taken and not finished.", running
        )
        yield GaugeMetricFamily(
            "relay_answers_waiting",
            "Answers paused for a person's decision or a client tool's output.",
            waiting,
        )
        yield from generation_families(fields)
        yield from tool_families(fields)


def _number(fields: Mapping[str, str], name: str) -> float:
    try:
        return float(fields.get(name, 0))
    except ValueError:
        return 0.0


def _labelled(fields: Mapping[str, str], prefix: str) -> Iterable[tuple[str, float]]:
    for field in sorted(fields):
        if field.startswith(prefix):
            yield field[len(prefix) :], _number(fields, field)


def _histogram(
    fields: Mapping[str, str], name: str, help_text: str, prefix: str, bounds: tuple[float, ...]
) -> HistogramMetricFamily:
    cumulative, buckets = 0.0, []
    for bound in [*(floatToGoString(b) for b in bounds), "+Inf"]:
        cumulative += _number(fields, f"{prefix}:le:{bound}")
        buckets.append((bound, cumulative))
    return HistogramMetricFamily(
        name, help_text, buckets=buckets, sum_value=_number(fields, f"{prefix}:sum")
    )


def generation_families(fields: Mapping[str, str]) -> Iterator[Metric]:
    ended = CounterMetricFamily(
        "relay_generations_ended", "Answers that ended, by finish_reason.", labels=["finish_reason"]
    )
    for reason, value in _labelled(fields, "ended:"):
        ended.add_metric([reason], value)
    yield ended
    errors = CounterMetricFamily(
        "relay_generation_errors", "Answers that ended with `error`, by code.", labels=["code"]
    )
    for code, value in _labelled(fields, "errors:"):
        errors.add_metric([code], value)
    yield errors
    yield CounterMetricFamily(
        "relay_chunks", "Chunks written to session streams.", _number(fields, "chunks")
    )
    tokens = CounterMetricFamily(
        "relay_tokens", "Tokens the model reported, by kind.", labels=["kind"]
    )
    for kind in ("prompt", "completion"):
        tokens.add_metric([kind], _number(fields, f"tokens:{kind}"))
    yield tokens
    cache = CounterMetricFamily(
        "relay_answer_cache_lookups", "Answer cache lookups, by result.", labels=["result"]
    )
    for result in ("hit", "miss"):
        cache.add_metric([result], _number(fields, f"cache:{result}"))
    yield cache
    yield _histogram(
        fields,
        "relay_time_to_first_token_seconds",
        "From the prompt accepted to the first chunk of the answer written (not reasoning).",
        "ttft",
        TTFT_BUCKETS,
    )
    yield _histogram(
        fields,
        "relay_time_to_first_reasoning_seconds",
        "From the prompt accepted to the first reasoning piece written.",
        "ttfr",
        TTFT_BUCKETS,
    )
    yield _histogram(
        fields,
        "relay_generation_duration_seconds",
        "From a generation's start to its end event.",
        "duration",
        DURATION_BUCKETS,
    )


def tool_families(fields: Mapping[str, str]) -> Iterator[Metric]:
    calls = CounterMetricFamily(
        "relay_tool_calls",
        "Tool calls that got a result, by tool and status.",
        labels=["tool", "status"],
    )
    for status_and_tool, value in _labelled(fields, "tool:"):
        status, _, tool = status_and_tool.partition(":")
        calls.add_metric([tool, status], value)
    yield calls
    yield _histogram(
        fields,
        "relay_tool_duration_seconds",
        "How long server tools ran, from the call to its result.",
        "tool_duration",
        TOOL_DURATION_BUCKETS,
    )


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR when this process runs in multiprocess mode."""
    folder = multiproc_dir()
    return folder if folder and os.path.isdir(folder) else None


@bp.get("/metrics")
def scrape() -> Response:
    registry = CollectorRegistry(auto_describe=False)
    folder = multiprocess_dir()
    if folder:
        MultiProcessCollector(registry, path=folder)
    else:
        registry.register(_LocalCollector())
    registry.register(RedisCollector(redis_store.client))
    # The classic text format unless the scraper asks for OpenMetrics.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(
        encode(registry), content_type=content_type, headers={"Cache-Control": "no-store"}
    )


class _LocalCollector(Collector):
    """This process's metrics, when there is no multiprocess folder (flask run, tests)."""

    def collect(self) -> Iterator[Metric]:
        return LOCAL.collect()
