"""Answers in steps end to end: gunicorn, a worker, Redis, SQL, a real MCP server and the model server.

One stack for the module, with the MCP test server (a read-only, a plain
and a destructive tool) and a client tool configured, MAX_TOOL_STEPS=3 and
the answer cache on. The model server scripts each step (tool_answers.py).
What a worker's loss does to a tool step: test_tool_faults.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PrivateStack
from tests.support.client import Event, create_session, poll_until, post_prompt, read_sse
from tests.support.mcp_server import McpTestServer
from tests.support.model_server import Behavior, ModelServer
from tests.support.processes import wait_for
from tests.support.sql import stored_message
from tests.support.tool_answers import (
    CLIENT_TOOLS,
    answer_in_steps,
    calls_step,
    decide,
    fragment,
    sse_until,
    step_requests,
    text_step,
    wait_for_event,
)
from webapp.storage.parts import Parts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class ToolStack:
    def __init__(self, stack: PrivateStack, web: str) -> None:
        self.stack = stack
        self.web = web

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.web, timeout=30)

    def ask(self, http: httpx.Client, prompt: str) -> tuple[str, str]:
        session_id = create_session(http)
        return session_id, post_prompt(http, session_id, prompt)["message_id"]


@pytest.fixture(scope="module")
def tools(
    base_env: dict[str, str], log_dir: Path, mcp_server: McpTestServer
) -> Iterator[ToolStack]:
    stack = PrivateStack(
        base_env,
        log_dir,
        "tool-answers",
        MCP_SERVERS=json.dumps([{"url": mcp_server.url}]),
        CLIENT_TOOLS=json.dumps(CLIENT_TOOLS),
        MAX_TOOL_STEPS="3",
        ANSWER_CACHE_TTL_SECONDS="60",
    )
    try:
        web = stack.web()
        stack.worker()
        yield ToolStack(stack, web)
    finally:
        stack.close()


def names(events: list[Event]) -> list[str]:
    return [e.event for e in events]


def fold(events: list[Event]) -> Parts:
    parts = Parts()
    for event in events:
        parts.apply(event.event, event.data)
    return parts


def metric(web: str, name: str, **labels: str) -> float:
    """One sample of the service's /metrics (0 when it is not there)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in httpx.get(f"{web}/metrics", timeout=10).text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


def snapshot_message(http: httpx.Client, session_id: str) -> dict[str, Any]:
    return http.get(f"/api/sessions/{session_id}").json()["messages"][-1]


