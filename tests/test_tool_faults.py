"""Exactly once, against real processes: a worker SIGKILLed around a tool call, a restart while waiting.

API.md, Tools, "Exactly once": a tool call whose result was recorded never
runs again; a call that may have run is never silently run twice (an
idempotent one runs again with the same key, any other is `in_doubt`); a
step whose output was recorded is never asked of the model again. Each
test holds a worker at the point it breaks, on a stack of its own, with the
real MCP test server counting the calls and their idempotency keys.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.client import Event, create_session, post_prompt, stream_events
from tests.support.mcp_server import McpTestServer
from tests.support.model_server import ModelServer
from tests.support.processes import wait_for
from tests.support.tool_answers import (
    answer_in_steps,
    calls_step,
    decide,
    sse_until,
    step_requests,
    text_step,
    wait_for_event,
)
from webapp.storage.parts import Parts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LEASE = {"JOB_LEASE_SECONDS": "1.5"}


def tool_stack(private_stack, mcp_server: McpTestServer, **env: str):
    return private_stack(MCP_SERVERS=json.dumps([{"url": mcp_server.url}]), **LEASE, **env)


def starts(events: list[Event]) -> list[tuple[int, int]]:
    return [(e.data["attempt"], e.data["from_step"]) for e in events if e.event == "start"]


def results(events: list[Event]) -> list[str]:
    return [e.data["status"] for e in events if e.event == "tool_result"]


def killed_while_it_runs(
    private_stack, model_server: ModelServer, mcp_server: McpTestServer, prompt: str, tool: str
) -> tuple[list[Event], str]:
    """An answer whose step 0 calls `tool`, its worker SIGKILLed while the tool runs; its events."""
    stack = tool_stack(private_stack, mcp_server)
    web, worker = stack.web(), stack.worker()
    arguments = {"key": "k"} if tool == "lookup" else {"text": "once"}
    answer_in_steps(
        model_server,
        prompt,
        calls_step((tool, {**arguments, "sleep_seconds": 3})),
        text_step("Whatever ", "happened."),
    )
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        call_id = wait_for_event(http, session_id, "tool_call").data["call_id"]
        wait_for(lambda: mcp_server.calls_with(call_id), timeout=20, what="the tool to begin")
        worker.kill()
        stack.worker()
        return sse_until(web, session_id, message_id, timeout=60), call_id


def test_a_plain_tool_lost_as_it_ran_is_in_doubt_and_ran_once(
    private_stack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    prompt = f"note once {unique}"
    events, call_id = killed_while_it_runs(private_stack, model_server, mcp_server, prompt, "note")

    assert len(mcp_server.calls_with(call_id)) == 1
    assert results(events) == ["in_doubt"]
    assert starts(events) == [(1, 0), (2, 0)]
    # Attempt 2 sent step 0 again and never asked the model for it.
    assert len(step_requests(model_server, prompt, 0)) == 1
    (after,) = step_requests(model_server, prompt, 1)
    assert "may or may not have happened" in after["messages"][-1]["content"]
    assert events[-1].event == "end" and events[-1].data["tool_calls"] == 1


def test_an_idempotent_tool_lost_as_it_ran_runs_again_with_the_same_key(
    private_stack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    prompt = f"look up twice {unique}"
    events, call_id = killed_while_it_runs(
        private_stack, model_server, mcp_server, prompt, "lookup"
    )

    seen = mcp_server.calls_with(call_id)
    assert len(seen) == 2 and {call["idempotency_key"] for call in seen} == {call_id}
    assert results(events) == ["ok"]
    assert len(step_requests(model_server, prompt, 0)) == 1


def test_a_worker_lost_in_the_next_step_runs_no_tool_and_asks_no_step_again(
    private_stack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    stack = tool_stack(private_stack, mcp_server)
    web, worker = stack.web(), stack.worker()
    prompt = f"lose the next step {unique}"
    texts = [f"part{i} " for i in range(6)]
    held = text_step(*texts, gate_after=2, delay_seconds=0.002)
    answer_in_steps(model_server, prompt, calls_step(("lookup", {"key": "n"})), held)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        wait_for(
            lambda: sum(1 for e in stream_events(http, session_id) if e.event == "chunk") >= 2,
            timeout=20,
            what="2 chunks of step 1",
        )
        worker.kill()
        held.gate.set()
        stack.worker()
        events = sse_until(web, session_id, message_id, timeout=60)
        message = http.get(f"/api/sessions/{session_id}").json()["messages"][-1]

    call_id = next(e for e in events if e.event == "tool_call").data["call_id"]
    assert len(mcp_server.calls_with(call_id)) == 1
    assert len(step_requests(model_server, prompt, 0)) == 1, "step 0 was asked once"
    assert starts(events) == [(1, 0), (2, 1)]
    parts = Parts()
    for event in events:
        parts.apply(event.event, event.data)
    assert parts.content == "".join(texts) and message["parts"] == parts.items
    end = events[-1].data
    assert (end["chunks"], end["steps"], end["tool_calls"]) == (len(texts), 2, 1)
    assert end["text_length"] == len("".join(texts))


def test_an_approval_survives_a_restart_of_web_and_worker(
    private_stack, model_server: ModelServer, mcp_server: McpTestServer, unique: str
) -> None:
    stack = tool_stack(private_stack, mcp_server)
    web, worker = stack.web(), stack.worker()
    prompt = f"delete across a deploy {unique}"
    answer_in_steps(
        model_server, prompt, calls_step(("delete_item", {"item": "old"})), text_step("Gone.")
    )
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        message_id = post_prompt(http, session_id, prompt)["message_id"]
        waiting = wait_for_event(http, session_id, "waiting")
    call_id = waiting.data["for"][0]["call_id"]
    for process in reversed(stack.processes):
        process.stop()
    assert not worker.alive()

    web = stack.web()
    stack.worker()
    with httpx.Client(base_url=web, timeout=30) as http:
        snapshot = http.get(f"/api/sessions/{session_id}").json()
        assert snapshot["active_message_id"] == message_id
        assert snapshot["messages"][-1]["status"] == "waiting"
        assert decide(http, session_id, message_id, call_id, True).status_code == 202
        events = sse_until(web, session_id, message_id, timeout=60)
        snapshot = http.get(f"/api/sessions/{session_id}").json()

    assert results(events) == ["ok"] and events[-1].event == "end"
    assert len(mcp_server.calls_with(call_id)) == 1
    assert snapshot["messages"][-1]["status"] == "done"
    assert snapshot["active_message_id"] is None
