"""Bad input and abuse: malformed requests, fuzz, floods, stream caps, slow clients, retries."""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import quote

import httpx

from tests.support.client import create_session, post_prompt, read_sse
from tests.support.model_server import ModelServer
from tests.support.processes import wait_for

S = "S" * 32  # a well-formed session id that does not exist
M = "M" * 16

# (method, path, headers, body) -> the status and code API.md gives it. `{sid}` is a real session.
MALFORMED = [
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b"",
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b"{",
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b"null",
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'"hi"',
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b"[]",
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'{"content": null}',
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'{"content": ["a"]}',
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'{"content": {"a": 1}}',
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'{"content": true}',
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b"\xff\xfe{}",
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'{"content": "\\ud800"}',
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'{"content": "a\\u0000b"}',
        400,
        "invalid_prompt",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'{"content": ""}',
        400,
        "empty_prompt",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'{"content": "\\n \\t"}',
        400,
        "empty_prompt",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "text/plain"},
        b'{"content": "hi"}',
        415,
        "unsupported_media_type",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {},
        b'{"content": "hi"}',
        415,
        "unsupported_media_type",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "multipart/form-data; boundary=x"},
        b"--x--",
        415,
        "unsupported_media_type",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b'{"content": "' + b"y" * 16_001 + b'"}',
        413,
        "prompt_too_large",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json"},
        b" " * 300_000,
        413,
        "prompt_too_large",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json", "Idempotency-Key": ""},
        b'{"content": "hi"}',
        400,
        "invalid_idempotency_key",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json", "Idempotency-Key": "k" * 256},
        b'{"content": "hi"}',
        400,
        "invalid_idempotency_key",
    ),
    (
        "POST",
        "/api/sessions/{sid}/messages",
        {"Content-Type": "application/json", "Idempotency-Key": "a b"},
        b'{"content": "hi"}',
        400,
        "invalid_idempotency_key",
    ),
    (
        "POST",
        f"/api/sessions/{S}/messages",
        {"Content-Type": "application/json"},
        b'{"content": "hi"}',
        404,
        "session_not_found",
    ),
    (
        "POST",
        "/api/sessions/x/messages",
        {"Content-Type": "application/json"},
        b'{"content": "hi"}',
        400,
        "invalid_session_id",
    ),
    ("GET", "/api/sessions/%00%00%00%00%00%00%00%00", {}, b"", 400, "invalid_session_id"),
    ("GET", "/api/sessions/..%2F..%2F..%2Fetc", {}, b"", 404, "not_found"),
    ("GET", "/api/sessions/{sid}%0D%0AX:1", {}, b"", 400, "invalid_session_id"),
    ("GET", "/api/sessions/" + "é" * 10, {}, b"", 400, "invalid_session_id"),
    ("GET", f"/api/sessions/{S}", {}, b"", 404, "session_not_found"),
    ("GET", f"/api/sessions/{S}/events", {}, b"", 404, "session_not_found"),
    ("GET", f"/api/sessions/{S}/poll", {}, b"", 404, "session_not_found"),
    ("GET", "/api/sessions/{sid}/events?last_event_id=abc", {}, b"", 400, "invalid_cursor"),
    ("GET", "/api/sessions/{sid}/events", {"Last-Event-ID": "-1"}, b"", 400, "invalid_cursor"),
    ("GET", "/api/sessions/{sid}/events", {"Last-Event-ID": "1-"}, b"", 400, "invalid_cursor"),
    ("GET", "/api/sessions/{sid}/events", {"Last-Event-ID": "1.5-0"}, b"", 400, "invalid_cursor"),
    (
        "GET",
        "/api/sessions/{sid}/events",
        {"Last-Event-ID": "99999999999999999999999-0"},
        b"",
        400,
        "invalid_cursor",
    ),
    ("GET", "/api/sessions/{sid}/poll?after=1-2-3", {}, b"", 400, "invalid_cursor"),
    ("GET", "/api/sessions/{sid}/poll?after=%20", {}, b"", 400, "invalid_cursor"),
    ("GET", "/api/sessions/{sid}/poll?timeout=abc", {}, b"", 400, "invalid_timeout"),
    ("GET", "/api/sessions/{sid}/poll?timeout=1e999", {}, b"", 400, "invalid_timeout"),
    ("GET", "/api/sessions/{sid}/poll?timeout=-nan", {}, b"", 400, "invalid_timeout"),
    ("GET", "/api/sessions/{sid}/messages/" + M, {}, b"", 404, "message_not_found"),
    ("GET", "/api/sessions/{sid}/messages/a.b", {}, b"", 400, "invalid_message_id"),
    ("POST", "/api/sessions/{sid}/messages/" + M + "/cancel", {}, b"", 404, "message_not_found"),
    (
        "POST",
        "/api/sessions/{sid}/messages/%25%25%25%25%25%25%25%25/cancel",
        {},
        b"",
        400,
        "invalid_message_id",
    ),
    ("GET", "/api/sessions/{sid}/messages", {}, b"", 405, "method_not_allowed"),
    ("PUT", "/api/sessions/{sid}/messages", {}, b"", 405, "method_not_allowed"),
    ("PUT", "/api/sessions/{sid}", {}, b"", 405, "method_not_allowed"),
    ("PATCH", "/api/sessions", {}, b"", 405, "method_not_allowed"),
    ("POST", "/healthz", {}, b"", 405, "method_not_allowed"),
    ("GET", "/api", {}, b"", 404, "not_found"),
    ("GET", "/api/sessions/{sid}/nothing", {}, b"", 404, "not_found"),
    ("GET", "/wp-admin/install.php", {}, b"", 404, "not_found"),
]


