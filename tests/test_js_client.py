"""relay's JavaScript client (clients/js) under Node, against real relay processes.

Each test runs clients/js/test/follow.mjs (tests/support/js_client.py), which
follows a session with the client, and compares what the client ended with,
and every event it applied, with what relay stored: the answer's text in
SQL and its events in the session's stream. Answers are made of distinct
numbered words, so a repeated or missing piece changes the text. The
harness is installed with `npm ci`; the tests skip without node.
"""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import jwt
import pytest

from tests.support.ai_sdk import NodeMissing
from tests.support.client import Event, create_session, read_sse
from tests.support.js_client import (
    HARNESS,
    Follower,
    check_exactly_once,
    install_harness,
    node,
)
from tests.support.model_server import ModelServer
from tests.support.processes import wait_for
from tests.support.proxies import BufferingProxy, ByteCuttingProxy, FreezingProxy
from tests.support.sql import answer_rows
from tests.test_faults import LEASE, held_mid_way

pytestmark = pytest.mark.slow

# The bundle a page loads, minified and gzipped (issue 24).
MAX_GZIPPED_BYTES = 12_000
SECRET = "a-test-secret-for-the-js-client-tokens"
AUDIENCE = "relay-js-client"
# Reconnects wait about the server's `retry:`; the default (2 s) would make
# a test of tens of cuts last minutes.
QUICK_RETRY = {"SSE_RETRY_MS": "100"}
CHUNKS = 200
SEED = 24
CUTS = 60


@pytest.fixture(scope="module")
def js_harness() -> None:
    try:
        install_harness()
    except NodeMissing as exc:
        pytest.skip(str(exc))


def words(count: int) -> list[str]:
    return [f"w{i:03d} " for i in range(count)]


def stream_of(web: str, session_id: str, message_id: str) -> list[Event]:
    return read_sse(web, session_id, until_message=message_id).events


def stored_text(app, message_id: str) -> str:
    (row,) = wait_for(lambda: answer_rows(app, message_id), what="the answer stored")
    assert row.status == "done"
    return row.content


def running_stack(private_stack, **env: str):
    stack = private_stack(**QUICK_RETRY, **env)
    web = stack.web()
    stack.worker()
    return stack, web


def test_unit_tests_pass(js_harness: None) -> None:
    """The client's own tests (node:test): the SSE parser, the answer model, the UI feed."""
    out = node("unit.test.mjs")
    assert "# fail 0" in out, out


def test_the_module_is_at_most_12_kb_minified_and_gzipped(js_harness: None) -> None:
    sizes = json.loads(node("size.mjs"))
    print("relay-client sizes (bytes):", sizes)
    for entry, size in sizes.items():
        assert size["gzipped"] <= MAX_GZIPPED_BYTES, f"{entry} is {size['gzipped']} bytes gzipped"


