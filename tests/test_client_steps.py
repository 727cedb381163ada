"""A tool answer whose attempt restarts from a later step, followed by each client (issue 24).

The answer has two steps: step 0 reasons, says a sentence and calls the
app's `double` tool; step 1 reasons and answers in numbered words. The
worker is SIGKILLed after step 0's tool finished, while step 1 streams
(the model holds it after two words); a new worker takes the job over as
attempt 2, whose `start` says `from_step` 1 and streams step 1 again
(API.md, Tools: Exactly once). Each client (the JS one under Node, over
SSE and long-poll; the Python one, sync and asyncio) follows the answer
live from the first event, and must end with exactly the parts relay
stored: same order, texts and tool results, nothing twice, nothing missing.

Then an answer that waits twice (an approval, then a client tool's output):
each client, and RelayChatTransport as useChat drives it, gives the inputs
and follows the same answer on to its end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from typing import Any

import httpx
import pytest
from relay_client import AsyncClient, Client, Event, Policy

from tests.support.client import create_session
from tests.support.js_client import Follower, node
from tests.support.model_server import REASONING_FIELDS, Behavior, ModelServer
from tests.support.processes import wait_for
from tests.support.sql import answer_rows
from tests.support.tool_answers import answer_in_steps, fragment, sse_until, step_requests
from tests.test_js_client import js_harness  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ENV = {
    "TOOLS_MODULE": "tests.support.app_tools",
    "JOB_LEASE_SECONDS": "1.5",  # a new worker takes the lost job over soon
    "SSE_RETRY_MS": "20",
}
POLICY = Policy(seed=23, backoff_seconds=0.05, reconnect_seconds=0.05)
STEP_0_TEXT = "I'll double it. "
STEP_1_WORDS = [f"part{i} " for i in range(6)]
SHOWN_BEFORE_KILL = 2  # words of step 1 that attempt 1 streams
# What a stored part holds (API.md, Stored); a client's part may hold more.
STORED_FIELDS = {
    "text": ("type", "step", "text"),
    "reasoning": ("type", "step", "text"),
    "tool": (
        "type",
        "step",
        "call_id",
        "name",
        "arguments",
        "runs_on",
        "status",
        "output",
        "error",
    ),
}


class StepRestart:
    """A private stack's two-step tool answer: step 0 held until released, step 1 held
    after two words until the worker is killed and replaced."""

    def __init__(self, private_stack, model_server: ModelServer, prompt: str) -> None:
        self.prompt = prompt
        self.stack = private_stack(**ENV)
        self.web = self.stack.web()
        self.worker = self.stack.worker()
        thinking = REASONING_FIELDS[0]
        self.first = Behavior(
            script=[
                (thinking, "Twice 21. "),
                ("content", STEP_0_TEXT),
                ("tool_calls", [fragment(0, "double", {"n": 21})]),
            ],
            finish_reason="tool_calls",
            gate_after=0,
            delay_seconds=0.002,
        )
        self.second = Behavior(
            script=[(thinking, "It gave "), (thinking, "42. ")]
            + [("content", word) for word in STEP_1_WORDS],
            gate_after=2 + SHOWN_BEFORE_KILL,
            delay_seconds=0.002,
        )
        answer_in_steps(model_server, prompt, self.first, self.second)

    @property
    def shown_before_kill(self) -> str:
        return STEP_0_TEXT + "".join(STEP_1_WORDS[:SHOWN_BEFORE_KILL])

    def kill_and_replace(self) -> None:
        """SIGKILL the worker during step 1; a new one goes on as attempt 2 from step 1."""
        self.worker.kill()
        self.second.gate.set()
        self.stack.worker()

    def check(self, model_server: ModelServer, message_id: str, parts: list[dict[str, Any]]):
        """`parts` (a client's) are exactly those stored in SQL, which are as expected."""
        assert [as_stored(p) for p in parts] == self.stored_parts(model_server, message_id)

    def stored_parts(self, model_server: ModelServer, message_id: str) -> list[dict[str, Any]]:
        """The answer's parts in SQL; step 0 was asked of the model once."""
        (row,) = answer_rows(self.stack.app, message_id)
        assert (row.status, row.attempt) == ("done", 2)
        assert row.content == STEP_0_TEXT + "".join(STEP_1_WORDS)
        parts = json.loads(row.parts)
        assert [(p["type"], p["step"]) for p in parts] == [
            ("reasoning", 0),
            ("text", 0),
            ("tool", 0),
            ("reasoning", 1),
            ("text", 1),
        ]
        assert (parts[2]["status"], parts[2]["output"]) == ("ok", 42)
        assert len(step_requests(model_server, self.prompt, 0)) == 1
        return parts


def as_stored(part: dict[str, Any]) -> dict[str, Any]:
    """A client's part, with the fields relay stores (all of them must be there)."""
    return {field: part[field] for field in STORED_FIELDS[part["type"]]}


def starts(events: list[Event]) -> list[tuple[int, int]]:
    return [(e.data["attempt"], e.data["from_step"]) for e in events if e.event == "start"]


def check_events(restart: StepRestart, session_id: str, message_id: str, seen: list[Event]):
    """Each event of the answer yielded once, in the stream's order, and none missing."""
    stream = sse_until(restart.web, session_id, message_id, timeout=30)
    expected = [e.id for e in stream if e.data.get("message_id") == message_id]
    assert [e.id for e in seen] == expected
    assert starts(seen) == [(1, 0), (2, 1)]


def release_once_loaded(answer: Any, restart: StepRestart) -> None:
    """Step 0 goes once the answer has read its snapshot: every part comes as events."""

    def release() -> None:
        wait_for(lambda: answer.loaded, timeout=30, what="the answer's snapshot")
        restart.first.gate.set()

    threading.Thread(target=release, daemon=True).start()


def as_applied(answer: Any) -> list[dict[str, Any]]:
    """The answer's parts as events made them: read when `end` is yielded, before the
    client would reload a stored answer that disagrees with `end` (and so hide a bug)."""
    assert answer.end is not None and not answer.incomplete, "`end` disagreed with the parts"
    return [dataclasses.asdict(p) for p in answer.parts]


def step_1_words(events: list[Event]) -> int:
    return sum(1 for e in events if e.event == "chunk" and e.data["step"] == 1)


def test_python_sync_ends_with_exactly_the_stored_parts(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    restart = StepRestart(private_stack, model_server, f"steps sync {unique}")
    with Client(restart.web, policy=POLICY) as relay:
        session_id = relay.create_session()
        answer = relay.send(session_id, restart.prompt)
        release_once_loaded(answer, restart)
        events, seen = iter(answer), []
        for event in events:
            seen.append(event)
            if step_1_words(seen) == SHOWN_BEFORE_KILL:
                break
        assert answer.content == restart.shown_before_kill
        assert [part.status for part in answer.tool_calls] == ["ok"]
        restart.kill_and_replace()
        for event in events:
            seen.append(event)
            if event.event == "end":
                applied = as_applied(answer)
    assert (answer.status, answer.attempt) == ("done", 2)
    check_events(restart, session_id, answer.message_id, seen)
    restart.check(model_server, answer.message_id, applied)


def test_python_async_ends_with_exactly_the_stored_parts(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    restart = StepRestart(private_stack, model_server, f"steps async {unique}")

    async def follow() -> tuple[str, Any, list[Event], list[dict[str, Any]]]:
        async with AsyncClient(restart.web, policy=POLICY) as relay:
            session_id = await relay.create_session()
            answer = await relay.send(session_id, restart.prompt)
            release_once_loaded(answer, restart)
            seen: list[Event] = []
            async for event in answer:
                seen.append(event)
                if event.event == "chunk" and step_1_words(seen) == SHOWN_BEFORE_KILL:
                    assert answer.content == restart.shown_before_kill
                    await asyncio.to_thread(restart.kill_and_replace)
                elif event.event == "end":
                    applied = as_applied(answer)
            return session_id, answer, seen, applied

    session_id, answer, seen, applied = asyncio.run(follow())
    assert (answer.status, answer.attempt) == ("done", 2)
    check_events(restart, session_id, answer.message_id, seen)
    restart.check(model_server, answer.message_id, applied)


@pytest.mark.usefixtures("js_harness")
@pytest.mark.parametrize("transport", ["fetch", "poll"])
def test_js_ends_with_exactly_the_stored_parts(
    private_stack, model_server: ModelServer, unique: str, transport: str
) -> None:
    restart = StepRestart(private_stack, model_server, f"steps js {transport} {unique}")
    # The client opens the session and sends the prompt itself: it sees every event.
    follower = Follower(restart.web, prompt=restart.prompt, transport=transport, fallback=False)
    follower.wait_for_line("sent")
    restart.first.gate.set()
    follower.wait_for_line("text", text=restart.shown_before_kill)
    restart.kill_and_replace()
    result = follower.result()
    message = result.message
    session_id, message_id = result.report["sessionId"], message["id"]
    # Shown from events alone: no snapshot but the first, no repair of a wrong answer.
    assert [e["kind"] for e in result.report["log"] if e["kind"] == "snapshot"] == ["snapshot"]
    assert result.stats["repairs"] == 0, "an end's counts did not match: the snapshot repaired it"
    assert (message["status"], message["attempt"]) == ("done", 2)
    applied = result.applied(message_id)
    stream = sse_until(restart.web, session_id, message_id, timeout=30)
    assert [e["id"] for e in applied] == [
        e.id for e in stream if e.data.get("message_id") == message_id
    ]
    assert [(e["attempt"], e["fromStep"]) for e in applied if e["event"] == "start"] == [
        (1, 0),
        (2, 1),
    ]
    restart.check(model_server, message_id, message["parts"])
    for text in result.texts(message_id):
        assert message["content"].startswith(text), f"the client showed {text!r}"


# -- an answer that waits, followed again once its input is given ---------------------


def waits_twice(private_stack, model_server: ModelServer, prompt: str) -> str:
    """A stack whose answer to `prompt` waits for an approval (`pay`), then for a client
    tool's output (`pick_color`), then says two words."""
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
    return web


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
    prompt = f"wait twice sync {unique}"
    with Client(waits_twice(private_stack, model_server, prompt), policy=POLICY) as relay:
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
    prompt = f"wait twice async {unique}"
    web = waits_twice(private_stack, model_server, prompt)

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
    prompt = f"wait twice js {unique}"
    web = waits_twice(private_stack, model_server, prompt)
    inputs = {"approved": True, "output": {"color": "blue"}}
    result = Follower(web, prompt=prompt, inputs=inputs).result()
    message = result.message
    assert (message["status"], message["content"], result.report["waits"]) == (
        "done",
        "Paid, blue.",
        2,
    )
    with httpx.Client(base_url=web, timeout=30) as http:
        snapshot = http.get(f"/api/sessions/{result.report['sessionId']}").json()
    check_waited_twice(message["parts"], snapshot)


@pytest.mark.usefixtures("js_harness")
def test_relay_chat_transport_streams_the_rest_of_the_answer_after_each_input(
    private_stack, model_server: ModelServer, unique: str
) -> None:
    prompt = f"wait twice ai sdk {unique}"
    web = waits_twice(private_stack, model_server, prompt)
    with httpx.Client(base_url=web, timeout=30) as http:
        session_id = create_session(http)
        args = {"baseUrl": web, "sessionId": session_id, "prompt": prompt}
        turns = json.loads(node("tool-chat.mjs", json.dumps({**args, "output": {"color": "blue"}})))
        snapshot = http.get(f"/api/sessions/{session_id}").json()
    check_waited_twice(snapshot["messages"][-1]["parts"], snapshot)
    turns = turns["turns"]
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
