"""Every error of API.md's table, produced by a real request: status and JSON body."""

from __future__ import annotations

import httpx
import pytest

from tests.support.client import create_session, post_prompt, read_sse
from tests.support.model_server import ModelServer


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


@pytest.fixture()
def session_id(client: httpx.Client) -> str:
    return create_session(client)


def messages_url(session_id: str) -> str:
    return f"/api/sessions/{session_id}/messages"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"content": 42}', "invalid_json"),
        (b'{"text": "hi"}', "invalid_json"),
        (b'{"content": ""}', "empty_prompt"),
        (b'{"content": "  \\n\\t "}', "empty_prompt"),
    ],
)
def test_bad_prompt_bodies_are_400(
    client: httpx.Client, session_id: str, body: bytes, code: str
) -> None:
    response = client.post(
        messages_url(session_id), content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, code)


def test_non_json_body_is_415(client: httpx.Client, session_id: str) -> None:
    response = client.post(
        messages_url(session_id),
        content=b"content=hi",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 415, "unsupported_media_type")


def test_prompt_over_max_chars_is_413(client: httpx.Client, session_id: str) -> None:
    response = client.post(messages_url(session_id), json={"content": "x" * 16_001})
    assert_error(response, 413, "prompt_too_large")


def test_body_over_the_limit_is_413(client: httpx.Client, session_id: str) -> None:
    response = client.post(
        messages_url(session_id),
        content=b'{"content": "' + b"x" * 400_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 413, "prompt_too_large")


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "-1",
        "1-",
        "1.5-0",
        "18446744073709551616-0",
        "1-18446744073709551616",
        "0-0-0",
        " 1-0",
    ],
)
def test_malformed_cursors_are_400(client: httpx.Client, session_id: str, cursor: str) -> None:
    assert_error(
        client.get(f"/api/sessions/{session_id}/poll", params={"after": cursor}),
        400,
        "invalid_cursor",
    )
    assert_error(
        client.get(f"/api/sessions/{session_id}/events", params={"last_event_id": cursor}),
        400,
        "invalid_cursor",
    )


def test_malformed_last_event_id_header_is_400(client: httpx.Client, session_id: str) -> None:
    response = client.get(f"/api/sessions/{session_id}/events", headers={"Last-Event-ID": "nope"})
    assert_error(response, 400, "invalid_cursor")


@pytest.mark.parametrize("timeout", ["soon", "nan", "inf", ""])
def test_poll_timeout_must_be_a_number(client: httpx.Client, session_id: str, timeout: str) -> None:
    response = client.get(f"/api/sessions/{session_id}/poll", params={"timeout": timeout})
    assert_error(response, 400, "invalid_timeout")


def test_poll_timeout_is_clamped(client: httpx.Client, session_id: str) -> None:
    response = client.get(f"/api/sessions/{session_id}/poll", params={"timeout": "-5"})
    assert response.status_code == 200
    assert response.json() == {"events": [], "cursor": "0-0", "reset": False}


@pytest.mark.parametrize(
    "path",
    [
        "/api/sessions/short",
        "/api/sessions/has.dot.inside.it",
        "/api/sessions/" + "a" * 65,
        "/api/sessions/short/events",
        "/api/sessions/short/poll",
    ],
)
def test_malformed_session_ids_are_400(client: httpx.Client, path: str) -> None:
    assert_error(client.get(path), 400, "invalid_session_id")


def test_unknown_session_is_404(client: httpx.Client) -> None:
    missing = "A" * 32
    for response in (
        client.get(f"/api/sessions/{missing}"),
        client.get(f"/api/sessions/{missing}/events"),
        client.get(f"/api/sessions/{missing}/poll"),
        client.post(messages_url(missing), json={"content": "hi"}),
    ):
        assert_error(response, 404, "session_not_found")


def test_unknown_message_is_404(client: httpx.Client, session_id: str) -> None:
    assert_error(client.get(f"{messages_url(session_id)}/{'B' * 16}"), 404, "message_not_found")
    assert_error(
        client.post(f"{messages_url(session_id)}/{'B' * 16}/cancel"), 404, "message_not_found"
    )
    assert_error(client.get(f"{messages_url(session_id)}/bad!"), 400, "invalid_message_id")


def test_unknown_route_and_wrong_method_answer_json(client: httpx.Client, session_id: str) -> None:
    assert_error(client.get("/no/such/page"), 404, "not_found")
    error = client.put(f"/api/sessions/{session_id}")  # DELETE is an endpoint (issue 15)
    assert_error(error, 405, "method_not_allowed")
    assert "GET" in error.headers["allow"]
    assert_error(client.put("/api/sessions"), 405, "method_not_allowed")


@pytest.mark.usefixtures("worker")
def test_second_prompt_while_one_is_active_is_409(
    web: str, client: httpx.Client, session_id: str, model_server: ModelServer, unique: str
) -> None:
    prompt = f"hold on {unique}"
    behavior = model_server.behave(prompt, chunks=["a", "b"], gate_after=1)
    message_id = post_prompt(client, session_id, prompt)["message_id"]
    error = assert_error(
        client.post(messages_url(session_id), json={"content": "again"}), 409, "generation_active"
    )
    assert error["message_id"] == message_id
    behavior.gate.set()
    read_sse(web, session_id, until_message=message_id)
    # Right after `end`, the session takes a prompt again.
    post_prompt(client, session_id, f"after end {unique}")


# Bodies nested deeper than Python's JSON parser allows: it raises
# RecursionError, not ValueError (issue 13: a 500 on any POST with one).
DEEP_BODIES = {
    "arrays": b"[" * 5000 + b"]" * 5000,
    "objects": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "in the prompt": b'{"content": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "unclosed": b"[" * 50_000,
}


def post_routes(app) -> list[str]:
    """Every POST route of the app, as in its url map."""
    return sorted(rule.rule for rule in app.url_map.iter_rules() if "POST" in rule.methods)


def test_the_post_routes_are_the_ones_api_md_lists(app) -> None:
    # So that the test below covers something: it takes its routes from the url map.
    assert {
        "/api/sessions",
        "/api/sessions/<session_id>/messages",
        "/api/sessions/<session_id>/messages/<message_id>/cancel",
        "/api/sessions/<session_id>/messages/<message_id>/tools/<call_id>/approval",
        "/api/sessions/<session_id>/messages/<message_id>/tools/<call_id>/output",
    } <= set(post_routes(app))


@pytest.mark.parametrize("shape", sorted(DEEP_BODIES))
def test_deeply_nested_body_is_400_on_every_post_route(
    app, client: httpx.Client, session_id: str, shape: str
) -> None:
    for rule in post_routes(app):
        path = rule.replace("<session_id>", session_id).replace("<message_id>", "B" * 16)
        path = path.replace("<call_id>", "call_1")
        assert "<" not in path, f"fill in {rule}'s parameters"
        response = client.post(
            path, content=DEEP_BODIES[shape], headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "invalid_json")
