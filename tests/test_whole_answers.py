"""GET a message with ?wait=: the whole-answer mode for clients that do not stream."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.support.client import create_session, post_prompt
from tests.support.model_server import ModelServer
from tests.test_abuse import assert_api_error

pytestmark = pytest.mark.usefixtures("worker")


def message_url(session_id: str, message_id: str) -> str:
    return f"/api/sessions/{session_id}/messages/{message_id}"


def test_wait_returns_the_final_answer(
    client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"whole answer {unique}"
    texts = ["All ", "of ", "it."]
    behavior = model_server.behave(prompt, chunks=texts, gate_after=1)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]
    result: dict = {}
    waiter = threading.Thread(
        target=lambda: result.update(
            response=client.get(message_url(session_id, message_id), params={"wait": 20})
        )
    )
    waiter.start()
    behavior.gate.set()
    waiter.join(30)
    message = result["response"].json()
    assert result["response"].status_code == 200
    assert (message["status"], message["content"], message["finish_reason"]) == (
        "done",
        "All of it.",
        "stop",
    )
    assert message["usage"]["completion_tokens"] == 3


def test_wait_that_runs_out_returns_the_unfinished_message(
    client: httpx.Client, model_server: ModelServer, unique: str
) -> None:
    prompt = f"not yet {unique}"
    behavior = model_server.behave(prompt, chunks=["Half ", "and half"], gate_after=1)
    session_id = create_session(client)
    message_id = post_prompt(client, session_id, prompt)["message_id"]
    response = client.get(message_url(session_id, message_id), params={"wait": 1})
    behavior.gate.set()
    message = response.json()
    assert response.status_code == 200
    assert message["status"] in ("queued", "streaming") and message["finish_reason"] is None
    assert "Half and half".startswith(message["content"])


def test_without_wait_answers_at_once_and_user_messages_too(
    client: httpx.Client, unique: str
) -> None:
    session_id = create_session(client)
    post_prompt(client, session_id, f"plain {unique}")
    snapshot = client.get(f"/api/sessions/{session_id}").json()
    user = snapshot["messages"][0]
    assert client.get(message_url(session_id, user["id"]), params={"wait": 5}).json() == user


def test_wait_errors(client: httpx.Client) -> None:
    session_id = create_session(client)
    assert_api_error(
        client.get(message_url(session_id, "N" * 16), params={"wait": 1}), 404, "message_not_found"
    )
    assert_api_error(
        client.get(message_url("Z" * 32, "N" * 16), params={"wait": 1}), 404, "session_not_found"
    )
    for bad in ("soon", "nan", "inf", ""):
        assert_api_error(
            client.get(message_url(session_id, "N" * 16), params={"wait": bad}), 400, "invalid_wait"
        )
