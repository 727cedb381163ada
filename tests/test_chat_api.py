"""webapp/http/chat_api.py: the AI SDK's chat routes, driven by the real `ai` package.

Every test runs gunicorn+gevent over real HTTP, a real worker and the test
model server; the client is tests/js/chat_client.mjs, which drives
`DefaultChatTransport` and `readUIMessageStream` as `useChat` does (the
`ai_sdk` fixture; skipped without node and npm).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.ai_sdk import AiSdk, ChatResult
from tests.support.client import count, create_session, stream_events
from tests.support.model_server import ModelServer
from tests.support.processes import start_web, wait_for
from tests.support.proxies import BufferingProxy
from tests.support.sql import answer_rows

pytestmark = pytest.mark.slow

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
LEASE = {"JOB_LEASE_SECONDS": "1.5"}


@pytest.fixture()
def background() -> Iterator[ThreadPoolExecutor]:
    """Runs SDK clients while the test holds the model's answer."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


def held_answer(model_server: ModelServer, prompt: str, hold_at: int = 5):
    """An answer that sends `hold_at` pieces, then waits for the test to release it."""
    texts = [f"word{i:02d} " for i in range(20)]
    behavior = model_server.behave(prompt, chunks=texts, gate_after=hold_at, delay_seconds=0.002)
    return "".join(texts), behavior


def wait_for_chunks(http: httpx.Client, session_id: str, n: int) -> None:
    wait_for(
        lambda: count(stream_events(http, session_id), "chunk") >= n, timeout=20, what="chunks"
    )


def wait_for_chat_streams(log_dir: Path, session_id: str, count: int) -> None:
    """Wait until the shared web has opened `count` chat streams on this session.

    Counted from its log, not from the process-wide stream gauge: streams of
    earlier tests may close meanwhile, and the gauge would never reach a sum.
    """
    line = f"chat stream open session={session_id} "
    log = log_dir / "web.log"
    wait_for(
        lambda: log.read_text(errors="replace").count(line) >= count,
        timeout=20,
        what=f"{count} chat streams of {session_id}",
    )


def sending(
    pool: ThreadPoolExecutor, ai_sdk: AiSdk, web: str, session_id: str, prompt: str, **options
) -> Future[ChatResult]:
    return pool.submit(ai_sdk.chat, f"{web}/api/chat", session_id, text=prompt, **options)


def stored(app, message_id: str):
    (row,) = answer_rows(app, message_id)
    return row


# --- an answer ------------------------------------------------------------------------


def test_send_streams_the_stored_answer(
    web: str, worker, app, ai_sdk: AiSdk, model_server: ModelServer, unique: str
) -> None:
    prompt = f"chat send {unique}"
    texts = ["Hello", ", wörld ✓", "\n\nbye"]
    model_server.behave(prompt, chunks=texts)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        result = ai_sdk.chat(f"{web}/api/chat", session_id, text=prompt)
        assert (result.status, result.error) == ("finished", None)
        row = stored(app, result.message["id"])
        assert (row.status, row.content, result.text) == ("done", "".join(texts), "".join(texts))
        assert result.chunk_types[:2] == ["start", "start-step"]
        assert result.chunk_types[-2:] == ["finish-step", "finish"]

        history = http.get(f"/api/chat/{session_id}/messages").json()
        assert [(m["role"], m["parts"]) for m in history] == [
            ("user", [{"type": "text", "text": prompt}]),
            ("assistant", [{"type": "text", "text": "".join(texts)}]),
        ]
        assert history[1]["id"] == row.id
    # After the end nothing is active: 204, which the transport returns as null.
    assert ai_sdk.chat(f"{web}/api/chat", session_id, action="reconnect").status == "no-stream"


def test_the_wire_has_the_protocols_headers_entry_ids_and_done(
    web: str, worker, model_server: ModelServer, unique: str
) -> None:
    prompt = f"chat wire {unique}"
    model_server.behave(prompt, chunks=["a", "b"])
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": prompt}]}
        body = {"id": session_id, "messages": [user], "trigger": "submit-message"}
        with http.stream("POST", "/api/chat", json=body) as response:
            raw = response.read().decode()
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        entry_ids = [e.id for e in stream_events(http, session_id)]
    events = [e for e in raw.split("\n\n") if e and not e.startswith(":")]
    assert events[-1] == "data: [DONE]"
    ids = [line[4:] for e in events for line in e.split("\n") if line.startswith("id: ")]
    # The last event made from each entry carries its id; the catch-up's is its cursor.
    # (An entry that maps to no chunk, like the `start` a catch-up already sent, has none.)
    assert ids[-1] == entry_ids[-1] and set(ids[1:]) <= set(entry_ids)
    assert ids[1:] == sorted(ids[1:], key=lambda i: tuple(map(int, i.split("-"))))