def test_a_tool_answer_is_the_same_over_sse_long_poll_and_the_snapshot(
    tools: ToolStack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    prompt = f"look k1 up {unique}"
    answer_in_steps(
        model_server, prompt, calls_step(("lookup", {"key": "k1"})), text_step("Found ", "it.")
    )
    with tools.http() as http:
        session_id, message_id = tools.ask(http, prompt)
        sse = sse_until(tools.web, session_id, message_id)
        polled = poll_until(http, session_id, message_id)
        message = snapshot_message(http, session_id)

    assert names(sse) == ["start", "tool_call", "tool_result", "chunk", "chunk", "end"]
    assert [e.key for e in sse] == [e.key for e in polled], "SSE and long-poll carry the same"
    start, call, result, *_, end = sse
    assert start.data["from_step"] == 0
    assert (call.data["step"], call.data["name"], call.data["runs_on"]) == (0, "lookup", "server")
    assert call.data["arguments"] == {"key": "k1"} and call.data["approval_id"] is None
    assert (result.data["status"], result.data["error"]) == ("ok", None)
    assert "lookup done" in result.data["output"]["result"]
    assert [e.data["step"] for e in sse if e.event == "chunk"] == [1, 1]
    assert (end.data["steps"], end.data["tool_calls"], end.data["chunks"]) == (2, 1, 2)
    assert message["parts"] == fold(sse).items
    assert (message["status"], message["content"]) == ("done", "Found it.")
    # The MCP server ran it once, with the call id as its idempotency key.
    (seen,) = mcp_server.calls_with(call.data["call_id"])
    assert seen["tool"] == "lookup"
    # The next step sent the call back under the server's own id, and its result.
    (second,) = step_requests(model_server, prompt, 1)
    assistant, tool = second["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == "srv_0" and tool["tool_call_id"] == "srv_0"
    assert "lookup done" in tool["content"]
    offered = {t["function"]["name"] for t in second["tools"]}
    assert {"lookup", "note", "delete_item", "pick_color"} <= offered
    assert "tool_choice" not in second


def test_two_calls_of_one_step_and_three_steps(
    tools: ToolStack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    prompt = f"two then one {unique}"
    answer_in_steps(
        model_server,
        prompt,
        calls_step(("lookup", {"key": "a"}), ("note", {"text": "b"})),
        calls_step(("lookup", {"key": "c"})),
        text_step("All ", "done."),
    )
    with tools.http() as http:
        session_id, message_id = tools.ask(http, prompt)
        events = sse_until(tools.web, session_id, message_id)
        message = snapshot_message(http, session_id)

    calls = [e for e in events if e.event == "tool_call"]
    assert [(c.data["step"], c.data["name"]) for c in calls] == [
        (0, "lookup"),
        (0, "note"),
        (1, "lookup"),
    ]
    results = {e.data["call_id"]: e.data["status"] for e in events if e.event == "tool_result"}
    assert results == {c.data["call_id"]: "ok" for c in calls}
    assert all(len(mcp_server.calls_with(c.data["call_id"])) == 1 for c in calls)
    (third,) = step_requests(model_server, prompt, 2)
    assert [m["role"] for m in third["messages"][-5:]] == [
        "assistant",
        "tool",
        "tool",
        "assistant",
        "tool",
    ]
    end = events[-1].data
    assert (end["steps"], end["tool_calls"]) == (3, 3)
    assert message["parts"] == fold(events).items


def test_after_max_tool_steps_one_more_call_offers_none(
    tools: ToolStack, model_server: ModelServer, unique: str
) -> None:
    prompt = f"loop forever {unique}"
    again = calls_step(("lookup", {"key": "again"}))
    # Told to call none, the last one calls one anyway: relay does not run it.
    last = Behavior(
        script=[("content", "Enough."), ("tool_calls", [fragment(0, "lookup", {"key": "x"})])],
        finish_reason="tool_calls",
    )
    answer_in_steps(model_server, prompt, again, again, again, last)
    with tools.http() as http:
        session_id, message_id = tools.ask(http, prompt)
        events = sse_until(tools.web, session_id, message_id)

    bodies = [call.body for call in model_server.calls_for(prompt)]
    assert [body.get("tool_choice") for body in bodies] == [None, None, None, "none"]
    assert all(body["tools"] for body in bodies)
    end = events[-1].data
    assert (end["finish_reason"], end["steps"], end["tool_calls"]) == ("stop", 4, 3)
    assert sum(1 for e in events if e.event == "tool_result") == 3


def test_a_tool_answer_is_never_cached(
    tools: ToolStack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    prompt = f"cache this tool answer {unique}"
    answer_in_steps(model_server, prompt, calls_step(("lookup", {"key": "c"})), text_step("C."))
    with tools.http() as http:
        for _ in range(2):
            session_id, message_id = tools.ask(http, prompt)
            events = sse_until(tools.web, session_id, message_id)
            assert events[0].data["cached"] is False
            assert names(events)[1:3] == ["tool_call", "tool_result"]
    assert len(step_requests(model_server, prompt, 0)) == 2


# -- waiting for a person ---------------------------------------------------------


def waiting_answer(
    tools: ToolStack,
    http: httpx.Client,
    model_server: ModelServer,
    prompt: str,
    item: str = "report.pdf",
) -> tuple[str, str, str]:
    """(session, message, call) of an answer waiting for approval of `delete_item`."""
    answer_in_steps(
        model_server, prompt, calls_step(("delete_item", {"item": item})), text_step("Handled.")
    )
    session_id, message_id = tools.ask(http, prompt)
    waiting = wait_for_event(http, session_id, "waiting")
    (wait,) = waiting.data["for"]
    assert wait["kind"] == "approval"
    return session_id, message_id, wait["call_id"]


def test_an_approved_call_runs_once_and_the_answer_goes_on(
    tools: ToolStack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    prompt = f"delete report {unique}"
    item = f"private-{uuid.uuid4().hex}"  # what no log line may hold
    waiting_before = metric(tools.web, "relay_answers_waiting")
    ok_before = metric(tools.web, "relay_tool_calls_total", tool="delete_item", status="ok")
    with tools.http() as http:
        session_id, message_id, call_id = waiting_answer(tools, http, model_server, prompt, item)
        assert metric(tools.web, "relay_answers_waiting") == waiting_before + 1
        message = snapshot_message(http, session_id)
        snapshot = http.get(f"/api/sessions/{session_id}").json()
        assert snapshot["active_message_id"] == message_id
        assert message["status"] == "waiting"
        assert message["parts"][-1]["status"] == "waiting_approval"
        busy = http.post(f"/api/sessions/{session_id}/messages", json={"content": "more"})
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "generation_active"
        assert busy.json()["error"]["message_id"] == message_id
        assert mcp_server.calls_with(call_id) == []

        assert decide(http, session_id, message_id, call_id, True).status_code == 202
        assert decide(http, session_id, message_id, call_id, True).status_code == 202
        opposite = decide(http, session_id, message_id, call_id, False)
        assert (opposite.status_code, opposite.json()["error"]["code"]) == (
            409,
            "tool_call_settled",
        )
        events = sse_until(tools.web, session_id, message_id)
        message = snapshot_message(http, session_id)

    assert names(events) == [
        "start",
        "tool_call",
        "waiting",
        "start",
        "tool_call",
        "tool_result",
        "chunk",
        "end",
    ]
    resumed = events[3].data
    assert (resumed["attempt"], resumed["from_step"]) == (2, 0)
    assert events[1].data["approval_id"] == call_id and events[5].data["status"] == "ok"
    assert len(mcp_server.calls_with(call_id)) == 1
    assert message["status"] == "done" and message["parts"] == fold(events).items
    assert events[-1].data["tool_calls"] == 1
    assert metric(tools.web, "relay_answers_waiting") == waiting_before
    wait_for(
        lambda: (
            metric(tools.web, "relay_tool_calls_total", tool="delete_item", status="ok")
            == ok_before + 1
        ),
        what="the tool call counted",
    )
    # One line per tool event, with its ids; never the tool's arguments or output.
    log = "".join(process.log_text() for process in tools.stack.processes)
    for line in ("tool call", "answer waiting", "step sent again", "tool result"):
        assert f"{line} session={session_id} message={message_id}" in log, line
    assert f"call={call_id}" in log and item not in log


def test_a_denied_call_never_runs(
    tools: ToolStack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    prompt = f"delete nothing {unique}"
    with tools.http() as http:
        session_id, message_id, call_id = waiting_answer(tools, http, model_server, prompt)
        assert decide(http, session_id, message_id, call_id, False).status_code == 202
        events = sse_until(tools.web, session_id, message_id)

    (result,) = [e for e in events if e.event == "tool_result"]
    assert result.data["status"] == "denied"
    assert mcp_server.calls_with(call_id) == []
    (after,) = step_requests(model_server, prompt, 1)
    assert after["messages"][-1]["content"].startswith("denied:")


@pytest.mark.parametrize("how", ["cancel", "ai-sdk-stop"])
def test_a_cancel_ends_a_waiting_answer(
    tools: ToolStack, model_server: ModelServer, mcp_server: McpTestServer, unique: str, how: str
) -> None:
    prompt = f"delete then stop {how} {unique}"
    with tools.http() as http:
        session_id, message_id, call_id = waiting_answer(tools, http, model_server, prompt)
        path = (
            f"/api/sessions/{session_id}/messages/{message_id}/cancel"
            if how == "cancel"
            else f"/api/chat/{session_id}/stop"
        )
        assert http.post(path).status_code == 202
        events = sse_until(tools.web, session_id, message_id)
        message = snapshot_message(http, session_id)
        late = decide(http, session_id, message_id, call_id, True)
        post_prompt(http, session_id, f"after the cancel {unique}")

    assert names(events)[-3:] == ["tool_call", "tool_result", "end"]
    assert events[-1].data["finish_reason"] == "cancelled"
    assert events[-2].data["status"] == "denied"
    assert message["status"] == "cancelled" and message["parts"] == fold(events).items
    assert (late.status_code, late.json()["error"]["code"]) == (409, "not_waiting")
    assert mcp_server.calls_with(call_id) == []
    assert len(step_requests(model_server, prompt, 1)) == 0


def test_a_delete_ends_a_waiting_answer_and_nothing_runs(
    tools: ToolStack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    from webapp.storage import keys

    prompt = f"delete then delete the session {unique}"
    waiting_before = metric(tools.web, "relay_answers_waiting")
    with tools.http() as http:
        session_id, message_id, call_id = waiting_answer(tools, http, model_server, prompt)
        assert metric(tools.web, "relay_answers_waiting") == waiting_before + 1
        assert http.delete(f"/api/sessions/{session_id}").status_code == 204
        gone = decide(http, session_id, message_id, call_id, True)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "session_not_found")
    assert metric(tools.web, "relay_answers_waiting") == waiting_before
    client = tools.stack.redis_client()
    assert not client.exists(keys.journal(session_id), keys.active(session_id))
    assert mcp_server.calls_with(call_id) == []
    assert step_requests(model_server, prompt, 1) == []


def test_a_client_tool_waits_for_the_front_ends_output(
    tools: ToolStack, model_server: ModelServer, unique: str
) -> None:
    prompt = f"pick a color {unique}"
    answer_in_steps(model_server, prompt, calls_step(("pick_color", {})), text_step("Red."))
    with tools.http() as http:
        session_id, message_id = tools.ask(http, prompt)
        waiting = wait_for_event(http, session_id, "waiting")
        ((wait),) = waiting.data["for"]
        assert wait["kind"] == "output"
        path = f"/api/sessions/{session_id}/messages/{message_id}/tools/{wait['call_id']}"
        assert http.post(f"{path}/approval", json={"approved": True}).status_code == 409
        output = http.post(f"{path}/output", json={"output": {"color": "red"}})
        assert output.status_code == 202
        events = sse_until(tools.web, session_id, message_id)

    call = next(e for e in events if e.event == "tool_call")
    assert call.data["runs_on"] == "client"
    (result,) = [e for e in events if e.event == "tool_result"]
    assert (result.data["status"], result.data["output"]) == ("ok", {"color": "red"})
    (after,) = step_requests(model_server, prompt, 1)
    assert after["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "srv_0",
        "content": '{"color": "red"}',
    }


def test_the_next_prompt_sends_the_tool_steps_back_to_the_model(
    tools: ToolStack, model_server: ModelServer, unique: str
) -> None:
    prompt = f"first with a tool {unique}"
    answer_in_steps(model_server, prompt, calls_step(("lookup", {"key": "h"})), text_step("H."))
    follow = f"and then {unique}"
    with tools.http() as http:
        session_id, message_id = tools.ask(http, prompt)
        sse_until(tools.web, session_id, message_id)
        message_id = post_prompt(http, session_id, follow)["message_id"]
        sse_until(tools.web, session_id, message_id)
    (body,) = [call.body for call in model_server.calls_for(follow)]
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "lookup"
    assert body["messages"][4]["content"] == "H."


def test_the_demo_model_calls_its_demo_tool(private_stack, unique: str) -> None:
    stack = private_stack(OPENAI_API_KEY="", DEMO_DELAY_SECONDS="0")
    web = stack.web()
    stack.worker()
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, f"what is 2 + 3? {unique}")["message_id"]
        events = read_sse(web, session_id, until_message=message_id).events
        message = snapshot_message(http, session_id)

    call = next(e for e in events if e.event == "tool_call")
    result = next(e for e in events if e.event == "tool_result")
    assert (call.data["name"], call.data["arguments"]) == ("add", {"numbers": [2, 3]})
    assert (result.data["status"], result.data["output"]) == ("ok", {"sum": 5})
    assert events[0].data["model"] == "demo" and events[-1].event == "end"
    assert "`add` tool" in message["content"] and '{"sum": 5}' in message["content"]
    row = stored_message(stack.app, message_id)
    assert row is not None and json.loads(row.parts) == fold(events).items