def assert_api_error(
    response: httpx.Response, status: int | None = None, code: str | None = None
) -> None:
    assert response.status_code != 500, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"code", "message"}, body
    if status is not None:
        assert (response.status_code, body["error"]["code"]) == (status, code), body


def test_table_of_malformed_requests(client: httpx.Client) -> None:
    assert len(MALFORMED) >= 40
    session_id = create_session(client)
    for method, path, headers, body, status, code in MALFORMED:
        response = client.request(
            method, path.replace("{sid}", session_id), headers=headers, content=body
        )
        try:
            assert_api_error(response, status, code)
        except AssertionError as exc:
            raise AssertionError(f"{method} {path} {headers}: {exc}") from None
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_bounded_random_fuzz(client: httpx.Client) -> None:
    """A few hundred random requests: never a 500, every error API.md's JSON."""
    rng = random.Random(20261121)
    session_id = create_session(client)
    alphabet = "aZ09-_.~%/\\:\r\n\x00é€{}[]\"' "
    pieces = [session_id, "api", "sessions", "messages", "events", "poll", "cancel", M, S, "..", ""]

    def junk(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))

    for _ in range(300):
        parts = [rng.choice(pieces + [junk(12)]) for _ in range(rng.randint(1, 6))]
        path = "/" + "/".join(quote(p, safe=rng.choice(["", "%", "/%"])) for p in parts)
        method = rng.choice(["GET", "POST", "PUT", "DELETE"])
        headers = {}
        if rng.random() < 0.5:
            headers["Content-Type"] = rng.choice(["application/json", "text/plain", junk(10)])
        if rng.random() < 0.3:
            headers["Last-Event-ID"] = junk(25)
        body = rng.choice(
            [
                b"",
                junk(40).encode(),
                json.dumps({"content": junk(30)}).encode(),
                json.dumps({"content": rng.randint(0, 9)}).encode(),
            ]
        )
        params = (
            {rng.choice(["after", "timeout", "last_event_id", "wait"]): junk(8)}
            if rng.random() < 0.5
            else None
        )
        if "timeout" in (params or {}):
            params["timeout"] = rng.choice(["0", "0.01", junk(4)])
        try:
            response = client.request(
                method,
                path,
                headers={
                    k: v.encode("latin-1", "replace").decode("latin-1") for k, v in headers.items()
                },
                content=body,
                params=params,
                timeout=10,
            )
        except (httpx.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError):
            continue  # the client library refused to send it
        if response.status_code >= 400:
            assert_api_error(response)
        else:
            assert response.status_code in (200, 201, 202), (method, path, response.status_code)
    assert client.get("/readyz").status_code == 200