def test_reasoning_part_equals_the_stored_reasoning(
    web: str, worker, app, ai_sdk: AiSdk, model_server: ModelServer, unique: str
) -> None:
    prompt = f"chat reasoning {unique}"
    model_server.behave(prompt, reasoning=["Let me ", "think."], chunks=["Yes", "."])
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        result = ai_sdk.chat(f"{web}/api/chat", session_id, text=prompt)
    row = stored(app, result.message["id"])
    assert (result.reasoning, result.text) == (row.reasoning, row.content)
    assert (row.reasoning, row.content) == ("Let me think.", "Yes.")
    assert [p["type"] for p in result.message["parts"] if "text" in p] == ["reasoning", "text"]


def test_a_retried_post_streams_the_first_answer_again(
    web: str, worker, app, model_server: ModelServer, unique: str
) -> None:
    prompt = f"chat idempotent {unique}"
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": prompt}]}
        body = {"id": session_id, "messages": [user], "trigger": "submit-message"}
        key = {"Idempotency-Key": f"k-{unique}"}
        first = http.post("/api/chat", json=body, headers=key)
        again = http.post("/api/chat", json=body, headers=key)
        other = http.post("/api/chat", json={**body, "messages": [{**user, "parts": []}]})
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert first.text.split("\n\n")[-3:] == again.text.split("\n\n")[-3:]
    assert len(model_server.calls_for(prompt)) == 1
    assert other.json()["error"]["code"] == "empty_prompt"


# --- resume -----------------------------------------------------------------------------


def test_a_second_client_resumes_mid_answer_with_the_text_once(
    web: str, worker, ai_sdk: AiSdk, model_server: ModelServer, unique: str, background, log_dir
) -> None:
    prompt = f"chat resume {unique}"
    whole, behavior = held_answer(model_server, prompt)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        first = sending(background, ai_sdk, web, session_id, prompt)
        wait_for_chunks(http, session_id, 5)
        second = background.submit(ai_sdk.chat, f"{web}/api/chat", session_id, action="reconnect")
        wait_for_chat_streams(log_dir, session_id, 2)  # both read the answer while it is held
        behavior.gate.set()
        results = [first.result(60), second.result(60)]
    assert [(r.status, r.text) for r in results] == [("finished", whole)] * 2
    assert results[0].message["id"] == results[1].message["id"]
    assert ai_sdk.chat(f"{web}/api/chat", session_id, action="reconnect").status == "no-stream"


def test_the_first_client_resumes_after_its_connection_is_cut(
    web: str, worker, ai_sdk: AiSdk, model_server: ModelServer, unique: str, background, log_dir
) -> None:
    prompt = f"chat cut {unique}"
    whole, behavior = held_answer(model_server, prompt)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        cut = sending(background, ai_sdk, web, session_id, prompt, abortAfterChars=len("word00 "))
        assert cut.result(60).status == "aborted"
        resumed = background.submit(ai_sdk.chat, f"{web}/api/chat", session_id, action="reconnect")
        wait_for_chat_streams(log_dir, session_id, 2)  # the cut one, then the resumed one
        behavior.gate.set()
        result = resumed.result(60)
    assert (result.status, result.text) == ("finished", whole)
    assert result.chunk_types.count("start") == 1


def test_the_stream_is_cut_at_its_time_limit_and_resumes(
    base_env, log_dir: Path, web: str, worker, ai_sdk: AiSdk, model_server, unique, background
) -> None:
    """A clean close would look finished to the SDK: at SSE_MAX_SECONDS the body is cut."""
    prompt = f"chat time limit {unique}"
    whole, behavior = held_answer(model_server, prompt)
    short, short_url = start_web(dict(base_env, SSE_MAX_SECONDS="1"), log_dir, name="web-chat-1s")
    try:
        with httpx.Client(base_url=web, timeout=30) as http:
            session_id = create_session(http)
            result = ai_sdk.chat(f"{short_url}/api/chat", session_id, text=prompt)
            assert result.status == "error"  # thrown: not taken for a finished answer
            assert result.text == whole[: len(result.text)] and result.text != whole
            assert "finish" not in result.chunk_types
            resumed = background.submit(
                ai_sdk.chat, f"{web}/api/chat", session_id, action="reconnect"
            )
            wait_for_chat_streams(log_dir, session_id, 1)
            behavior.gate.set()
            assert (resumed.result(60).status, resumed.result().text) == ("finished", whole)
    finally:
        behavior.gate.set()
        short.stop()
    assert "Traceback" not in short.log_text()


