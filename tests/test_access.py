"""Access control over real HTTP (API.md, Access control): owners, scopes, expiry, list,
delete and regenerate, RS256, the page with a token, and no token in any log line.

Every process here runs with tokens; the last test greps their logs for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from sqlalchemy import func, select

from tests.support.browser import ChatPage, chromium
from tests.support.client import Event, answer_text, polls_waiting, read_sse
from tests.support.model_server import ModelServer
from tests.support.processes import Process, start_web, wait_for
from webapp.storage.extensions import db, redis_store
from webapp.storage.models import ChatSession, Message

SECRET = "a-test-secret-for-access-control-over-http"
AUDIENCE = "relay-test"
# Every token this module makes: none may reach a log line (see the last test).
MINTED: list[str] = []
WEB_NAMES = ("web-access", "web-access-rs256")


def token(
    sub: str = "alice", *, ttl: float = 300, key: Any = SECRET, alg: str = "HS256", **extra: Any
) -> str:
    now = time.time()
    claims = {"sub": sub, "iat": int(now), "exp": int(now + ttl), "aud": AUDIENCE, **extra}
    minted = jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=alg)
    MINTED.append(minted)
    return minted


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def access_web(base_env: dict[str, str], app: Flask, log_dir: Path) -> Iterator[str]:
    env = dict(base_env, AUTH_JWT_SECRET=SECRET, AUTH_JWT_AUDIENCE=AUDIENCE)
    proc, base_url = start_web(env, log_dir, name=WEB_NAMES[0])
    yield base_url
    proc.stop()


@pytest.fixture()
def http(access_web: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=access_web, timeout=30) as client:
        yield client


def create(http: httpx.Client, as_token: str) -> str:
    response = http.post("/api/sessions", headers=bearer(as_token))
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


def post(http: httpx.Client, session_id: str, content: str, as_token: str) -> str:
    response = http.post(
        f"/api/sessions/{session_id}/messages", json={"content": content}, headers=bearer(as_token)
    )
    assert response.status_code == 202, response.text
    return response.json()["message_id"]


def wait_final(http: httpx.Client, session_id: str, message_id: str, as_token: str) -> dict:
    message = http.get(
        f"/api/sessions/{session_id}/messages/{message_id}",
        params={"wait": 25},
        headers=bearer(as_token),
    ).json()
    assert message["status"] not in ("queued", "streaming"), message
    return message


def error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()["error"]["code"]


# -- refusals ---------------------------------------------------------------------


def test_missing_and_bad_tokens_get_401_with_a_challenge(http: httpx.Client) -> None:
    other_key = "another-secret-that-is-long-enough-for-hs256"
    unsigned = jwt.encode({"sub": "alice", "exp": time.time() + 60, "aud": AUDIENCE}, None, "none")
    cases = {
        "none": None,
        "expired": token(ttl=-60),
        "wrong signature": token(key=other_key),
        "wrong aud": token(aud="relay-elsewhere"),
        "no aud": token(aud=None),
        "alg none": unsigned,
    }
    session_id = create(http, token())
    for name, value in cases.items():
        headers = bearer(value) if value else {}
        for method, path in [
            ("POST", "/api/sessions"),
            ("GET", "/api/sessions"),
            ("GET", f"/api/sessions/{session_id}"),
            ("GET", f"/api/sessions/{session_id}/events"),
        ]:
            response = http.request(method, path, headers=headers)
            assert response.status_code == 401, (name, path)
            assert error_code(response) == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), name


# -- owners and scopes ------------------------------------------------------------


def every_session_endpoint(session_id: str, message_id: str) -> list[tuple[str, str, Any]]:
    base = f"/api/sessions/{session_id}"
    return [
        ("GET", base, None),
        ("POST", f"{base}/messages", {"content": "not yours"}),
        ("GET", f"{base}/events", None),
        ("GET", f"{base}/poll?timeout=0", None),
        ("GET", f"{base}/messages/{message_id}", None),
        ("POST", f"{base}/messages/{message_id}/cancel", None),
        ("POST", f"{base}/messages/{message_id}/regenerate", None),
        ("DELETE", base, None),
    ]


def test_another_users_session_is_not_found_on_every_endpoint(
    http: httpx.Client, worker: Process, unique: str
) -> None:
    alice = token("alice")
    session_id = create(http, alice)
    message_id = post(http, session_id, f"mine {unique}", alice)
    wait_final(http, session_id, message_id, alice)
    # A follower in this process: the owner check must hold on the hub's fast path too.
    with httpx.stream(
        "GET", f"{http.base_url}/api/sessions/{session_id}/events", headers=bearer(alice)
    ) as stream:
        assert stream.status_code == 200
        other_session = create(http, alice)
        strangers = {
            "bob": token("bob"),
            "alice for another session": token("alice", sid=other_session),
        }
        for who, stranger in strangers.items():
            for method, path, body in every_session_endpoint(session_id, message_id):
                response = http.request(method, path, json=body, headers=bearer(stranger))
                assert (response.status_code, error_code(response)) == (
                    404,
                    "session_not_found",
                ), (who, method, path)
    # The session is untouched, and its owner still reaches it.
    snapshot = http.get(f"/api/sessions/{session_id}", headers=bearer(alice)).json()
    assert [m["id"] for m in snapshot["messages"]][1:] == [message_id]


def test_a_session_scoped_token_works_on_its_session_only(
    http: httpx.Client, worker: Process, unique: str
) -> None:
    session_id = create(http, token("carol"))
    scoped = token("carol", sid=session_id)
    message_id = post(http, session_id, f"scoped {unique}", scoped)
    assert wait_final(http, session_id, message_id, scoped)["status"] == "done"
    for method in ("POST", "GET"):
        response = http.request(method, "/api/sessions", headers=bearer(scoped))
        assert (response.status_code, error_code(response)) == (403, "forbidden")


# -- list ----------------------------------------------------------------------------


def test_the_list_holds_the_callers_sessions_newest_first_by_pages(
    http: httpx.Client, unique: str
) -> None:
    owner, other = token(f"lister-{unique}"), token(f"other-{unique}")
    made = [create(http, owner) for _ in range(52)]
    create(http, other)
    first = http.get("/api/sessions", headers=bearer(owner)).json()
    assert len(first["sessions"]) == 50 and first["next"]
    second = http.get(
        "/api/sessions", params={"before": first["next"]}, headers=bearer(owner)
    ).json()
    assert second["next"] is None
    listed = [s["session_id"] for s in first["sessions"] + second["sessions"]]
    assert sorted(listed) == sorted(made)  # all of them, once, and no one else's
    assert listed[0] == made[-1] and listed[-1] == made[0]
    assert {s["title"] for s in first["sessions"]} == {""}
    bad = http.get("/api/sessions", params={"before": "nonsense!"}, headers=bearer(owner))
    assert (bad.status_code, error_code(bad)) == (400, "invalid_cursor")


def test_without_access_control_there_is_no_list(client: httpx.Client) -> None:
    response = client.get("/api/sessions")
    assert (response.status_code, error_code(response)) == (404, "not_found")


# -- delete --------------------------------------------------------------------------


def test_delete_ends_readers_stops_the_generation_and_leaves_nothing(
    http: httpx.Client,
    access_web: str,
    app: Flask,
    worker: Process,
    model_server: ModelServer,
    log_dir: Path,
    unique: str,
) -> None:
    owner = token("dora")
    prompt = f"delete while it streams {unique}"
    behavior = model_server.behave(prompt, chunks=["one ", "two ", "three"], gate_after=1)
    session_id = create(http, owner)
    message_id = post(http, session_id, prompt, owner)
    first = read_sse(access_web, session_id, max_events=2, params={"access_token": owner})
    last_id = first.events[-1].id
    results: dict[str, Any] = {}

    def read_rest() -> None:
        results["sse"] = read_sse(
            access_web, session_id, headers={**bearer(owner), "Last-Event-ID": last_id}
        )

    def wait_poll() -> None:
        with httpx.Client(base_url=access_web, timeout=40) as poller:
            results["poll"] = poller.get(
                f"/api/sessions/{session_id}/poll",
                params={"after": last_id, "timeout": 25},
                headers=bearer(owner),
            )

    readers = [threading.Thread(target=read_rest), threading.Thread(target=wait_poll)]
    # The module's other polls were answered before their tests ended: any poll
    # counted now on top of these is this test's.
    waiting_before = polls_waiting(access_web)
    try:
        for reader in readers:
            reader.start()
        # Both readers must be in before the delete: a poll that arrives after
        # it is rightly answered 404, and the test would fail on a busy machine.
        wait_for(
            lambda: f"sse open session={session_id} cursor={last_id}" in web_log(log_dir),
            what="the SSE reader to be following",
        )
        wait_for(
            lambda: polls_waiting(access_web) > waiting_before,
            what="the poll to be waiting",
        )
        deleted = http.delete(f"/api/sessions/{session_id}", headers=bearer(owner))
        assert deleted.status_code == 204
        for reader in readers:
            reader.join(15)  # well inside the poll's 25 s: the delete woke them
        assert not any(reader.is_alive() for reader in readers)
        assert results["sse"].events == []  # the stream ended, with nothing more
        assert results["poll"].status_code == 200 and results["poll"].json()["events"] == []
        # The model never sends its next piece, yet the generation stops.
        wait_for(
            lambda: any(
                "fenced off" in line and f"message={message_id}" in line
                for line in worker.log_text().splitlines()
            ),
            timeout=15,
            what="the generation to stop",
        )
    finally:
        behavior.gate.set()
    assert sorted(redis_store.client_for(app).scan_iter(match=f"*{session_id}*")) == []
    with app.app_context():
        assert db.session.get(ChatSession, session_id) is None
        count = select(func.count()).select_from(Message).where(Message.session_id == session_id)
        assert db.session.scalar(count) == 0
        db.session.remove()
    gone = http.get(f"/api/sessions/{session_id}", headers=bearer(owner))
    assert (gone.status_code, error_code(gone)) == (404, "session_not_found")


def web_log(log_dir: Path) -> str:
    path = log_dir / f"{WEB_NAMES[0]}.log"
    return path.read_text(errors="replace") if path.exists() else ""


# -- regenerate -------------------------------------------------------------------------


def test_regenerate_over_http(
    http: httpx.Client, worker: Process, model_server: ModelServer, unique: str
) -> None:
    owner = token("rita")
    first, running = f"regenerate me {unique}", f"still running {unique}"
    model_server.behave(first, chunks=["an ", "answer"])
    session_id = create(http, owner)
    answer = post(http, session_id, first, owner)
    wait_final(http, session_id, answer, owner)

    response = http.post(
        f"/api/sessions/{session_id}/messages/{answer}/regenerate", headers=bearer(owner)
    )
    assert response.status_code == 202, response.text
    body = response.json()
    again = body["message_id"]
    assert body["status"] == "queued" and body["session_id"] == session_id and again != answer
    assert body["events_url"].endswith(f"/api/sessions/{session_id}/events")
    assert response.headers["Location"].endswith(f"/messages/{again}")
    assert wait_final(http, session_id, again, owner)["status"] == "done"

    calls = model_server.calls_for(first)
    assert len(calls) == 2 and calls[1].body["messages"] == calls[0].body["messages"]
    snapshot = http.get(f"/api/sessions/{session_id}", headers=bearer(owner)).json()
    assert [m["id"] for m in snapshot["messages"]][1:] == [again]

    stale = http.post(
        f"/api/sessions/{session_id}/messages/{answer}/regenerate", headers=bearer(owner)
    )
    assert (stale.status_code, error_code(stale)) == (409, "not_regenerable")

    behavior = model_server.behave(running, chunks=["a ", "b"], gate_after=1)
    active = post(http, session_id, running, owner)
    try:
        busy = http.post(
            f"/api/sessions/{session_id}/messages/{active}/regenerate", headers=bearer(owner)
        )
        assert (busy.status_code, error_code(busy)) == (409, "generation_active")
    finally:
        behavior.gate.set()
    wait_final(http, session_id, active, owner)
    (call,) = model_server.calls_for(running)
    assert [m["role"] for m in call.body["messages"]] == ["system", "user", "assistant", "user"]
    assert call.body["messages"][2]["content"] == "an answer"


# -- a token that expires mid-answer -------------------------------------------------------


def test_a_stream_ends_with_its_token_and_resumes_with_a_fresh_one_exactly_once(
    http: httpx.Client, access_web: str, worker: Process, model_server: ModelServer, unique: str
) -> None:
    owner = token("eve")
    prompt = f"outlive the token {unique}"
    chunks = ["before ", "the ", "token ", "ran ", "out"]
    behavior = model_server.behave(prompt, chunks=chunks, gate_after=2)
    session_id = create(http, owner)
    message_id = post(http, session_id, prompt, owner)
    short = token("eve", ttl=1)  # good for the leeway too: about 6 s in all
    try:
        before = read_sse(access_web, session_id, params={"access_token": short}, timeout=30)
    finally:
        behavior.gate.set()
    # The stream ended by itself (no final event yet: the model waited on the gate).
    assert [e.event for e in before.events] == ["start", "chunk", "chunk"]
    expired = http.get(f"/api/sessions/{session_id}/events", params={"access_token": short})
    assert expired.status_code == 401
    after = read_sse(
        access_web,
        session_id,
        until_message=message_id,
        params={"access_token": token("eve")},
        headers={"Last-Event-ID": before.events[-1].id},
    )
    events: list[Event] = before.events + after.events
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))
    assert answer_text(events, message_id) == "".join(chunks)
    assert [e.event for e in events].count("end") == 1


def test_a_poll_and_a_wait_answer_when_their_token_runs_out(
    access_web: str, worker: Process, model_server: ModelServer, unique: str
) -> None:
    prompt = f"wait past the token {unique}"
    behavior = model_server.behave(prompt, chunks=["a ", "b"], gate_after=1)
    with httpx.Client(base_url=access_web, timeout=40) as http:
        owner = token("walt")
        session_id = create(http, owner)
        message_id = post(http, session_id, prompt, owner)
        try:
            cursor = read_sse(access_web, session_id, max_events=2, headers=bearer(owner))
            started = time.monotonic()
            polled = http.get(
                f"/api/sessions/{session_id}/poll",
                params={"after": cursor.events[-1].id, "timeout": 25},
                headers=bearer(token("walt", ttl=1)),  # about 6 s with the leeway
            )
            poll_seconds, started = time.monotonic() - started, time.monotonic()
            waited = http.get(
                f"/api/sessions/{session_id}/messages/{message_id}",
                params={"wait": 25},
                headers=bearer(token("walt", ttl=1)),
            )
            # Each answered with what it had, long before the 25 s it asked for.
            assert max(poll_seconds, time.monotonic() - started) < 20
        finally:
            behavior.gate.set()
    assert polled.status_code == 200 and polled.json()["events"] == []
    assert waited.status_code == 200 and waited.json()["status"] == "streaming"


# -- RS256 ---------------------------------------------------------------------------------


def test_rs256_with_a_public_key_end_to_end(
    base_env: dict[str, str], app: Flask, log_dir: Path, worker: Process, unique: str
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    env = dict(base_env, AUTH_JWT_PUBLIC_KEY=public.decode(), AUTH_JWT_AUDIENCE=AUDIENCE)
    proc, base_url = start_web(env, log_dir, name=WEB_NAMES[1])
    try:
        signed = token("rsa-user", key=private, alg="RS256")
        with httpx.Client(base_url=base_url, timeout=30) as rs:
            refused = rs.post("/api/sessions", headers=bearer(token("rsa-user")))  # HS256
            assert refused.status_code == 401
            session_id = create(rs, signed)
            message_id = post(rs, session_id, f"signed with RSA {unique}", signed)
            raw = read_sse(
                base_url, session_id, until_message=message_id, params={"access_token": signed}
            )
            assert raw.events[-1].event == "end"
            listed = rs.get("/api/sessions", headers=bearer(signed)).json()["sessions"]
            assert [s["session_id"] for s in listed] == [session_id]
            assert listed[0]["title"] == f"signed with RSA {unique}"
    finally:
        proc.stop()


# -- the page -------------------------------------------------------------------------------


def test_the_page_streams_with_a_token_from_its_fragment(
    access_web: str, worker: Process, model_server: ModelServer, unique: str
) -> None:
    prompt = f"page with a token {unique}"
    model_server.behave(prompt, chunks=["see ", "[elsewhere](http://elsewhere.example/x) ", "ok"])
    page_token = token("paula")
    referers: list[str | None] = []
    with chromium() as browser:
        context = browser.new_context()

        def elsewhere(route: Any) -> None:
            referers.append(route.request.headers.get("referer"))
            route.fulfill(status=200, body="elsewhere", content_type="text/plain")

        context.route("http://elsewhere.example/**", elsewhere)
        chat = ChatPage(context)
        response = chat.page.goto(f"{access_web}/#access_token={page_token}")
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        chat.wait_for("new URLSearchParams(location.search).get('session')")
        chat.wait_connection("live")
        assert chat.page.evaluate("location.hash") == ""
        assert page_token not in chat.page.url

        answer_id = chat.send(prompt)
        chat.wait_status(answer_id, "done")
        assert chat.answer_text(answer_id).startswith("see elsewhere")
        link = chat.answer(answer_id).locator(".body a")
        assert set(link.get_attribute("rel").split()) >= {"noopener", "noreferrer"}
        with context.expect_page() as opened:
            link.click()
        opened.value.wait_for_load_state()
        assert referers == [None]

        # Regenerate: the last answer again, as a new answer.
        chat.page.locator("button.regenerate").click()
        chat.wait_for(
            "[...document.querySelectorAll('li.message.assistant')].length === 1 && "
            "document.querySelector('li.message.assistant').dataset.messageId !== arg",
            answer_id,
        )
        again = chat.answer_ids()[-1]
        chat.wait_status(again, "done")
        chat.check_no_errors()
        context.close()


def test_a_refused_token_tells_the_user_what_to_do(access_web: str) -> None:
    with chromium() as browser:
        context = browser.new_context()
        chat = ChatPage(context)
        chat.page.goto(f"{access_web}/#access_token={token('late', ttl=-60)}")
        assert "Open the chat from your app again" in chat.notice()
        context.close()


# -- logs --------------------------------------------------------------------------------------


def test_no_token_reached_a_log_line(log_dir: Path) -> None:
    logs = [log_dir / f"{name}.log" for name in WEB_NAMES] + [log_dir / "worker.log"]
    text = "\n".join(path.read_text(errors="replace") for path in logs if path.exists())
    assert "access_token=[redacted]" in text  # the access log saw them, redacted
    leaked = [t for t in MINTED if t in text or t.split(".")[2] in text]
    assert leaked == []
