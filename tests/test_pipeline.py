"""End to end: prompt -> job list -> worker -> stream -> SSE / long-poll -> SQL."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TEST_SYSTEM_PROMPT, Stack
from tests.support.client import (
    answer_text,
    assert_strictly_increasing,
    create_session,
    poll_until,
    post_prompt,
    read_sse,
)
from tests.support.model_server import ModelServer
from tests.support.sql import stored_message

pytestmark = pytest.mark.usefixtures("worker")  # `stack` tests bring their own as well


def test_one_prompt_streams_start_chunks_end_and_is_stored(
    stack: Stack, model_server: ModelServer, unique: str
) -> None:
    app, web = stack.app, stack.web
    with stack.http() as client:
        prompt = f"first prompt {unique}"
        model_server.behave(
            prompt,
            chunks=["Hello", ", ", "world", "! ", "Ünïcødé ✓\nline two"],
            usage={"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        )
        session_id = create_session(client)
        accepted = post_prompt(client, session_id, prompt)
        assert accepted["status"] == "queued"
        message_id = accepted["message_id"]

        raw = read_sse(web, session_id, until_message=message_id)

        kinds = [e.event for e in raw.events]
        assert kinds[0] == "start" and kinds[-1] == "end"
        assert set(kinds[1:-1]) == {"chunk"}
        assert raw.events[0].data == {
            "message_id": message_id,
            "model": "test-model",
            "attempt": 1,
            "cached": False,
            "from_step": 0,
        }
        assert all(e.data["step"] == 0 for e in raw.events[1:-1])  # one step: no tools
        assert_strictly_increasing(raw.events)
        sent = "".join(model_server.calls_for(prompt)[0].sent)
        text = answer_text(raw.events, message_id)
        assert text == sent == "Hello, world! Ünïcødé ✓\nline two"
        end = raw.events[-1].data
        assert end["finish_reason"] == "stop"
        assert end["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
        assert end["text_length"] == len(text) and end["chunks"] == 5
        assert (end["steps"], end["tool_calls"]) == (1, 0)

        snapshot = client.get(f"/api/sessions/{session_id}").json()
        assert snapshot["active_message_id"] is None
        assert snapshot["cursor"] == raw.events[-1].id
        user, answer = snapshot["messages"]
        assert (user["role"], user["content"], user["status"]) == ("user", prompt, "done")
        assert answer["id"] == message_id and answer["content"] == text
        assert answer["status"] == "done" and answer["finish_reason"] == "stop"
        assert answer["usage"] == end["usage"] and answer["model"] == "test-model"

        row = stored_message(app, message_id)
        assert row.content == text and row.status == "done" and row.finish_reason == "stop"
        assert row.usage == end["usage"] and row.duration_ms == end["duration_ms"]


def test_sse_starts_with_retry_and_sets_headers(web: str, client: httpx.Client) -> None:
    session_id = create_session(client)
    url = f"{web}/api/sessions/{session_id}/events"
    with httpx.stream("GET", url, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        lines = response.iter_lines()
        assert next(lines).startswith("retry: ")
        assert next(lines) == ""
        # HEARTBEAT_SECONDS is 1 in the tests: an idle stream sends a comment.
        assert next(lines) == ": keep-alive"


@pytest.mark.parametrize("how", ["header", "query"])
def test_reconnect_after_k_chunks_yields_exactly_the_rest(
    web: str, client: httpx.Client, model_server: ModelServer, unique: str, how: str
) -> None:
    prompt = f"resume via {how} {unique}"
    chunks = [f"piece-{i} " for i in range(12)]
    behavior = model_server.behave(prompt, chunks=chunks, gate_after=6, delay_seconds=0)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]

    k = 4  # start + 3 chunks, read while the model is held at chunk 6
    first = read_sse(web, session_id, max_events=k)
    last_id = first.events[-1].id
    behavior.gate.set()
    if how == "header":
        rest = read_sse(
            web, session_id, until_message=message_id, headers={"Last-Event-ID": last_id}
        )
    else:
        rest = read_sse(
            web, session_id, until_message=message_id, params={"last_event_id": last_id}
        )

    whole = read_sse(web, session_id, until_message=message_id)
    assert [e.key for e in first.events + rest.events] == [e.key for e in whole.events]
    assert_strictly_increasing(first.events + rest.events)
    assert answer_text(first.events + rest.events, message_id) == "".join(chunks)


def test_long_poll_yields_the_sse_sequence(web: str, client: httpx.Client, unique: str) -> None:
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, f"poll me {unique}")["message_id"]
    polled = poll_until(client, session_id, message_id, poll_timeout=2)
    streamed = read_sse(web, session_id, until_message=message_id)
    assert [e.key for e in polled] == [e.key for e in streamed.events]

    cursor = polled[-1].id
    empty = client.get(f"/api/sessions/{session_id}/poll", params={"after": cursor, "timeout": 0.5})
    assert empty.status_code == 200
    assert empty.json() == {"events": [], "cursor": cursor, "reset": False}


def test_ten_sse_and_five_long_poll_clients_see_the_same_sequence(
    web: str, client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    prompt = f"fan out {unique}"
    behavior = model_server.behave(
        prompt, chunks=[f"w{i} " for i in range(30)], gate_after=0, delay_seconds=0.005
    )
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]

    def sse() -> list:
        return [e.key for e in read_sse(web, session_id, until_message=message_id).events]

    def poll() -> list:
        with httpx.Client(base_url=web, timeout=30) as http:
            return [e.key for e in poll_until(http, session_id, message_id, poll_timeout=2)]

    with ThreadPoolExecutor(max_workers=15) as pool:
        futures = [pool.submit(sse) for _ in range(10)] + [pool.submit(poll) for _ in range(5)]
        behavior.gate.set()  # the clients are connecting or connected: let the answer flow
        sequences = [f.result(timeout=60) for f in futures]

    assert len(sequences[0]) == 32  # start, 30 chunks, end
    assert all(seq == sequences[0] for seq in sequences)


def test_a_standard_sse_client_library_reads_the_stream(
    web: str, client: httpx.Client, unique: str
) -> None:
    from httpx_sse import connect_sse

    session_id = create_session(client)
    message_id = post_prompt(client, session_id, f"library {unique}")["message_id"]
    seen = []
    with httpx.Client(timeout=30) as http:
        with connect_sse(http, "GET", f"{web}/api/sessions/{session_id}/events") as source:
            for sse in source.iter_sse():
                if not sse.data:
                    continue  # httpx-sse surfaces the data-less `retry:` block; browsers do not
                seen.append((sse.id, sse.event, sse.json()))
                if sse.event == "end":
                    break
    assert seen[0][1] == "start" and seen[-1][1] == "end"
    assert all(data["message_id"] == message_id for _, _, data in seen)
    assert seen[-1][2]["chunks"] == len(seen) - 2


def test_second_prompt_sends_the_conversation_in_order(
    stack: Stack, model_server: ModelServer, unique: str
) -> None:
    web = stack.web
    with stack.http() as client:
        first, second = f"first turn {unique}", f"second turn {unique}"
        model_server.behave(first, chunks=["Answer ", "one."])
        session_id = create_session(client)
        first_id = post_prompt(client, session_id, first)["message_id"]
        read_sse(web, session_id, until_message=first_id)
        second_id = post_prompt(client, session_id, second)["message_id"]
        read_sse(web, session_id, until_message=second_id)

        (call,) = model_server.calls_for(second)
        assert call.body["messages"] == [
            {"role": "system", "content": TEST_SYSTEM_PROMPT},
            {"role": "user", "content": first},
            {"role": "assistant", "content": "Answer one."},
            {"role": "user", "content": second},
        ]
        assert call.body["stream"] is True
        assert call.body["stream_options"] == {"include_usage": True}
        assert call.body["model"] == "test-model"
        assert call.body["max_tokens"] == 1024  # LLM_MAX_TOKENS caps every answer
