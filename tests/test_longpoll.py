"""Parked long-polls (webapp/serving/parked_polls.py), over real HTTP to gunicorn with relay's worker.

A poll with nothing after its cursor is parked with the hub: these tests
check what the client sees then, on raw sockets so that the bytes on the
wire (Content-Length, keep-alive) are what is checked: the answer when an
entry arrives, the empty answer at the timeout, one body shared by every
poller at the same cursor, a prompt POST served while 500 polls wait, and
the head of a parked answer, the same as gunicorn's for an answer at once.
That both ways in (Flask's view, the fast path) give the same bytes is
tests/test_poll_parity.py's.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.client import polls_waiting as parked
from tests.support.processes import start_web, wait_for
from tests.support.raw_http import read_framed
from webapp.storage import events, jobs
from webapp.storage.extensions import redis_store
from webapp.write.writer import StreamWriter

PARKED = 500
ORIGIN = "https://chat.example"


@pytest.fixture(scope="module")
def poll_web(base_env: dict[str, str], log_dir) -> Iterator[str]:
    env = dict(
        base_env,
        MAX_STREAMS_PER_CLIENT=str(PARKED + 100),
        LOG_LEVEL="WARNING",
        CORS_ORIGINS=ORIGIN,
    )
    proc, base_url = start_web(env, log_dir, name="web-longpoll")
    yield base_url
    proc.stop()


def new_session(base_url: str) -> str:
    return httpx.post(f"{base_url}/api/sessions", timeout=10).json()["session_id"]


WRITERS: dict[str, StreamWriter] = {}


def write_chunk(app, session_id: str, text: str, message_id: str = "the-answer") -> str:
    """Append one chunk as a worker would (one writer per session: it numbers its writes)."""
    writer = WRITERS.get(session_id)
    if writer is None:
        client = redis_store.client_for(app)
        jobs.claim(client, session_id, message_id)
        writer = WRITERS[session_id] = StreamWriter(
            client, session_id, message_id, 1, stream_ttl_seconds=3600, maxlen=10_000
        )
    return writer.append(events.CHUNK, events.chunk_data(message_id, text)).entry_id


def connect(base_url: str) -> socket.socket:
    address = urlsplit(base_url)
    return socket.create_connection((address.hostname, address.port), timeout=30)


def send_poll(sock: socket.socket, session_id: str, after: str, timeout: float = 20) -> None:
    path = f"/api/sessions/{session_id}/poll?after={after}&timeout={timeout}"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response framed by Content-Length: (status, headers, body)."""
    head, body = read_framed(sock)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_a_parked_poll_answers_when_an_entry_arrives(app, poll_web: str) -> None:
    session_id = new_session(poll_web)
    first = write_chunk(app, session_id, "before")
    with connect(poll_web) as sock:
        send_poll(sock, session_id, first)
        wait_for(lambda: parked(poll_web) >= 1, what="the poll to park")
        entry_id = write_chunk(app, session_id, "Hello")
        status, headers, body = read_response(sock)
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        assert headers["connection"] == "keep-alive"
        answer = json.loads(body)
        assert answer["cursor"] == entry_id and answer["reset"] is False
        assert answer["events"] == [
            {
                "id": entry_id,
                "event": "chunk",
                "data": {"message_id": "the-answer", "text": "Hello", "step": 0},
            }
        ]
        # The connection was handed back to gunicorn: the next poll is served on it.
        send_poll(sock, session_id, first)
        status, _, body = read_response(sock)
        assert status == 200 and json.loads(body)["cursor"] == entry_id


def test_a_parked_poll_answers_empty_at_its_timeout(app, poll_web: str) -> None:
    session_id = new_session(poll_web)
    first = write_chunk(app, session_id, "before")
    with connect(poll_web) as sock:
        started = time.monotonic()
        send_poll(sock, session_id, first, timeout=1)
        status, headers, body = read_response(sock)
        assert time.monotonic() - started >= 0.9, "answered before its timeout"
        assert status == 200 and headers["connection"] == "keep-alive"
        assert json.loads(body) == {"events": [], "cursor": first, "reset": False}


