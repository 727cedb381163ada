"""Fault injection against real processes: lost, frozen and stopped workers, cancels.

Every accepted prompt ends, exactly once, in a complete answer or an explicit
error, in the stream and in SQL.
"""

from __future__ import annotations

import signal
from typing import Any, NamedTuple

import httpx
import pytest

from tests.support.client import (
    answer_text,
    count,
    create_session,
    post_prompt,
    read_sse,
    reasoning_text,
    stream_events,
)
from tests.support.model_server import ModelServer
from tests.support.processes import Process, wait_for
from tests.support.sql import answer_rows

pytestmark = pytest.mark.slow

LEASE = {"JOB_LEASE_SECONDS": "1.5"}


def held_answer(model_server: ModelServer, prompt: str, chunks: int = 20, hold_at: int = 5):
    """An answer that sends `hold_at` chunks, then waits for the test to release it."""
    texts = [f"part{i:02d} " for i in range(chunks)]
    return texts, model_server.behave(prompt, chunks=texts, gate_after=hold_at, delay_seconds=0.002)


def wait_for_chunks(http: httpx.Client, session_id: str, n: int, **match) -> list:
    return wait_for(
        lambda: (
            (events := stream_events(http, session_id)) and count(events, "chunk") >= n and events
        ),
        timeout=20,
        what=f"{n} chunks",
    )


class Held(NamedTuple):
    """An answer of a private stack's web and worker, held by the model after 5 chunks."""

    web: str
    worker: Process
    session_id: str
    message_id: str
    texts: list[str]
    behavior: Any


def held_mid_way(stack, model_server: ModelServer, prompt: str) -> Held:
    web = stack.web()
    worker = stack.worker()
    texts, behavior = held_answer(model_server, prompt)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        wait_for_chunks(http, session_id, 5)
    return Held(web, worker, session_id, message_id, texts, behavior)


