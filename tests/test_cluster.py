"""End to end on a three-node Redis Cluster (REDIS_CLUSTER=1), started by the test session.

gunicorn and a worker run against the cluster: a prompt is queued (the job
lists' `{jobs}` slot), generated (fenced Lua writes on the session's slot,
published to every node), streamed by SSE and long-poll (the hub's pub/sub),
and stored. Every key of the session lands in one slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.client import (
    answer_text,
    create_session,
    poll_until,
    post_prompt,
    read_sse,
)
from tests.support.cluster import RedisCluster
from tests.support.model_server import ModelServer
from tests.support.processes import start_web, start_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(log_dir: Path) -> Iterator[RedisCluster]:
    nodes = RedisCluster(log_dir).start()
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def cluster_stack(
    cluster: RedisCluster, base_env: dict[str, str], app, log_dir: Path
) -> Iterator[str]:
    """Base URL of gunicorn, with a worker, both on the cluster (and the shared SQLite)."""
    env = dict(base_env, REDIS_URL=cluster.url, REDIS_CLUSTER="1")
    web, base_url = start_web(env, log_dir, name="web-cluster")
    worker = start_worker(env, log_dir, name="worker-cluster")
    yield base_url
    worker.stop()
    web.stop()


def session_slots(cluster: RedisCluster, session_id: str) -> set[int]:
    """The slots of every key, on any node, that names the session."""
    slots: set[int] = set()
    for port in cluster.ports:
        with redis.Redis(host="127.0.0.1", port=port, decode_responses=True) as node:
            for key in node.scan_iter(match=f"*{session_id}*"):
                slots.add(node.cluster("KEYSLOT", key))
    assert slots, "the session left no keys"
    return slots


def test_an_answer_streams_end_to_end_on_a_redis_cluster(
    cluster: RedisCluster,
    cluster_stack: str,
    model_server: ModelServer,
    unique: str,
) -> None:
    prompt = f"cluster {unique}"
    chunks = ["Three ", "nodes, ", "one ", "slot ", "per ", "session."]
    model_server.behave(prompt, chunks=chunks)
    with httpx.Client(base_url=cluster_stack, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        sse = read_sse(cluster_stack, session_id, until_message=message_id, timeout=15)
        assert sse.events[-1].event == "end"
        assert answer_text(sse.events, message_id) == "".join(chunks)
        polled = poll_until(http, session_id, message_id)
        assert [e.id for e in polled] == [e.id for e in sse.events]
        stored = http.get(f"/api/sessions/{session_id}").json()["messages"][-1]
        assert (stored["status"], stored["content"]) == ("done", "".join(chunks))
        assert http.get("/readyz").status_code == 200
    assert len(session_slots(cluster, session_id)) == 1


def test_the_web_side_answers_on_a_redis_cluster(
    cluster: RedisCluster,
    cluster_stack: str,
    unique: str,
) -> None:
    """Readiness, prompts (claim + enqueue), long-poll (the hub) and /metrics, on the cluster."""
    with httpx.Client(base_url=cluster_stack, timeout=30) as http:
        assert http.get("/readyz").status_code == 200
        session_id = create_session(http)
        post_prompt(http, session_id, f"cluster web {unique}")
        polled = http.get(f"/api/sessions/{session_id}/poll", params={"timeout": 0})
        assert polled.status_code == 200 and polled.json()["reset"] is False
        scraped = http.get("/metrics")
        assert scraped.status_code == 200 and "relay_jobs_queued " in scraped.text
    assert len(session_slots(cluster, session_id)) == 1


def test_a_retried_post_and_a_delete_on_a_redis_cluster(
    cluster: RedisCluster,
    cluster_stack: str,
    unique: str,
) -> None:
    """The idempotency key and its index are written in one transaction; a delete finds both."""
    with httpx.Client(base_url=cluster_stack, timeout=30) as http:
        session_id = create_session(http)
        url = f"/api/sessions/{session_id}/messages"
        sent = {
            "json": {"content": f"cluster retry {unique}"},
            "headers": {"Idempotency-Key": unique},
        }
        first = http.post(url, **sent)
        again = http.post(url, **sent)
        assert first.status_code == again.status_code == 202, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert len(session_slots(cluster, session_id)) == 1
        assert http.delete(f"/api/sessions/{session_id}").status_code == 204
    leftover = [
        key
        for port in cluster.ports
        for key in redis.Redis(host="127.0.0.1", port=port).scan_iter(match=f"*{session_id}*")
    ]
    assert leftover == []