def test_the_hand_written_types_compile_against_the_pinned_ai(js_harness: None) -> None:
    """index.d.ts and ai-sdk.d.ts, used as an app uses them (clients/js/test/types.ts)."""
    tsc = HARNESS / "node_modules" / "typescript" / "bin" / "tsc"
    result = subprocess.run(
        ["node", str(tsc), "-p", str(HARNESS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def follow_through(private_stack, model_server: ModelServer, prompt: str, make_proxy, **options):
    """A 200-chunk answer to `prompt`, followed by the client through the proxy that
    `make_proxy(web)` makes, checked against the stored answer: exactly once."""
    stack, web = running_stack(private_stack)
    chunks = words(CHUNKS)
    model_server.behave(prompt, chunks=chunks, delay_seconds=options.pop("delay_seconds", 0.02))
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
    proxy = make_proxy(web).start()
    try:
        result = Follower(proxy.base_url, sessionId=session_id, prompt=prompt, **options).result()
    finally:
        proxy.stop()
    message_id = result.message["id"]
    stored = stored_text(stack.app, message_id)
    assert stored == "".join(chunks)
    check_exactly_once(result, stream_of(web, session_id, message_id), stored)
    return result, proxy


@pytest.mark.parametrize("transport", ["fetch", "poll"])
def test_cuts_at_random_byte_offsets_leave_exactly_the_stored_answer(
    js_harness: None, private_stack, model_server: ModelServer, unique: str, transport: str
) -> None:
    result, proxy = follow_through(
        private_stack,
        model_server,
        f"cut me {transport} {unique}",
        lambda web: ByteCuttingProxy(web, seed=SEED, cuts=CUTS),
        # A long-poll takes a batch per request: a slower answer makes more
        # of them, and so more to cut.
        delay_seconds=0.02 if transport == "fetch" else 0.05,
        # No fallback: every event comes through the transport under test.
        transport=transport,
        fallback=False,
        postAttempts=8,
    )
    cut_streams = [line for line in proxy.cuts if "/events" in line or "/poll" in line]
    print(f"{transport}: {len(proxy.cuts)} cuts, {len(cut_streams)} of them in streams")
    assert len(cut_streams) >= 10
    assert result.stats["mode"] == ("poll" if transport == "poll" else "sse")


def test_behind_a_buffering_proxy_it_falls_back_to_long_poll(
    js_harness: None, private_stack, model_server: ModelServer, unique: str
) -> None:
    result, proxy = follow_through(
        private_stack, model_server, f"buffered {unique}", BufferingProxy
    )
    assert proxy.held_streams >= 1
    assert result.stats["fallbacks"] == 1 and result.stats["mode"] == "poll"
    assert result.stats["promotions"] == 0  # its SSE trials were held as well


def test_a_stream_gone_silent_is_left_after_two_heartbeats(
    js_harness: None, private_stack, model_server: ModelServer, unique: str
) -> None:
    result, _ = follow_through(
        private_stack,
        model_server,
        f"frozen {unique}",
        lambda web: FreezingProxy(web, after_bytes=1500, freeze=2),
        fallback=False,
        heartbeatSeconds=1,
    )
    assert result.stats["stalled"] == 2


def test_whole_answer_mode_shows_the_answer_only_once_it_is_finished(
    js_harness: None, web: str, worker, app, model_server: ModelServer, unique: str
) -> None:
    prompt = f"whole {unique}"
    model_server.behave(prompt, chunks=words(50), delay_seconds=0.01)
    result = Follower(web, prompt=prompt, whole=True).result()
    stored = stored_text(app, result.message["id"])
    assert result.message["content"] == stored == "".join(words(50))
    assert result.texts(result.message["id"]) == ["", stored]  # queued, then whole, never a part


def test_regenerate_replaces_the_last_answer(
    js_harness: None, web: str, worker, app, model_server: ModelServer, unique: str
) -> None:
    prompt = f"again {unique}"
    model_server.behave(prompt, chunks=words(20), delay_seconds=0.005)
    result = Follower(web, prompt=prompt, regenerate=True).result()
    old, new = result.report["replaced"], result.message["id"]
    assert new != old
    assert result.message["content"] == stored_text(app, new) == "".join(words(20))
    assert old not in result.report["messageIds"] and new in result.report["messageIds"]
    (row,) = answer_rows(app, old)
    assert row.status == "superseded"


def test_a_token_that_expires_mid_answer_is_refreshed_with_nothing_lost(
    js_harness: None, private_stack, model_server: ModelServer, unique: str
) -> None:
    stack, web = running_stack(private_stack, AUTH_JWT_SECRET=SECRET, AUTH_JWT_AUDIENCE=AUDIENCE)
    prompt = f"expiring {unique}"
    chunks = words(CHUNKS)
    model_server.behave(prompt, chunks=chunks, delay_seconds=0.06)
    # Tokens live 2 s (and relay's 5 s of leeway) and the answer about 12:
    # relay ends the stream when its token expires, and the client goes on
    # with a fresh one. The first token has expired already: its 401 asks
    # getToken() again.
    token = {"secret": SECRET, "audience": AUDIENCE, "ttlSeconds": 2, "firstExpired": True}
    result = Follower(web, prompt=prompt, token=token).result()
    session_id, message_id = result.report["sessionId"], result.message["id"]
    headers = {"Authorization": f"Bearer {mint(ttl=60)}"}
    stream = read_sse(web, session_id, until_message=message_id, headers=headers).events
    check_exactly_once(result, stream, stored_text(stack.app, message_id))
    calls = result.report["tokenCalls"]
    assert calls[0]["expired"] and calls[1]["fresh"], calls[:2]
    assert len(calls) >= 4 and result.stats["connections"] >= 2
    assert "unauthorized" not in result.report["states"]


def mint(ttl: float, sub: str = "alice") -> str:
    """A token as the team's backend signs one (PyJWT: no tie to the server's modules)."""
    now = int(time.time())
    claims = {"sub": sub, "aud": AUDIENCE, "iat": now, "exp": now + int(ttl)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_a_token_refused_twice_stops_the_session(
    js_harness: None, private_stack, model_server: ModelServer
) -> None:
    _, web = running_stack(private_stack, AUTH_JWT_SECRET=SECRET, AUTH_JWT_AUDIENCE=AUDIENCE)
    with httpx.Client(base_url=web, timeout=30) as http:
        http.headers["Authorization"] = f"Bearer {mint(ttl=60)}"
        session_id = create_session(http)
    token = {"secret": SECRET, "audience": AUDIENCE, "ttlSeconds": 60, "alwaysExpired": True}
    report = Follower(web, sessionId=session_id, token=token).result().report
    assert (report["error"]["status"], report["error"]["code"]) == (401, "unauthorized")
    assert report["state"] == "unauthorized"
    assert len(report["tokenCalls"]) == 2  # the token, then one fresh one: no retrying after


@pytest.mark.parametrize("transport", ["fetch", "poll"])
def test_a_killed_worker_gives_exactly_the_final_attempts_text(
    js_harness: None, private_stack, model_server: ModelServer, unique: str, transport: str
) -> None:
    stack = private_stack(**LEASE, **QUICK_RETRY)
    held = held_mid_way(stack, model_server, f"kill js {transport} {unique}")
    follower = Follower(
        held.web, sessionId=held.session_id, messageId=held.message_id, transport=transport
    )
    follower.wait_for_line("state", state="live" if transport == "fetch" else "polling")
    held.worker.kill()
    held.behavior.gate.set()
    stack.worker()
    result = follower.result()
    stored = stored_text(stack.app, held.message_id)
    assert stored == "".join(held.texts)
    check_exactly_once(result, stream_of(held.web, held.session_id, held.message_id), stored)
    attempts = [e["attempt"] for e in result.applied(held.message_id) if e["event"] == "start"]
    assert attempts == [2]
    assert result.message["attempt"] == 2
