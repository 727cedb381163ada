"""sessions.py: a caller's list, delete, regenerate; on the real Redis, SQL, worker and model."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import func, select, update

from tests.support.client import create_session, poll_until, post_prompt, read_sse
from tests.support.model_server import Behavior, ModelServer
from tests.support.processes import Process, wait_for
from webapp.exceptions import ApiError
from webapp.http import prompts, sessions
from webapp.storage import keys, models, session_list
from webapp.storage.extensions import db, redis_store
from webapp.storage.models import ChatSession, Message


def redis(app: Flask) -> Any:
    return redis_store.client_for(app)


def keys_of(app: Flask, session_id: str) -> list[str]:
    """Every Redis key whose name holds the session id, found with SCAN."""
    return sorted(redis(app).scan_iter(match=f"*{session_id}*", count=1000))


def stored_session(app: Flask, owner: str | None, prompts: list[str]) -> tuple[str, list[str]]:
    """A session with finished exchanges written straight to SQL: (id, answer ids)."""
    with app.app_context():
        session_id = sessions.create(owner)
        answers = []
        for prompt in prompts:
            answers.append(models.new_message_id())
            models.add_prompt(session_id, prompt, answers[-1])
            db.session.execute(
                update(Message)
                .where(Message.id == answers[-1])
                .values(status=models.DONE, content=f"answer to {prompt}")
            )
        db.session.commit()
        return session_id, answers


def regenerate(app: Flask, session_id: str, message_id: str) -> str:
    """POST .../regenerate's call, from an address of the session's own (RATE_LIMIT counts per address)."""
    environ = {"REMOTE_ADDR": f"regenerate-{session_id}"}
    with app.test_request_context(environ_base=environ):
        return prompts.submit(session_id, prompts.Regenerate(message_id)).message_id


def api_error(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


# -- list ------------------------------------------------------------------------


def test_list_pages_through_the_owners_sessions_newest_first(app: Flask, unique: str) -> None:
    owner, other = f"list-{unique}", f"other-{unique}"
    start = datetime(2026, 3, 1, 12, 0, 0)
    with app.app_context():
        # Seven sessions, two pairs of them made in the same microsecond.
        moments = [start + timedelta(seconds=s) for s in (0, 1, 1, 2, 3, 3, 4)]
        mine = [f"{unique}-mine-{i}" for i in range(len(moments))]
        for session_id, moment in zip(mine, moments, strict=True):
            db.session.add(ChatSession(id=session_id, owner=owner, created_at=moment))
        db.session.add(ChatSession(id=f"{unique}-theirs", owner=other, created_at=start))
        db.session.add(ChatSession(id=f"{unique}-nobodys", owner=None, created_at=start))
        db.session.commit()

        seen, cursor, pages = [], None, 0
        while True:
            page = session_list.list_sessions(owner, cursor, limit=3)
            seen += [entry["session_id"] for entry in page.sessions]
            pages += 1
            assert len(page.sessions) == (3 if page.next else 1)
            if page.next is None:
                break
            cursor = page.next
        expected = [s for _, s in sorted(zip(moments, mine, strict=True), reverse=True)]
        assert seen == expected and pages == 3

        entry = session_list.list_sessions(owner, None).to_json()["sessions"][0]
        assert entry == {
            "session_id": mine[-1],
            "title": "",
            "created_at": "2026-03-01T12:00:04Z",
            "updated_at": "2026-03-01T12:00:04Z",
        }


def test_a_full_page_is_fifty(app: Flask, unique: str) -> None:
    owner = f"fifty-{unique}"
    with app.app_context():
        db.session.add_all(
            ChatSession(id=f"{unique}-{i:03d}", owner=owner)
            for i in range(session_list.PAGE_SIZE + 2)
        )
        db.session.commit()
        first = session_list.list_sessions(owner, None)
        assert len(first.sessions) == 50 and first.next is not None
        rest = session_list.list_sessions(owner, first.next)
        assert len(rest.sessions) == 2 and rest.next is None
        assert not {e["session_id"] for e in first.sessions} & {
            e["session_id"] for e in rest.sessions
        }


def test_a_title_is_the_first_prompts_first_80_characters(app: Flask, unique: str) -> None:
    owner = f"title-{unique}"
    first = "é" * 70 + "0123456789abcdef"  # 86 characters, 156 bytes in UTF-8
    session_id, _ = stored_session(app, owner, [first, "a later prompt"])
    with app.app_context():
        (entry,) = session_list.list_sessions(owner, None).sessions
        assert entry["title"] == first[:80]
        newest = db.session.scalar(
            select(func.max(Message.created_at)).where(Message.session_id == session_id)
        )
        assert entry["updated_at"] == models.isoformat(newest)
        assert entry["updated_at"] >= entry["created_at"]


@pytest.mark.parametrize("cursor", ["!!!", "bm90IGEgY3Vyc29y", "MjAyNi0wMS0wMQ"])
def test_a_cursor_that_is_not_a_next_is_refused(app: Flask, cursor: str) -> None:
    with app.app_context():
        error = api_error(lambda: session_list.list_sessions("anyone", cursor))
    assert (error.status, error.code) == (400, "invalid_cursor")


# -- delete ------------------------------------------------------------------------


def test_delete_removes_the_sessions_keys_and_rows_and_tells_every_process(
    app: Flask,
    client: httpx.Client,
    web: str,
    worker: Process,
    model_server: ModelServer,
    unique: str,
) -> None:
    prompt = f"delete me {unique}"
    session_id = create_session(client)
    posted = client.post(
        f"/api/sessions/{session_id}/messages",
        json={"content": prompt},
        headers={"Idempotency-Key": f"key-{unique}"},
    )
    assert posted.status_code == 202
    read_sse(web, session_id, until_message=posted.json()["message_id"])
    found = keys_of(app, session_id)
    assert keys.stream(session_id) in found and keys.meta(session_id) in found
    assert any(":idem:" in key for key in found), found

    notices = redis(app).pubsub()
    notices.subscribe(keys.EVENTS_CHANNEL)
    try:
        wait_for(lambda: notices.get_message(timeout=0.1), what="the subscription")
        with app.app_context():
            sessions.delete_session(app, session_id)
        heard = wait_for(
            lambda: notices.get_message(timeout=0.1), what="the deleted notice", timeout=5
        )
    finally:
        notices.close()
    assert heard["data"] == keys.deleted_notice(session_id)
    assert keys_of(app, session_id) == []
    with app.app_context():
        assert db.session.get(ChatSession, session_id) is None
        count = select(func.count()).select_from(Message).where(Message.session_id == session_id)
        assert db.session.scalar(count) == 0
    assert client.get(f"/api/sessions/{session_id}").status_code == 404


def test_delete_stops_a_running_generation_which_recreates_no_key(
    app: Flask,
    client: httpx.Client,
    web: str,
    worker: Process,
    model_server: ModelServer,
    unique: str,
) -> None:
    prompt = f"delete while streaming {unique}"
    behavior = model_server.behave(prompt, chunks=["one ", "two ", "three ", "four"], gate_after=1)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]
    try:
        first = read_sse(web, session_id, max_events=2)  # start, then the first chunk
        assert [e.event for e in first.events] == ["start", "chunk"]
        with app.app_context():
            sessions.delete_session(app, session_id)
    finally:
        behavior.gate.set()
    wait_for(
        lambda: (
            f"fenced off mid-answer session={session_id} message={message_id}" in worker.log_text()
        ),
        timeout=15,
        what="the generation to stop at its next write",
    )
    assert len(model_server.calls_for(prompt)) == 1
    assert keys_of(app, session_id) == []


# -- regenerate -----------------------------------------------------------------------


def wait_final(client: httpx.Client, session_id: str, message_id: str) -> None:
    poll_until(client, session_id, message_id, timeout=30)


def test_regenerate_asks_the_model_again_with_the_same_history(
    app: Flask,
    client: httpx.Client,
    worker: Process,
    model_server: ModelServer,
    unique: str,
) -> None:
    first, second = f"regenerate first {unique}", f"regenerate second {unique}"
    model_server.behave(first, chunks=["the ", "first ", "answer"])
    model_server.behave(second, chunks=["the ", "next ", "answer"])
    session_id = create_session(client)
    answer = post_prompt(client, session_id, first)["message_id"]
    wait_final(client, session_id, answer)

    with app.app_context():
        again = regenerate(app, session_id, answer)
    assert again != answer
    wait_final(client, session_id, again)

    calls = model_server.calls_for(first)
    assert len(calls) == 2
    assert calls[1].body["messages"] == calls[0].body["messages"]

    snapshot = client.get(f"/api/sessions/{session_id}").json()
    assert [
        (m["role"], m["id"] if m["role"] == "assistant" else None) for m in snapshot["messages"]
    ] == [
        ("user", None),
        ("assistant", again),
    ]
    assert snapshot["messages"][1]["status"] == "done"
    with app.app_context():
        assert models.find_message(session_id, answer).status == models.SUPERSEDED
        assert [t.id for t in models.turns(session_id)][1:] == [again]

    # The next prompt's history holds the one answer that stands.
    following = post_prompt(client, session_id, second)["message_id"]
    wait_final(client, session_id, following)
    (call,) = model_server.calls_for(second)
    assert [m["role"] for m in call.body["messages"]] == ["system", "user", "assistant", "user"]


def test_regenerate_while_an_answer_runs_is_generation_active(
    app: Flask,
    client: httpx.Client,
    worker: Process,
    model_server: ModelServer,
    unique: str,
) -> None:
    done_prompt, running_prompt = f"finished {unique}", f"running {unique}"
    behavior: Behavior = model_server.behave(running_prompt, chunks=["a ", "b"], gate_after=1)
    session_id = create_session(client)
    finished = post_prompt(client, session_id, done_prompt)["message_id"]
    wait_final(client, session_id, finished)
    running = post_prompt(client, session_id, running_prompt)["message_id"]
    try:
        with app.app_context():
            for target in (running, finished):
                error = api_error(lambda t=target: regenerate(app, session_id, t))
                assert (error.status, error.code) == (409, "generation_active")
                assert error.extra == {"message_id": running}
    finally:
        behavior.gate.set()
    wait_final(client, session_id, running)
    with app.app_context():
        assert models.find_message(session_id, running).status == models.DONE


def test_only_the_last_final_answer_can_be_regenerated(
    app: Flask, worker: Process, client: httpx.Client, unique: str
) -> None:
    session_id, (older, last) = stored_session(app, None, [f"one {unique}", f"two {unique}"])
    with app.app_context():
        user_id = models.turns(session_id)[0].id
        for target, expected in [
            (older, (409, "not_regenerable")),
            (user_id, (409, "not_regenerable")),
            ("no-such-message", (404, "message_not_found")),
        ]:
            error = api_error(lambda t=target: regenerate(app, session_id, t))
            assert (error.status, error.code) == expected, target
        # A refusal releases the session: nothing is active, nothing was superseded.
        assert redis(app).exists(keys.active(session_id)) == 0
        assert models.find_message(session_id, older).status == models.DONE

        again = regenerate(app, session_id, last)
        error = api_error(lambda: regenerate(app, session_id, last))
        assert (error.status, error.code) == (409, "generation_active")
    wait_final(client, session_id, again)
    with app.app_context():
        # Once superseded, an answer is no longer the last one.
        error = api_error(lambda: regenerate(app, session_id, last))
        assert (error.status, error.code) == (409, "not_regenerable")
        snapshot_ids = [
            m["id"] for m in client.get(f"/api/sessions/{session_id}").json()["messages"]
        ]
        assert last not in snapshot_ids and again in snapshot_ids


def test_an_unfinished_orphan_can_be_regenerated(
    app: Flask, worker: Process, client: httpx.Client, unique: str
) -> None:
    """An answer whose job was lost shows failed in the snapshot: it may be asked again."""
    session_id, (answer,) = stored_session(app, None, [f"orphaned {unique}"])
    with app.app_context():
        db.session.execute(update(Message).where(Message.id == answer).values(status=models.QUEUED))
        db.session.commit()
    snapshot = client.get(f"/api/sessions/{session_id}").json()
    assert snapshot["messages"][1]["status"] == "error"
    with app.app_context():
        again = regenerate(app, session_id, answer)
    wait_final(client, session_id, again)
    body = json.loads(client.get(f"/api/sessions/{session_id}").text)
    assert [m["id"] for m in body["messages"]][1:] == [again]
