"""A web process that dies mid-POST blocks nothing: its claim expires, its answer is failed.

The POST claims the session, stores the prompt, then queues the job. A
process killed between those steps leaves a claim with no job behind it,
and maybe an answer row that no worker will ever take. The claim expires
after CLAIM_TTL_SECONDS unless its job was queued; here each test shortens
what is left of it with PEXPIRE instead of waiting two minutes.
"""

from __future__ import annotations

import httpx

from tests.support.client import create_session, post_prompt, read_sse
from tests.support.model_server import ModelServer
from tests.support.processes import wait_for
from tests.support.sql import answer_rows


def redis_client(app):
    from webapp.storage.extensions import redis_store

    return redis_store.client_for(app)


def active_key(session_id: str) -> str:
    from webapp.storage import keys

    return keys.active(session_id)


def claim_without_a_job(app, session_id: str, message_id: str) -> None:
    """What a POST leaves when its process dies before it queues the job."""
    from webapp.storage import jobs

    assert jobs.claim(redis_client(app), session_id, message_id).active is None


def let_the_claim_expire(app, session_id: str) -> None:
    redis = redis_client(app)
    assert redis.ttl(active_key(session_id)) > 0, "a claim without a job must expire"
    redis.pexpire(active_key(session_id), 100)
    wait_for(lambda: not redis.exists(active_key(session_id)), what="the claim to expire")


def test_a_claim_left_without_a_prompt_expires(
    app, web: str, worker, client: httpx.Client, unique: str
) -> None:
    session_id = create_session(client)
    claim_without_a_job(app, session_id, "ghost" * 4)
    prompt = {"content": f"after a ghost {unique}"}
    assert client.post(f"/api/sessions/{session_id}/messages", json=prompt).status_code == 409

    let_the_claim_expire(app, session_id)
    message_id = post_prompt(client, session_id, prompt["content"])["message_id"]
    assert read_sse(web, session_id, until_message=message_id).events[-1].event == "end"


def test_an_answer_never_queued_is_failed_not_waited_for(
    app, web: str, worker, client: httpx.Client, unique: str
) -> None:
    from webapp.storage import models
    from webapp.storage.extensions import db

    session_id = create_session(client)
    orphan = models.new_message_id()
    claim_without_a_job(app, session_id, orphan)
    with app.app_context():
        models.add_prompt(session_id, f"never queued {unique}", orphan)
        db.session.commit()
        db.session.remove()
    # While the claim lasts, the answer may still be on its way to the queue.
    assert client.get(f"/api/sessions/{session_id}").json()["active_message_id"] == orphan

    let_the_claim_expire(app, session_id)
    snapshot = client.get(f"/api/sessions/{session_id}").json()
    assert snapshot["active_message_id"] is None
    (shown,) = [m for m in snapshot["messages"] if m["id"] == orphan]
    assert shown["status"] == "error" and shown["error"]["code"] == "internal_error"
    waited = client.get(f"/api/sessions/{session_id}/messages/{orphan}", params={"wait": 5})
    assert waited.json()["status"] == "error"

    # The next prompt is taken, and records the lost answer as failed in SQL.
    message_id = post_prompt(client, session_id, f"next {unique}")["message_id"]
    (row,) = answer_rows(app, orphan)
    assert (row.status, row.error_code) == ("error", "internal_error")
    assert read_sse(web, session_id, until_message=message_id).events[-1].event == "end"


def test_a_queued_answer_keeps_its_claim(
    app, web: str, worker, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"hold the claim {unique}"
    behavior = model_server.behave(prompt, chunks=["a ", "b ", "c"], gate_after=1)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]
    redis = redis_client(app)
    wait_for(lambda: redis.hget(active_key(session_id), "seq"), what="the first chunk")
    assert redis.ttl(active_key(session_id)) == -1, "a queued job's claim must not expire"
    behavior.gate.set()
    assert read_sse(web, session_id, until_message=message_id).events[-1].event == "end"
    (row,) = answer_rows(app, message_id)
    assert row.status == "done"
