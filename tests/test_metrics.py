"""`/metrics`: parsed by prometheus_client's text parser, its figures move as prompts stream.

- The shared stack's gunicorn is scraped before and after real traffic: SSE
  streams open and close, a resume with Last-Event-ID, a waiting long-poll,
  an API error, the job list.
- The figures workers record go through Redis; `generation_*` functions are
  checked against a real Redis and the scrape of an app on it.
- Two gunicorn processes report the sum of both (multiprocess mode), and
  processes that die stop counting (gunicorn's child_exit hook).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import create_session, post_prompt, read_sse
from tests.support.model_server import ModelServer
from tests.support.processes import (
    Process,
    RedisServer,
    free_port,
    gunicorn_argv,
    wait_for,
    wait_until_answers,
)
from tests.support.raw_sse import StreamSet
from webapp import create_app
from webapp.ops import metrics
from webapp.storage import keys
from webapp.storage.extensions import redis_store

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(base_url: str) -> Samples:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_move_with_streams_polls_resumes_and_errors(
    private_stack,
    model_server: ModelServer,
    unique: str,
) -> None:
    # A stack of its own: the open-streams gauge must not see other tests' streams close.
    stack = private_stack()
    web = stack.web()
    stack.worker()
    before = scrape(web)
    for name in (
        "relay_jobs_queued",
        "relay_jobs_running",
        "relay_sse_streams_open",
        "relay_sse_streams_held",
        "relay_long_polls_waiting",
        "relay_chunks_total",
    ):
        assert (name, frozenset()) in before, name
    port = int(web.rsplit(":", 1)[1])
    open_before = value(before, "relay_sse_streams_open")
    held_before = value(before, "relay_sse_streams_held")

    streams = StreamSet()
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        try:
            stream = streams.open(port, f"/api/sessions/{session_id}/events")
            streams.pump(lambda: stream.started, 10, "the SSE stream to start")
            assert value(scrape(web), "relay_sse_streams_open") == open_before + 1

            prompt = f"metrics {unique}"
            model_server.behave(prompt, chunks=["one ", "two ", "three"])
            message_id = post_prompt(http, session_id, prompt)["message_id"]
            streams.pump(lambda: len(stream.chunk_times) == 3, 30, "three chunks")
            # Caught up, the stream is the hub's (webapp/serving/held_streams.py): its
            # chunks say it caught up, not that the hand-over is done, so wait for that.
            wait_for(
                lambda: value(scrape(web), "relay_sse_streams_held") == held_before + 1,
                timeout=10,
                what="the hub to hold the stream",
            )
        finally:
            streams.close()
        # The server sees the client gone at its next write (a heartbeat at most).
        wait_for(
            lambda: value(scrape(web), "relay_sse_streams_open") == open_before,
            timeout=15,
            what="the closed stream to stop counting",
        )
        assert value(scrape(web), "relay_sse_streams_held") == held_before

        # A resume with a cursor, the way EventSource reconnects.
        events = read_sse(web, session_id, until_message=message_id)
        first_id = events.events[0].id
        read_sse(web, session_id, until_message=message_id, headers={"Last-Event-ID": first_id})
        after_resume = scrape(web)
        assert (
            value(after_resume, "relay_sse_reconnects_total")
            == value(before, "relay_sse_reconnects_total") + 1
        )

        # A long-poll waiting on a quiet session, until a prompt wakes it.
        quiet = create_session(http)
        waiting = value(after_resume, "relay_long_polls_waiting")
        polled: list[int] = []
        poller = threading.Thread(
            target=lambda: polled.append(
                http.get(f"/api/sessions/{quiet}/poll", params={"timeout": 20}).status_code
            )
        )
        poller.start()
        wait_for(
            lambda: value(scrape(web), "relay_long_polls_waiting") == waiting + 1,
            timeout=10,
            what="the long-poll to be counted",
        )
        post_prompt(http, quiet, f"metrics wake {unique}")
        poller.join(30)
        assert polled == [200]
        assert value(scrape(web), "relay_long_polls_waiting") == waiting

        assert http.get("/api/sessions/NoSuchSession0000").status_code == 404
    after = scrape(web)
    assert (
        value(after, "relay_api_errors_total", code="session_not_found")
        == value(before, "relay_api_errors_total", code="session_not_found") + 1
    )


def test_generation_metrics_move_as_answers_stream_and_fail(
    web: str,
    worker: Process,
    model_server: ModelServer,
    unique: str,
) -> None:
    def idle() -> Samples | None:
        # Other tests share this stack and may leave an answer running: wait it out.
        samples = scrape(web)
        busy = value(samples, "relay_jobs_queued") + value(samples, "relay_jobs_running")
        return None if busy else samples

    before = wait_for(idle, timeout=30, what="the shared worker to be idle")
    chunks = ["alpha ", "beta ", "gamma ", "delta"]
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        prompt = f"metrics answer {unique}"
        model_server.behave(prompt, chunks=chunks)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        read_sse(web, session_id, until_message=message_id)

        failing = create_session(http)
        bad_prompt = f"metrics failure {unique}"
        model_server.behave(bad_prompt, fail_status=500)
        bad_id = post_prompt(http, failing, bad_prompt)["message_id"]
        assert read_sse(web, failing, until_message=bad_id).events[-1].event == "error"
    after = scrape(web)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("relay_generations_ended_total", finish_reason="stop") == 1
    assert moved("relay_chunks_total") == len(chunks)
    assert moved("relay_tokens_total", kind="completion") == len(chunks)
    assert moved("relay_tokens_total", kind="prompt") > 0
    assert moved("relay_time_to_first_token_seconds_count") == 1
    assert moved("relay_generation_duration_seconds_count") == 1
    assert moved("relay_generation_errors_total", code="upstream_error") == 1


def test_resets_are_counted_by_transport(
    web: str,
    worker: Process,
    app,
    model_server: ModelServer,
    unique: str,
) -> None:
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, f"metrics reset {unique}")["message_id"]
        # Watch the stream in Redis itself: a reader in the web process would
        # leave the session's buffer there (channels linger), and the buffer
        # would rightly serve the cursor after the stream is gone.
        client = redis_store.client_for(app)
        entries = wait_for(
            lambda: (
                (rows := client.xrange(keys.stream(session_id)))
                and rows[-1][1]["event"] == "end"
                and rows
            ),
            timeout=30,
            what=f"the end of {message_id}",
        )
        first_id = entries[0][0]
        # The stream expires (STREAM_TTL_SECONDS) while its meta hash remembers it.
        client.delete(keys.stream(session_id))
        before = scrape(web)
        raw = read_sse(web, session_id, max_events=1, headers={"Last-Event-ID": first_id})
        assert raw.events[0].event == "reset"
        polled = http.get(
            f"/api/sessions/{session_id}/poll", params={"after": first_id, "timeout": 0}
        ).json()
        assert polled["reset"] is True
    after = scrape(web)
    for transport in ("sse", "poll"):
        assert (
            value(after, "relay_resets_total", transport=transport)
            == value(before, "relay_resets_total", transport=transport) + 1
        )


@pytest.fixture()
def private_redis(log_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(log_dir).start()
    yield server
    server.stop()


def test_worker_recordings_reach_the_scrape_through_redis(private_redis: RedisServer) -> None:
    app = create_app({"REDIS_URL": private_redis.url})
    client = redis_store.client_for(app)
    metrics.first_token(client, 0.3)
    metrics.first_token(client, 7.0)
    metrics.generation_ended(
        client,
        finish_reason="stop",
        duration_seconds=1.5,
        chunks=12,
        usage={"prompt_tokens": 40, "completion_tokens": 12},
    )
    metrics.generation_ended(
        client, finish_reason="cancelled", duration_seconds=0.2, chunks=3, usage=None
    )
    metrics.generation_failed(client, "upstream_timeout", chunks=2)
    client.lpush("relay:{jobs}:queued", "{}", "{}")

    samples = parse(app.test_client().get("/metrics").get_data(as_text=True))
    assert value(samples, "relay_jobs_queued") == 2
    assert value(samples, "relay_generations_ended_total", finish_reason="stop") == 1
    assert value(samples, "relay_generations_ended_total", finish_reason="cancelled") == 1
    assert value(samples, "relay_generation_errors_total", code="upstream_timeout") == 1
    assert value(samples, "relay_chunks_total") == 12 + 3 + 2
    assert value(samples, "relay_tokens_total", kind="prompt") == 40
    assert value(samples, "relay_tokens_total", kind="completion") == 12
    ttft = "relay_time_to_first_token_seconds"
    assert value(samples, f"{ttft}_bucket", le="0.25") == 0
    assert value(samples, f"{ttft}_bucket", le="0.5") == 1
    assert value(samples, f"{ttft}_bucket", le="10.0") == 2
    assert value(samples, f"{ttft}_bucket", le="+Inf") == 2
    assert value(samples, f"{ttft}_count") == 2
    assert value(samples, f"{ttft}_sum") == pytest.approx(7.3)
    duration = "relay_generation_duration_seconds"
    assert value(samples, f"{duration}_bucket", le="0.5") == 1
    assert value(samples, f"{duration}_bucket", le="2.0") == 2
    assert value(samples, f"{duration}_count") == 2


def test_metrics_scrape_survives_a_redis_outage(log_dir: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    response = create_app({"REDIS_URL": dead}).test_client().get("/metrics")
    assert response.status_code == 200
    samples = parse(response.get_data(as_text=True))
    assert ("relay_sse_streams_open", frozenset()) in samples
    assert ("relay_jobs_queued", frozenset()) not in samples


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def test_gunicorn_processes_add_up_and_dead_ones_stop_counting(
    base_env: dict[str, str],
    app,
    log_dir: Path,
) -> None:
    port = free_port()
    env = {k: v for k, v in base_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server = Process("web-metrics-2", gunicorn_argv(port, workers=2), env, log_dir).start()
    base_url = f"http://127.0.0.1:{port}"
    streams = StreamSet()
    try:
        wait_until_answers(server, f"{base_url}/healthz")
        wait_for(lambda: len(worker_pids(server.pid)) == 2, timeout=30, what="two workers")
        with httpx.Client(base_url=base_url, timeout=30) as http:
            session_id = create_session(http)
        count = 20
        for _ in range(count):
            streams.open(port, f"/api/sessions/{session_id}/events")
        streams.pump(lambda: all(s.started for s in streams.streams), 20, "streams to start")
        # Whichever process answers the scrape, it reports both processes' streams.
        for _ in range(6):
            assert value(scrape(base_url), "relay_sse_streams_open") == count

        for pid in worker_pids(server.pid):
            os.kill(pid, signal.SIGKILL)  # children of the gunicorn this test started
        streams.pump(
            lambda: all(s.closed for s in streams.streams), 30, "the killed workers' streams to end"
        )
        wait_until_answers(server, f"{base_url}/healthz")  # gunicorn replaced its workers
        wait_for(
            lambda: all(value(scrape(base_url), "relay_sse_streams_open") == 0 for _ in range(3)),
            timeout=15,
            what="dead workers' streams to stop counting",
        )
    finally:
        streams.close()
        server.stop()
