"""Fenced stream writes, retention and resets, against the real redis-server and web server."""

from __future__ import annotations

import httpx
import pytest

from tests.support.client import create_session, read_sse
from tests.support.processes import wait_for
from webapp.storage import events, jobs, keys
from webapp.storage.extensions import redis_store
from webapp.write.writer import StreamWriter


@pytest.fixture()
def redis_client(app):
    return redis_store.client_for(app)


def writer_for(
    redis_client, session_id: str, message_id: str, attempt: int = 1, **kw
) -> StreamWriter:
    kw.setdefault("stream_ttl_seconds", 3600)
    kw.setdefault("maxlen", 10_000)
    return StreamWriter(redis_client, session_id, message_id, attempt, **kw)


def chunk(message_id: str, text: str) -> str:
    return events.dumps({"message_id": message_id, "text": text})


def write_answer(redis_client, session_id: str, message_id: str, n: int, **kw) -> list[str]:
    assert jobs.claim(redis_client, session_id, message_id).active is None
    writer = writer_for(redis_client, session_id, message_id, **kw)
    ids = [writer.append(events.START, events.dumps({"message_id": message_id})).entry_id]
    ids += [writer.append(events.CHUNK, chunk(message_id, f"{i} ")).entry_id for i in range(n)]
    ids.append(writer.finish(events.END, events.dumps({"message_id": message_id})).entry_id)
    return ids


def test_writes_are_fenced_by_message_and_attempt(redis_client, unique: str) -> None:
    session_id = f"fence{unique}"
    assert jobs.claim(redis_client, session_id, "msg-one1").active is None
    assert jobs.claim(redis_client, session_id, "msg-two2").active == "msg-one1"  # one at a time
    stale = writer_for(redis_client, session_id, "msg-one1", attempt=2)
    assert stale.append(events.CHUNK, chunk("msg-one1", "x")).fenced
    other = writer_for(redis_client, session_id, "msg-two2")
    assert other.append(events.CHUNK, chunk("msg-two2", "x")).fenced
    live = writer_for(redis_client, session_id, "msg-one1")
    assert not live.append(events.CHUNK, chunk("msg-one1", "x")).fenced
    assert not live.finish(events.END, "{}").fenced
    # Once finished, the session is released and the finished writer is fenced off.
    assert live.append(events.CHUNK, chunk("msg-one1", "late")).fenced
    assert redis_client.xlen(keys.stream(session_id)) == 2
    # The next claim finds its predecessor finished; a claim never finished is reported.
    assert jobs.claim(redis_client, session_id, "msg-thr3") == jobs.Claim(None, False)
    redis_client.delete(keys.active(session_id))  # as when the claim of a dead POST expires
    assert jobs.claim(redis_client, session_id, "msg-fou4") == jobs.Claim(None, True)


def test_cancel_request_reaches_the_writer(redis_client, unique: str) -> None:
    session_id = f"cancel{unique}"
    jobs.claim(redis_client, session_id, "msg-one1")
    writer = writer_for(redis_client, session_id, "msg-one1")
    assert not writer.append(events.START, "{}").cancel_requested
    assert not jobs.request_cancel(redis_client, session_id, "other-msg")
    assert jobs.request_cancel(redis_client, session_id, "msg-one1")
    assert writer.append(events.CHUNK, "{}").cancel_requested


def test_finish_trims_to_maxlen_and_old_cursors_reset(
    redis_client, client: httpx.Client, web: str, unique: str
) -> None:
    session_id = create_session(client)
    ids = write_answer(redis_client, session_id, f"trim{unique}", 10, maxlen=5)
    assert redis_client.xlen(keys.stream(session_id)) == 5
    floor = ids[-6]  # the newest entry trimmed away

    stale = client.get(f"/api/sessions/{session_id}/poll", params={"after": ids[0]}).json()
    assert stale == {"events": [], "cursor": floor, "reset": True}
    whole = client.get(f"/api/sessions/{session_id}/poll", params={"after": floor}).json()
    assert [e["id"] for e in whole["events"]] == ids[-5:] and not whole["reset"]
    # 0-0 means "from the start of what is retained"
    assert [
        e["id"] for e in client.get(f"/api/sessions/{session_id}/poll").json()["events"]
    ] == ids[-5:]

    sse = read_sse(web, session_id, max_events=6, headers={"Last-Event-ID": ids[1]})
    assert sse.events[0].event == "reset" and sse.events[0].id is None
    assert sse.events[0].data == {"reason": "cursor_expired"}
    assert [e.id for e in sse.events[1:]] == ids[-5:]


def test_expired_stream_resets_old_cursors_and_snapshot_keeps_the_cursor(
    redis_client, client: httpx.Client, unique: str
) -> None:
    session_id = create_session(client)
    ids = write_answer(redis_client, session_id, f"expire{unique}", 3, stream_ttl_seconds=1)
    wait_for(
        lambda: not redis_client.exists(keys.stream(session_id)),
        timeout=10,
        what="the stream to expire",
    )

    assert client.get(f"/api/sessions/{session_id}").json()["cursor"] == ids[-1]
    old = client.get(f"/api/sessions/{session_id}/poll", params={"after": ids[1]}).json()
    assert old == {"events": [], "cursor": ids[-1], "reset": True}
    current = client.get(
        f"/api/sessions/{session_id}/poll", params={"after": ids[-1], "timeout": 0}
    ).json()
    assert current == {"events": [], "cursor": ids[-1], "reset": False}

    # A new answer recreates the stream; the old cursor still resets, the latest does not.
    new_ids = write_answer(redis_client, session_id, f"again{unique}", 2)
    assert client.get(f"/api/sessions/{session_id}/poll", params={"after": ids[1]}).json()["reset"]
    resumed = client.get(f"/api/sessions/{session_id}/poll", params={"after": ids[-1]}).json()
    assert [e["id"] for e in resumed["events"]] == new_ids


def test_finished_stream_gets_its_ttl(redis_client, client: httpx.Client, unique: str) -> None:
    session_id = create_session(client)
    write_answer(redis_client, session_id, f"ttl{unique}", 1, stream_ttl_seconds=3600)
    assert 3590 < redis_client.ttl(keys.stream(session_id)) <= 3600
    assert redis_client.ttl(keys.meta(session_id)) > 3600
