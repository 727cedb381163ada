"""Answers in steps against real processes: the scripted model's tool calls, and what a client reads.

The model server (model_server.py) scripts each step of an answer: a step
that calls tools sends OpenAI's `tool_calls` fragments (`calls_step`), the
last one text (`text_step`). The tools are the MCP test server's
(mcp_server.py: `lookup` read-only and idempotent, `note` plain,
`delete_item` destructive, so approved first) and a client tool,
`pick_color` (CLIENT_TOOLS below).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.client import Event, read_sse
from tests.support.model_server import Behavior, ModelServer
from tests.support.processes import wait_for

CLIENT_TOOLS = [
    {
        "name": "pick_color",
        "description": "Ask the user to pick a color.",
        "parameters": {"type": "object", "properties": {"hint": {"type": "string"}}},
    }
]


def fragment(index: int, name: str, arguments: dict[str, Any], call_id: str = "") -> dict:
    """One whole call as OpenAI streams its first fragment: index, id, name, arguments."""
    return {
        "index": index,
        "id": call_id or f"srv_{index}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def calls_step(*calls: tuple[str, dict[str, Any]], **options: Any) -> Behavior:
    """A step that asks for `calls` (name, arguments), all in one delta."""
    fragments = [fragment(i, name, arguments) for i, (name, arguments) in enumerate(calls)]
    return Behavior(script=[("tool_calls", fragments)], finish_reason="tool_calls", **options)


def text_step(*chunks: str, **options: Any) -> Behavior:
    return Behavior(chunks=list(chunks), **options)


def answer_in_steps(model_server: ModelServer, prompt: str, *steps: Behavior) -> Behavior:
    return model_server.behave(prompt, steps=list(steps))


def sse_until(web: str, session_id: str, message_id: str, **options: Any) -> list[Event]:
    """The session's SSE events from its start, until the message's final event."""
    return read_sse(web, session_id, until_message=message_id, **options).events


def wait_for_event(
    http: httpx.Client, session_id: str, event: str, timeout: float = 30, **data: Any
) -> Event:
    """The first event of that kind (with that data) in the session's stream, once there is one."""

    def found() -> Event | None:
        from tests.support.client import stream_events

        for item in stream_events(http, session_id):
            if item.event == event and all(item.data.get(k) == v for k, v in data.items()):
                return item
        return None

    return wait_for(found, timeout=timeout, interval=0.05, what=f"a {event} event")  # type: ignore[return-value]


def decide(
    http: httpx.Client, session_id: str, message_id: str, call_id: str, approved: bool
) -> httpx.Response:
    path = f"/api/sessions/{session_id}/messages/{message_id}/tools/{call_id}/approval"
    return http.post(path, json={"approved": approved})


def step_requests(model_server: ModelServer, prompt: str, step: int) -> list[dict[str, Any]]:
    """The request bodies the model server got for step `step` of the answer to `prompt`."""
    bodies = []
    for call in model_server.calls_for(prompt):
        messages = call.body["messages"]
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        after = messages[users[-1] + 1 :]
        if sum(1 for m in after if m.get("role") == "assistant") == step:
            bodies.append(call.body)
    return bodies