def test_pollers_at_one_cursor_get_the_same_bytes(app, poll_web: str) -> None:
    session_id = new_session(poll_web)
    first = write_chunk(app, session_id, "before")
    socks = [connect(poll_web) for _ in range(20)]
    try:
        waiting = parked(poll_web)
        for sock in socks:
            send_poll(sock, session_id, first)
        wait_for(lambda: parked(poll_web) >= waiting + 20, what="every poll to park")
        write_chunk(app, session_id, "for all of you")
        bodies = {read_response(sock)[2] for sock in socks}
        assert len(bodies) == 1
        assert json.loads(bodies.pop())["events"][0]["data"]["text"] == "for all of you"
    finally:
        for sock in socks:
            sock.close()


def test_a_post_is_served_while_hundreds_of_polls_are_parked(app, poll_web: str) -> None:
    sessions = [new_session(poll_web) for _ in range(10)]
    cursors = {sid: write_chunk(app, sid, "before") for sid in sessions}
    socks = []
    try:
        waiting = parked(poll_web)
        for i in range(PARKED):
            sock = connect(poll_web)
            socks.append(sock)
            sid = sessions[i % len(sessions)]
            send_poll(sock, sid, cursors[sid])
        wait_for(lambda: parked(poll_web) >= waiting + PARKED, timeout=30, what="polls to park")
        answer = httpx.post(
            f"{poll_web}/api/sessions/{new_session(poll_web)}/messages",
            json={"content": "still served"},
            timeout=10,
        )
        assert answer.status_code == 202
        # And every parked poll still answers.
        entry_ids = {sid: write_chunk(app, sid, "after") for sid in sessions}
        for i, sock in enumerate(socks):
            _, _, body = read_response(sock)
            assert json.loads(body)["cursor"] == entry_ids[sessions[i % len(sessions)]]
    finally:
        for sock in socks:
            sock.close()


def test_a_parked_answer_has_the_headers_gunicorn_gives_an_answer_at_once(
    app, poll_web: str
) -> None:
    """The head a parked poll writes itself is gunicorn's (handover.py, item 8)."""
    session_id = new_session(poll_web)
    first = write_chunk(app, session_id, "before")
    with connect(poll_web) as sock:
        send_poll(sock, session_id, "0-0")  # an entry after the cursor: gunicorn writes the answer
        at_once = read_response(sock)
        waiting = parked(poll_web)
        send_poll(sock, session_id, first)
        wait_for(lambda: parked(poll_web) >= waiting + 1, what="the poll to park")
        write_chunk(app, session_id, "after")
        from_the_hub = read_response(sock)
    (status, headers, _), (parked_status, parked_headers, _) = at_once, from_the_hub
    assert status == parked_status == 200
    for answer in (headers, parked_headers):
        del answer["date"], answer["content-length"]  # per answer
    assert parked_headers == headers


def test_a_query_that_is_not_utf8_gets_json_on_a_followed_session(app, poll_web: str) -> None:
    """A raw byte that is not UTF-8 in a poll's query: a JSON 400, never a 500."""
    session_id = new_session(poll_web)
    first = write_chunk(app, session_id, "before")
    with connect(poll_web) as parker, connect(poll_web) as sock:
        waiting = parked(poll_web)
        send_poll(parker, session_id, first)  # the hub follows the session now
        wait_for(lambda: parked(poll_web) >= waiting + 1, what="the poll to park")
        path = f"/api/sessions/{session_id}/poll?after=\xff&timeout=0"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1"))
        status, headers, body = read_response(sock)
        write_chunk(app, session_id, "after")
        read_response(parker)
    assert headers["content-type"] == "application/json"
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request", body