def test_limits_and_cors_apply_to_chat(
    base_env,
    log_dir: Path,
    web: str,
    worker,
    ai_sdk: AiSdk,
    model_server: ModelServer,
    unique,
    background,
) -> None:
    origin = "https://app.example.com"
    env = dict(base_env, RATE_LIMIT="1/hour", MAX_STREAMS_PER_CLIENT="1", CORS_ORIGINS=origin)
    proc, limited = start_web(env, log_dir, name="web-chat-limits")
    prompt = f"chat limits {unique}"
    _, behavior = held_answer(model_server, prompt)
    try:
        with httpx.Client(base_url=limited, timeout=30) as http:
            preflight = http.options(
                "/api/chat",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )
            session_id = create_session(http)
            sent = sending(background, ai_sdk, limited, session_id, prompt)
            with httpx.Client(base_url=web, timeout=30) as elsewhere:  # a poll is a stream too
                wait_for_chunks(elsewhere, session_id, 5)
            second = ai_sdk.chat(f"{limited}/api/chat", session_id, action="reconnect")
            behavior.gate.set()
            assert sent.result(60).status == "finished"
            # Two more prompts, in sessions of their own: a fixed window's edge
            # may fall between two of the three, never twice.
            refused = []
            for n in range(2):
                other = create_session(http)
                result = ai_sdk.chat(f"{limited}/api/chat", other, text=f"over {n} {unique}")
                if result.status == "error":
                    listed = http.get(f"/api/chat/{other}/messages", headers={"Origin": origin})
                    refused.append((result.error, listed))
    finally:
        behavior.gate.set()
        proc.stop()
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert (second.error["statusCode"], json.loads(second.error["message"])["error"]["code"]) == (
        429,
        "too_many_streams",
    )
    assert refused
    for error, listed in refused:
        body = json.loads(error["message"])
        assert (error["statusCode"], body["error"]["code"]) == (429, "rate_limited")
        assert listed.json() == []  # no prompt was stored for it
        assert listed.headers["access-control-allow-origin"] == origin


def test_regenerate_replaces_the_last_answer(
    web: str, worker, app, ai_sdk: AiSdk, model_server: ModelServer, unique: str
) -> None:
    prompt = f"chat regenerate {unique}"
    model_server.behave(prompt, chunks=["first"])
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        first = ai_sdk.chat(f"{web}/api/chat", session_id, text=prompt)
        model_server.behave(prompt, chunks=["second"])
        history = http.get(f"/api/chat/{session_id}/messages").json()
        again = ai_sdk.chat(
            f"{web}/api/chat",
            session_id,
            trigger="regenerate-message",
            messages=history[:1],
            messageId=first.message["id"],
        )
        after = http.get(f"/api/chat/{session_id}/messages").json()
    assert (again.status, again.text) == ("finished", "second")
    assert again.message["id"] != first.message["id"]
    assert [m["id"] for m in after] == [history[0]["id"], again.message["id"]]
    assert stored(app, first.message["id"]).status == "superseded"


def test_the_answer_arrives_whole_through_a_buffering_proxy(
    web: str, worker, ai_sdk: AiSdk, model_server: ModelServer, unique: str
) -> None:
    prompt = f"chat buffered {unique}"
    texts = [f"w{i} " for i in range(30)]
    model_server.behave(prompt, chunks=texts)
    proxy = BufferingProxy(web).start()
    try:
        with httpx.Client(base_url=web, timeout=30) as http:
            session_id = create_session(http)
        result = ai_sdk.chat(f"{proxy.base_url}/api/chat", session_id, text=prompt)
    finally:
        proxy.stop()
    assert (result.status, result.text) == ("finished", "".join(texts))
    assert proxy.held_streams == 1


