"""A tool answer whose attempt restarts from a later step, followed by each client (issue 24).

The answer has two steps: step 0 reasons, says a sentence and calls a tool
of the app's; step 1 reasons and answers in numbered words. The worker is
SIGKILLed at one of two points, and a new worker takes the job over as
attempt 2 (API.md, Tools: Exactly once):
- "step 1": after step 0's tool (`double`) finished, while step 1 streams
  (the model holds it after two words). Attempt 2's `start` says
  `from_step` 1 and streams step 1 again; step 0 is kept.
- "tool": while step 0's tool (`sleepy`, not idempotent) runs. Attempt 2's
  `start` says `from_step` 0 and sends step 0 again as it was recorded
  (the model is not asked again), the call `in_doubt`, then step 1.

Each client (the JS one under Node, over
SSE and long-poll; the Python one, sync and asyncio) follows the answer
live from the first event, and must end with exactly the parts relay
stored: same order, texts and tool results, nothing twice, nothing missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from typing import Any

import pytest
from relay_client import AsyncClient, Client, Event, Policy

from tests.support.js_client import Follower, id_key
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
STEP_0_TEXT = "Let me work it out. "
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


KILLED_DURING = ["step 1", "tool"]


class StepRestart:
    """A private stack's two-step tool answer: step 0 held until released, step 1 held
    after two words until the worker is killed (`during` step 1 or step 0's tool) and
    replaced."""

    def __init__(self, private_stack, model_server: ModelServer, prompt: str, during: str):
        self.prompt, self.during = prompt, during
        tool, self.from_step = ("double", 1) if during == "step 1" else ("sleepy", 0)
        self.result = ("ok", 42) if tool == "double" else ("in_doubt", None)
        self.stack = private_stack(**ENV)
        self.web = self.stack.web()
        self.worker = self.stack.worker()
        thinking = REASONING_FIELDS[0]
        self.first = Behavior(
            script=[
                (thinking, "Twice 21. "),
                ("content", STEP_0_TEXT),
                ("tool_calls", [fragment(0, tool, {"n": 21} if tool == "double" else {})]),
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
        if self.during == "tool":
            return STEP_0_TEXT
        return STEP_0_TEXT + "".join(STEP_1_WORDS[:SHOWN_BEFORE_KILL])

    def time_to_kill(self, seen: list[Event]) -> bool:
        """The client has applied what attempt 1 shows before the kill (its last event)."""
        if any(e.event == "start" and e.data["attempt"] > 1 for e in seen):
            return False
        if self.during == "tool":
            return seen[-1].event == "tool_call"
        return seen[-1].event == "chunk" and step_1_words(seen) == SHOWN_BEFORE_KILL

    def kill_and_replace(self) -> None:
        """SIGKILL the worker; a new one goes on as attempt 2."""
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
        assert (parts[2]["status"], parts[2]["output"]) == self.result
        assert len(step_requests(model_server, self.prompt, 0)) == 1
        return parts


def as_stored(part: dict[str, Any]) -> dict[str, Any]:
    """A client's part, with the fields relay stores (all of them must be there)."""
    return {field: part[field] for field in STORED_FIELDS[part["type"]]}


def starts(events: list[Event]) -> list[tuple[int, int]]:
    return [(e.data["attempt"], e.data["from_step"]) for e in events if e.event == "start"]


def check_events(restart: StepRestart, answer: Any, snapshot_cursor: str, seen: list[Event]):
    """Each event of the answer after its snapshot yielded once, in the stream's order, and
    none missing; the new attempt's `start` among them."""
    stream = sse_until(restart.web, answer.session_id, answer.message_id, timeout=30)
    ours = [e for e in stream if e.data.get("message_id") == answer.message_id]
    assert [e.id for e in seen] == [e.id for e in ours if id_key(e.id) > id_key(snapshot_cursor)]
    assert starts(ours) == [(1, 0), (2, restart.from_step)]
    assert starts(seen)[-1] == (2, restart.from_step)


def follow_from_snapshot(answer: Any, restart: StepRestart) -> list[str]:
    """Step 0 goes once the answer has read its snapshot, so that every part comes as
    events (attempt 1's `start` may come before: it is not held). The snapshot's cursor
    is recorded in the list returned."""
    cursors: list[str] = []
    load_snapshot = answer.load_snapshot

    def recorded(snapshot: dict[str, Any]) -> bool:
        cursors.append(snapshot["cursor"])
        return load_snapshot(snapshot)

    answer.load_snapshot = recorded

    def release() -> None:
        wait_for(lambda: answer.loaded, timeout=30, what="the answer's snapshot")
        restart.first.gate.set()

    threading.Thread(target=release, daemon=True).start()
    return cursors


def as_applied(answer: Any) -> list[dict[str, Any]]:
    """The answer's parts as events made them: read when `end` is yielded, before the
    client would reload a stored answer that disagrees with `end` (and so hide a bug)."""
    assert answer.end is not None and not answer.incomplete, "`end` disagreed with the parts"
    return [dataclasses.asdict(p) for p in answer.parts]


def step_1_words(events: list[Event]) -> int:
    return sum(1 for e in events if e.event == "chunk" and e.data["step"] == 1)


@pytest.mark.parametrize("during", KILLED_DURING)
def test_python_sync_ends_with_exactly_the_stored_parts(
    private_stack, model_server: ModelServer, unique: str, during: str
) -> None:
    restart = StepRestart(private_stack, model_server, f"steps sync {during} {unique}", during)
    with Client(restart.web, policy=POLICY) as relay:
        session_id = relay.create_session()
        answer = relay.send(session_id, restart.prompt)
        cursors = follow_from_snapshot(answer, restart)
        events, seen = iter(answer), []
        for event in events:
            seen.append(event)
            if restart.time_to_kill(seen):
                break
        assert answer.content == restart.shown_before_kill
        assert [part.status for part in answer.tool_calls] == [
            "running" if during == "tool" else "ok"
        ]
        restart.kill_and_replace()
        for event in events:
            seen.append(event)
            if event.event == "end":
                applied = as_applied(answer)
    assert (answer.status, answer.attempt) == ("done", 2)
    check_events(restart, answer, cursors[0], seen)
    restart.check(model_server, answer.message_id, applied)


@pytest.mark.parametrize("during", KILLED_DURING)
def test_python_async_ends_with_exactly_the_stored_parts(
    private_stack, model_server: ModelServer, unique: str, during: str
) -> None:
    restart = StepRestart(private_stack, model_server, f"steps async {during} {unique}", during)

    async def follow() -> tuple[Any, list[Event], list[dict[str, Any]], list[str]]:
        async with AsyncClient(restart.web, policy=POLICY) as relay:
            session_id = await relay.create_session()
            answer = await relay.send(session_id, restart.prompt)
            cursors = follow_from_snapshot(answer, restart)
            seen: list[Event] = []
            async for event in answer:
                seen.append(event)
                if restart.time_to_kill(seen):
                    assert answer.content == restart.shown_before_kill
                    await asyncio.to_thread(restart.kill_and_replace)
                elif event.event == "end":
                    applied = as_applied(answer)
            return answer, seen, applied, cursors

    answer, seen, applied, cursors = asyncio.run(follow())
    assert (answer.status, answer.attempt) == ("done", 2)
    check_events(restart, answer, cursors[0], seen)
    restart.check(model_server, answer.message_id, applied)


@pytest.mark.usefixtures("js_harness")
@pytest.mark.parametrize(
    ("transport", "during"), [("fetch", "step 1"), ("poll", "step 1"), ("fetch", "tool")]
)
def test_js_ends_with_exactly_the_stored_parts(
    private_stack, model_server: ModelServer, unique: str, transport: str, during: str
) -> None:
    prompt = f"steps js {transport} {during} {unique}"
    restart = StepRestart(private_stack, model_server, prompt, during)
    # The client opens the session and sends the prompt itself: it sees every event.
    follower = Follower(restart.web, prompt=restart.prompt, transport=transport, fallback=False)
    follower.wait_for_line("sent")
    restart.first.gate.set()
    if during == "tool":
        follower.wait_for_line("event", event="tool_call")
    else:
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
        (2, restart.from_step),
    ]
    restart.check(model_server, message_id, message["parts"])
    for text in result.texts(message_id):
        assert message["content"].startswith(text), f"the client showed {text!r}"