def test_killed_worker_answer_completes_as_attempt_2(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(**LEASE)
    held = held_mid_way(stack, model_server, f"kill me {unique}")
    held.worker.kill()
    held.behavior.gate.set()
    stack.worker()
    message_id, texts = held.message_id, held.texts
    events = read_sse(held.web, held.session_id, until_message=message_id).events

    starts = [e for e in events if e.event == "start"]
    assert [s.data["attempt"] for s in starts] == [1, 2]
    after_restart = events[events.index(starts[1]) :]
    assert answer_text(after_restart, message_id) == "".join(texts)
    assert count(after_restart, "chunk") == len(texts)
    assert events[-1].event == "end" and events[-1].data["text_length"] == len("".join(texts))
    (row,) = answer_rows(stack.app, message_id)
    assert (row.status, row.content, row.attempt) == ("done", "".join(texts), 2)


def test_killed_worker_mid_reasoning_reasons_and_answers_whole_as_attempt_2(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(**LEASE)
    web = stack.web()
    first = stack.worker()
    prompt = f"kill me thinking {unique}"
    thoughts = [f"thought{i:02d} " for i in range(10)]
    texts = [f"part{i:02d} " for i in range(5)]
    behavior = model_server.behave(
        prompt, reasoning=thoughts, chunks=texts, gate_after=5, delay_seconds=0.002
    )
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        wait_for(
            lambda: count(stream_events(http, session_id), "reasoning") >= 5,
            timeout=20,
            what="5 reasoning pieces",
        )

        first.kill()
        behavior.gate.set()
        stack.worker()
        events = read_sse(web, session_id, until_message=message_id).events

    starts = [e for e in events if e.event == "start"]
    assert [s.data["attempt"] for s in starts] == [1, 2]
    after_restart = events[events.index(starts[1]) :]
    assert reasoning_text(after_restart, message_id) == "".join(thoughts)
    assert answer_text(after_restart, message_id) == "".join(texts)
    assert count(after_restart, "reasoning") == len(thoughts)
    assert count(after_restart, "chunk") == len(texts)
    end = events[-1]
    assert end.event == "end" and end.data["reasoning_length"] == len("".join(thoughts))
    assert count(events, "end") == 1
    (row,) = answer_rows(stack.app, message_id)
    assert (row.status, row.attempt) == ("done", 2)
    assert (row.reasoning, row.content) == ("".join(thoughts), "".join(texts))


def test_frozen_worker_is_fenced_off_when_it_wakes(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(**LEASE)
    web = stack.web()
    frozen = stack.worker()
    prompt = f"freeze me {unique}"
    texts, behavior = held_answer(model_server, prompt)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        wait_for_chunks(http, session_id, 5)

        frozen.signal(signal.SIGSTOP)
        try:
            stack.worker()
            wait_for(
                lambda: count(stream_events(http, session_id), "start", attempt=2),
                timeout=20,
                what="attempt 2 to start",
            )
            behavior.gate.set()  # both attempts' model streams go on now
            events = read_sse(web, session_id, until_message=message_id).events
        finally:
            frozen.signal(signal.SIGCONT)
        # The woken worker goes on with attempt 1 and is refused at its next write.
        wait_for(lambda: "fenced off" in frozen.log_text(), timeout=20, what="the fence")
        assert stream_events(http, session_id, after=events[-1].id) == []

    starts = [e for e in events if e.event == "start"]
    assert [s.data["attempt"] for s in starts] == [1, 2]
    assert answer_text(events, message_id) == "".join(texts)
    (row,) = answer_rows(stack.app, message_id)
    assert (row.status, row.content, row.attempt) == ("done", "".join(texts), 2)


def test_sigterm_lets_a_running_answer_finish(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack()
    web = stack.web()
    worker = stack.worker()
    prompt = f"finish first {unique}"
    texts = [f"w{i} " for i in range(40)]
    model_server.behave(prompt, chunks=texts, delay_seconds=0.03)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        wait_for_chunks(http, session_id, 3)
        worker.signal(signal.SIGTERM)
        events = read_sse(web, session_id, until_message=message_id).events
    worker.proc.wait(30)
    assert [e.data["attempt"] for e in events if e.event == "start"] == [1]
    assert answer_text(events, message_id) == "".join(texts)
    assert events[-1].event == "end"


def test_sigterm_hands_back_what_cannot_finish_in_the_grace(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(WORKER_SHUTDOWN_GRACE_SECONDS="0.5")
    held = held_mid_way(stack, model_server, f"hand back {unique}")
    held.worker.signal(signal.SIGTERM)
    held.worker.proc.wait(30)
    assert "job handed back" in held.worker.log_text()
    held.behavior.gate.set()
    stack.worker()
    events = read_sse(held.web, held.session_id, until_message=held.message_id).events
    assert [e.data["attempt"] for e in events if e.event == "start"] == [1, 2]
    assert answer_text(events, held.message_id) == "".join(held.texts)
    (row,) = answer_rows(stack.app, held.message_id)
    assert (row.status, row.content) == ("done", "".join(held.texts))


def test_sigterm_with_redis_gone_leaves_the_job_to_a_reaper_in_one_line(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    """The hand-back cannot reach Redis: the job stays leased, and the log says so, no traceback."""
    stack = private_stack(WORKER_SHUTDOWN_GRACE_SECONDS="0.5")
    held = held_mid_way(stack, model_server, f"hand back without redis {unique}")
    stack.redis.stop()
    held.worker.signal(signal.SIGTERM)
    held.worker.proc.wait(30)
    held.behavior.gate.set()
    log = held.worker.log_text()
    left = f"job left to the reaper session={held.session_id} message={held.message_id}"
    assert left in log, log
    assert "worker stopped" in log and "Traceback" not in log, log


def test_answer_fails_for_good_after_the_last_attempt(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(JOB_MAX_ATTEMPTS="1", **LEASE)
    web = stack.web()
    doomed = stack.worker()
    prompt = f"lost for good {unique}"
    held_answer(model_server, prompt)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        wait_for_chunks(http, session_id, 5)
        doomed.kill()
        stack.worker()
        events = read_sse(web, session_id, until_message=message_id).events
        assert events[-1].event == "error"
        assert events[-1].data["error"]["code"] == "worker_lost"
        # The session takes prompts again.
        post_prompt(http, session_id, f"next {unique}")
    (row,) = answer_rows(stack.app, message_id)
    assert (row.status, row.error_code) == ("error", "worker_lost")


@pytest.mark.usefixtures("worker")
def test_cancel_stops_even_a_silent_model(
    app, web: str, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"cancel me {unique}"
    texts, behavior = held_answer(model_server, prompt, hold_at=3)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]
    wait_for_chunks(client, session_id, 3)

    response = client.post(f"/api/sessions/{session_id}/messages/{message_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelling"
    # The model stays silent (the gate is never opened): only the cancel can end it.
    events = read_sse(web, session_id, until_message=message_id).events
    end = events[-1]
    assert end.event == "end" and end.data["finish_reason"] == "cancelled"
    assert answer_text(events, message_id) == "".join(texts[:3])
    assert end.data["text_length"] == len("".join(texts[:3]))
    snapshot = client.get(f"/api/sessions/{session_id}").json()
    assert snapshot["messages"][-1]["status"] == "cancelled"
    assert snapshot["messages"][-1]["content"] == "".join(texts[:3])
    # A prompt right after a cancel is accepted.
    post_prompt(client, session_id, f"after cancel {unique}")
    behavior.gate.set()