def test_a_flood_from_one_client_is_limited_while_another_is_served(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(RATE_LIMIT="5/minute")
    web = stack.web()
    stack.worker()
    flooder = {"X-Forwarded-For": "203.0.113.7"}
    polite = {"X-Forwarded-For": "198.51.100.9"}
    with httpx.Client(base_url=web, timeout=30) as http:
        statuses = []
        for i in range(20):
            session_id = create_session(http)
            response = http.post(
                f"/api/sessions/{session_id}/messages",
                headers=flooder,
                json={"content": f"flood {i} {unique}"},
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert_api_error(response, 429, "rate_limited")
                assert int(response.headers["Retry-After"]) >= 1
        assert statuses[:5] == [202] * 5 and statuses[5:] == [429] * 15

        session_id = create_session(http)
        response = http.post(
            f"/api/sessions/{session_id}/messages",
            headers=polite,
            json={"content": f"polite {unique}"},
        )
        assert response.status_code == 202
        events = read_sse(web, session_id, until_message=response.json()["message_id"]).events
        assert events[-1].event == "end"


def test_open_streams_per_client_are_capped(private_stack) -> None:
    stack = private_stack(MAX_STREAMS_PER_CLIENT="3", PROXY_HOPS="0")
    web = stack.web()
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        with open_streams(web, [session_id] * 3):
            assert_api_error(
                http.get(f"/api/sessions/{session_id}/events"), 429, "too_many_streams"
            )
            assert_api_error(
                http.get(f"/api/sessions/{session_id}/poll", params={"timeout": 0}),
                429,
                "too_many_streams",
            )
        wait_until_streams_released(http, session_id)


def test_open_streams_per_process_are_capped(private_stack) -> None:
    """Past MAX_STREAMS_PER_PROCESS a stream is refused with 503, whoever asks."""
    stack = private_stack(MAX_STREAMS_PER_PROCESS="3", MAX_STREAMS_PER_CLIENT="100")
    web = stack.web()
    with httpx.Client(base_url=web, timeout=30) as http:
        sessions = [create_session(http) for _ in range(3)]
        with open_streams(web, sessions):
            refused = http.get(f"/api/sessions/{sessions[0]}/events")
            assert_api_error(refused, 503, "unavailable")
            assert refused.headers["Retry-After"] == "5"
            poll = http.get(f"/api/sessions/{sessions[1]}/poll", params={"timeout": 0})
            assert_api_error(poll, 503, "unavailable")
        wait_until_streams_released(http, sessions[0])


def test_streams_per_process_default_to_what_the_open_file_limit_leaves() -> None:
    import resource

    from webapp.http import limits

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert limits.streams_per_process(7) == 7
    expected = soft - min(limits.FILES_KEPT_FOR_REQUESTS, soft // 4)
    assert limits.streams_per_process(0) == expected


def test_a_client_that_stops_reading_is_dropped(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    stack = private_stack(SSE_SEND_TIMEOUT_SECONDS="1")
    web = stack.web()
    stack.worker()
    prompt = f"big answer {unique}"
    model_server.behave(prompt, chunks=["x" * 60_000] * 150, delay_seconds=0)  # ~9 MB of events
    host, port = web.removeprefix("http://").split(":")
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        with socket.create_connection((host, int(port))) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(
                f"GET /api/sessions/{session_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            message_id = post_prompt(http, session_id, prompt)["message_id"]
            # We never read: the server must give up on us rather than hold the greenlet.
            web_log = stack.processes[0]
            wait_for(
                lambda: "stopped reading" in web_log.log_text(),
                timeout=60,
                what="the slow client to be dropped",
            )
        # Everyone else is still served.
        events = read_sse(web, session_id, until_message=message_id, timeout=60).events
        assert events[-1].event == "end"


def test_idempotency_key_replays_the_first_answer(client: httpx.Client, unique: str) -> None:
    session_id = create_session(client)
    headers = {"Idempotency-Key": f"key-{unique}"}
    url = f"/api/sessions/{session_id}/messages"
    first = client.post(url, json={"content": f"once {unique}"}, headers=headers)
    again = client.post(url, json={"content": f"once {unique}"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    snapshot = client.get(f"/api/sessions/{session_id}").json()
    assert [m["role"] for m in snapshot["messages"]] == ["user", "assistant"]
    reused = client.post(url, json={"content": "something else"}, headers=headers)
    assert_api_error(reused, 422, "idempotency_key_reused")


@contextmanager
def open_streams(web: str, session_ids: list[str]) -> Iterator[None]:
    """Hold one SSE stream open on each session id for the length of the block."""
    with ExitStack() as streams:
        for session_id in session_ids:
            url = f"{web}/api/sessions/{session_id}/events"
            response = streams.enter_context(httpx.stream("GET", url, timeout=10))
            assert response.status_code == 200
        yield


def wait_until_streams_released(http: httpx.Client, session_id: str) -> None:
    """Closed streams give their places back: a poll is served again."""
    wait_for(
        lambda: (
            http.get(f"/api/sessions/{session_id}/poll", params={"timeout": 0}).status_code == 200
        ),
        timeout=10,
        what="stream places to be released",
    )
