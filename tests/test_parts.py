"""An answer's parts folded from its events (webapp/storage/parts.py), as API.md's Stored section shapes them."""

from __future__ import annotations

from webapp.storage import events
from webapp.storage.parts import Parts


def fold(*pairs: tuple[str, dict]) -> Parts:
    parts = Parts()
    for event, data in pairs:
        parts.apply(event, {"message_id": "m", **data})
    return parts


def call(step: int, call_id: str, **extra: object) -> tuple[str, dict]:
    data = {"step": step, "call_id": call_id, "name": "sum", "arguments": {"a": 1}}
    return events.TOOL_CALL, {"runs_on": "server", "approval_id": None, **data, **extra}


def test_an_answer_without_tools_is_one_step_of_reasoning_then_text() -> None:
    parts = fold(
        (events.START, {"from_step": 0}),
        (events.REASONING, {"text": "Hm", "step": 0}),
        (events.REASONING, {"text": "m.", "step": 0}),
        (events.CHUNK, {"text": "Hello", "step": 0}),
        (events.CHUNK, {"text": "!", "step": 0}),
    )
    assert parts.items == [
        {"type": "reasoning", "step": 0, "text": "Hmm."},
        {"type": "text", "step": 0, "text": "Hello!"},
    ]
    assert (parts.content, parts.reasoning, parts.steps) == ("Hello!", "Hmm.", 1)
    assert Parts.of_texts("Hello!", "Hmm.").items == parts.items


def test_tool_calls_split_the_runs_of_text_and_take_their_results() -> None:
    parts = fold(
        (events.CHUNK, {"text": "Let me add.", "step": 0}),
        call(0, "c1"),
        call(0, "c2", approval_id="c2"),
        call(0, "c3", runs_on="client"),
        (events.TOOL_RESULT, {"step": 0, "call_id": "c1", "status": "ok", "output": 3}),
        (events.CHUNK, {"text": "It is 3.", "step": 1}),
    )
    kinds = [(p["type"], p["step"], p.get("status")) for p in parts.items]
    assert kinds == [
        ("text", 0, None),
        ("tool", 0, "ok"),
        ("tool", 0, "waiting_approval"),
        ("tool", 0, "waiting_output"),
        ("text", 1, None),
    ]
    assert parts.items[1]["output"] == 3 and parts.items[1]["error"] is None
    assert parts.content == "Let me add.It is 3." and parts.steps == 2


def test_a_start_from_a_step_drops_that_step_on_and_keeps_the_earlier_ones() -> None:
    parts = fold(
        (events.CHUNK, {"text": "kept", "step": 0}),
        call(0, "c1"),
        (events.CHUNK, {"text": "half of step 1", "step": 1}),
        (events.START, {"from_step": 1, "attempt": 2}),
        (events.CHUNK, {"text": "step 1 again", "step": 1}),
    )
    assert [p.get("text", p.get("call_id")) for p in parts.items] == ["kept", "c1", "step 1 again"]
    assert fold((events.CHUNK, {"text": "x", "step": 0}), (events.START, {})).items == []
