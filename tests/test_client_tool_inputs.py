"""Tool inputs through each client: an answer that waits is followed again once they are given.

The answer waits twice: for an approval (the app's `pay`), then for a
client tool's output (`pick_color`), then says two words. Each client (the
Python one, sync and asyncio; the JS one under Node; RelayChatTransport as
useChat drives it) gives the inputs and follows the same answer on to its
end, with exactly the parts relay stored (API.md, Tools).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import httpx
import pytest
from relay_client import AsyncClient, Client

from tests.support.client import create_session
from tests.support.js_client import Follower, node
from tests.support.model_server import Behavior, ModelServer
from tests.support.tool_answers import answer_in_steps, fragment
from tests.test_client_steps import ENV, POLICY, as_stored
from tests.test_js_client import js_harness  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def waits_twice(private_stack, model_server: ModelServer, name: str) -> tuple[str, str]:
    """A stack, and a prompt whose answer waits for an approval (`pay`), then for a
    client tool's output (`pick_color`), then says two words: (prompt, relay's URL)."""
    prompt = f"wait twice {name}"
    stack = private_stack(**ENV)
    web = stack.web()
    stack.worker()
    answer_in_steps(
        model_server,
        prompt,
        Behavior(script=[("tool_calls", [fragment(0, "pay", {})])], finish_reason="tool_calls"),
        Behavior(
            script=[("tool_calls", [fragment(0, "pick_color", {"hint": "sky"})])],
            finish_reason="tool_calls",
        ),
        Behavior(chunks=["Paid, ", "blue."]),
    )
    return prompt, web


def snapshot_of(web: str, session_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=web, timeout=30) as http:
        return http.get(f"/api/sessions/{session_id}").json()


def check_waited_twice(parts: list[Any], snapshot: dict[str, Any]) -> None:
    stored = snapshot["messages"][-1]["parts"]
    shown = [p if isinstance(p, dict) else dataclasses.asdict(p) for p in parts]
    assert [as_stored(p) for p in shown] == stored
    assert [(p["type"], p.get("status"), p.get("output")) for p in stored] == [
        ("tool", "ok", "paid"),
        ("tool", "ok", {"color": "blue"}),
        ("text", None, None),
    ]


def test_python_sync_follows_a_waiting_answer_again_once_its_input_is_given(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    prompt, web = waits_twice(private_stack, model_server, f"sync {unique}")
    with Client(web, policy=POLICY) as relay:
        session_id = relay.create_session()
        answer = relay.send(session_id, prompt).wait()
        assert [p.status for p in answer.tool_calls] == ["waiting_approval"]
        assert answer.wait().status == "waiting"  # nothing given yet: it still waits
        relay.approve(session_id, answer.message_id, answer.tool_calls[0].call_id, True)
        assert answer.wait().status == "waiting"
        assert [p.status for p in answer.tool_calls] == ["ok", "waiting_output"]
        relay.tool_output(
            session_id, answer.message_id, answer.tool_calls[1].call_id, {"color": "blue"}
        )
        assert (answer.wait().status, answer.content) == ("done", "Paid, blue.")
        check_waited_twice(answer.parts, relay.snapshot(session_id))


def test_python_async_follows_a_waiting_answer_again_once_its_input_is_given(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    prompt, web = waits_twice(private_stack, model_server, f"async {unique}")

    async def follow() -> tuple[Any, dict[str, Any]]:
        async with AsyncClient(web, policy=POLICY) as relay:
            session_id = await relay.create_session()
            answer = await (await relay.send(session_id, prompt))
            call_id = answer.tool_calls[0].call_id
            await relay.approve(session_id, answer.message_id, call_id, True)
            assert (await answer).status == "waiting"
            call_id = answer.tool_calls[1].call_id
            await relay.tool_output(session_id, answer.message_id, call_id, {"color": "blue"})
            assert (await answer).status == "done"
            return answer, await relay.snapshot(session_id)

    answer, snapshot = asyncio.run(follow())
    check_waited_twice(answer.parts, snapshot)


@pytest.mark.usefixtures("js_harness")
def test_js_follows_a_waiting_answer_again_once_its_input_is_given(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    prompt, web = waits_twice(private_stack, model_server, f"js {unique}")
    inputs = {"approved": True, "output": {"color": "blue"}}
    result = Follower(web, prompt=prompt, inputs=inputs).result()
    message = result.message
    assert (message["status"], message["content"], result.report["waits"]) == (
        "done",
        "Paid, blue.",
        2,
    )
    check_waited_twice(message["parts"], snapshot_of(web, result.report["sessionId"]))


@pytest.mark.usefixtures("js_harness")
def test_relay_chat_transport_streams_the_rest_of_the_answer_after_each_input(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    prompt, web = waits_twice(private_stack, model_server, f"ai sdk {unique}")
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
    args = {"baseUrl": web, "sessionId": session_id, "prompt": prompt, "output": {"color": "blue"}}
    turns = json.loads(node("tool-chat.mjs", json.dumps(args)))["turns"]
    snapshot = snapshot_of(web, session_id)
    check_waited_twice(snapshot["messages"][-1]["parts"], snapshot)
    assert [t["chunks"][-1] for t in turns] == ["finish", "finish", "finish"]
    tools = [
        (p["type"], p["state"], p.get("output"))
        for p in turns[-1]["message"]["parts"]
        if p["type"].startswith("tool-")
    ]
    assert tools == [
        ("tool-pay", "output-available", "paid"),
        ("tool-pick_color", "output-available", {"color": "blue"}),
    ]
    texts = [p["text"] for p in turns[-1]["message"]["parts"] if p["type"] == "text"]
    assert "".join(texts) == "Paid, blue."