# --- stop, faults, errors ---------------------------------------------------------------


def test_stop_cancels_the_generation_and_the_stream_aborts(
    web: str, worker, app, ai_sdk: AiSdk, model_server: ModelServer, unique: str, background
) -> None:
    prompt = f"chat stop {unique}"
    _, behavior = held_answer(model_server, prompt)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        sent = sending(background, ai_sdk, web, session_id, prompt)
        wait_for_chunks(http, session_id, 5)
        stopped = http.post(f"/api/chat/{session_id}/stop")
        try:
            result = sent.result(60)
        finally:
            behavior.gate.set()
    assert stopped.status_code == 202 and stopped.json()["message_id"] == result.message["id"]
    assert (result.status, result.chunk_types[-1]) == ("finished", "abort")
    row = stored(app, result.message["id"])
    assert (row.status, row.finish_reason) == ("cancelled", "cancelled")
    assert result.text == row.content


def test_a_killed_worker_leaves_exactly_the_final_attempts_text(
    private_stack, ai_sdk: AiSdk, model_server: ModelServer, unique: str, background
) -> None:
    stack = private_stack(**LEASE)
    web = stack.web()
    first = stack.worker()
    prompt = f"chat kill {unique}"
    whole, behavior = held_answer(model_server, prompt)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        sent = sending(background, ai_sdk, web, session_id, prompt)
        wait_for_chunks(http, session_id, 5)
        first.kill()
        behavior.gate.set()
        stack.worker()
        result = sent.result(60)
    assert (result.status, result.text) == ("finished", whole)
    assert result.chunk_types.count("reset-step") == 1
    row = stored(stack.app, result.message["id"])
    assert (row.content, row.attempt) == (whole, 2)


def test_a_second_submit_while_one_is_active_throws_409(
    web: str, worker, ai_sdk: AiSdk, model_server: ModelServer, unique: str, background
) -> None:
    prompt = f"chat busy {unique}"
    _, behavior = held_answer(model_server, prompt)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        sent = sending(background, ai_sdk, web, session_id, prompt)
        try:
            wait_for_chunks(http, session_id, 5)
            busy = ai_sdk.chat(f"{web}/api/chat", session_id, text="another")
        finally:
            behavior.gate.set()
        assert sent.result(60).status == "finished"
    assert (busy.status, busy.error["statusCode"]) == ("error", 409)
    body = json.loads(busy.error["message"])
    assert body["error"]["code"] == "generation_active"
    assert body["error"]["message_id"] == sent.result().message["id"]


def test_an_unknown_session_throws_404(web: str, ai_sdk: AiSdk) -> None:
    result = ai_sdk.chat(f"{web}/api/chat", "no_such_session_1", text="Hi")
    assert (result.status, result.error["statusCode"]) == ("error", 404)
    assert json.loads(result.error["message"])["error"]["code"] == "session_not_found"
    resumed = ai_sdk.chat(f"{web}/api/chat", "no_such_session_1", action="reconnect")
    assert (resumed.status, resumed.error["statusCode"]) == ("error", 404)


def test_access_control_needs_the_owners_token(
    base_env, log_dir: Path, app, worker, ai_sdk: AiSdk, model_server: ModelServer, unique: str
) -> None:
    from webapp.http import auth, sessions

    with app.app_context():
        session_id = sessions.create(owner="alice")
    proc, guarded = start_web(dict(base_env, AUTH_JWT_SECRET=SECRET), log_dir, name="web-chat-auth")
    try:
        api = f"{guarded}/api/chat"
        prompt = f"chat auth {unique}"
        model_server.behave(prompt, chunks=["mine"])
        anonymous = ai_sdk.chat(api, session_id, text=prompt)
        bob = {"Authorization": f"Bearer {auth.mint(SECRET, 'bob', 60)}"}
        stranger = ai_sdk.chat(api, session_id, text=prompt, headers=bob)
        alice = {"Authorization": f"Bearer {auth.mint(SECRET, 'alice', 60)}"}
        owner = ai_sdk.chat(api, session_id, text=prompt, headers=alice)
    finally:
        proc.stop()
    assert (anonymous.status, anonymous.error["statusCode"]) == ("error", 401)
    assert json.loads(anonymous.error["message"])["error"]["code"] == "unauthorized"
    assert stranger.error["statusCode"] == 404
    assert (owner.status, owner.text) == ("finished", "mine")
