"""Tool calls, steps and waiting in the AI SDK's stream (webapp/http/ui_stream.py, ui_tools.py).

The unit tests pin each event shape's chunks with canned entries. The tests
that take `ai_sdk` serve those chunks from a small local server
(tests/support/canned_chat.py) to the real `ai` package: `readUIMessageStream`
must accept every chunk, and the SDK's own chat (`AbstractChat`, what
`useChat` wraps) must approve, deny and give client outputs through them,
posting the bodies that relay then parses (chat_request.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.ai_sdk import AiSdk
from tests.support.canned_chat import Routes, serve, wire
from webapp.http.chat_request import CONTINUE, ChatRequest, ToolInput, parse_chat_request
from webapp.http.ui_messages import ui_messages
from webapp.http.ui_stream import Phase, UIMessageStream
from webapp.http.ui_tools import IN_DOUBT_TEXT, NOT_JSON_TEXT, Given
from webapp.storage import events

MID = "msg_tools_1"
SID = "sess_tools_abcdefgh"


def start(attempt: int = 1, from_step: int = 0) -> tuple[str, dict]:
    data = {"message_id": MID, "model": "m", "attempt": attempt, "cached": False}
    return events.START, {**data, "from_step": from_step}


def chunk(text: str, step: int = 0) -> tuple[str, dict]:
    return events.CHUNK, {"message_id": MID, "text": text, "step": step}


def reasoning(text: str, step: int = 0) -> tuple[str, dict]:
    return events.REASONING, {"message_id": MID, "text": text, "step": step}


def call(
    call_id: str,
    name: str = "add",
    arguments: Any = None,
    *,
    step: int = 0,
    runs_on: str = "server",
    approval_id: str | None = None,
) -> tuple[str, dict]:
    return events.TOOL_CALL, {
        "message_id": MID,
        "step": step,
        "call_id": call_id,
        "name": name,
        "arguments": {"a": 2, "b": 3} if arguments is None else arguments,
        "runs_on": runs_on,
        "approval_id": approval_id,
    }


def result(
    call_id: str, status: str = "ok", output: Any = None, error: str | None = None, step: int = 0
) -> tuple[str, dict]:
    data = {"call_id": call_id, "status": status, "output": output, "error": error}
    return events.TOOL_RESULT, {"message_id": MID, "step": step, **data}


def waiting(*waits: tuple[str, str]) -> tuple[str, dict]:
    return events.WAITING, {"message_id": MID, "for": [{"call_id": c, "kind": k} for c, k in waits]}


def end(reason: str = "stop", steps: int = 1, tool_calls: int = 0) -> tuple[str, dict]:
    data = {"message_id": MID, "finish_reason": reason, "usage": None}
    return events.END, {**data, "steps": steps, "tool_calls": tool_calls}


def mapped(*evs: tuple[str, dict], ui: UIMessageStream | None = None) -> list[dict]:
    ui = ui or UIMessageStream(MID)
    return [c for event, data in evs for c in ui.feed(event, data)]


def types(chunks: list[dict]) -> list[str]:
    return [c["type"] for c in chunks]


OPEN = [{"type": "start", "messageId": MID}, {"type": "start-step"}]
SERVER = {"providerExecuted": True}
# A step's text, its reasoning then text (each one part), and a call whose decision is known.
TEXT = ["text-start", "text-delta", "text-end"]
REASONED_TEXT = ["reasoning-start", "reasoning-delta", "reasoning-end", *TEXT]
DECIDED_CALL = [
    "tool-input-start",
    "tool-input-available",
    "tool-approval-request",
    "tool-approval-response",
]


# --- each event shape ---------------------------------------------------------------


def test_an_answer_without_tools_streams_as_before_tools() -> None:
    legacy = [
        (events.START, {"message_id": MID, "model": "m", "attempt": 1, "cached": False}),
        (events.REASONING, {"message_id": MID, "text": "Hm."}),
        (events.CHUNK, {"message_id": MID, "text": "Hi"}),
        (events.END, {"message_id": MID, "finish_reason": "stop", "usage": None}),
    ]
    assert mapped(start(), reasoning("Hm."), chunk("Hi"), end()) == mapped(*legacy)
    assert types(mapped(*legacy)) == [*types(OPEN), *REASONED_TEXT, "finish-step", "finish"]


def test_a_server_call_and_its_result() -> None:
    chunks = mapped(start(), call("c1"), result("c1", output=5))
    assert chunks == [
        *OPEN,
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "add", **SERVER},
        {
            "type": "tool-input-available",
            "toolCallId": "c1",
            "toolName": "add",
            **SERVER,
            "input": {"a": 2, "b": 3},
        },
        {"type": "tool-output-available", "toolCallId": "c1", "output": 5},
    ]


def test_a_client_call_is_not_provider_executed_so_on_tool_call_runs_it() -> None:
    chunks = mapped(start(), call("c1", "pick_color", {}, runs_on="client"))
    assert chunks[2:] == [
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "pick_color"},
        {"type": "tool-input-available", "toolCallId": "c1", "toolName": "pick_color", "input": {}},
    ]


def test_a_call_that_needs_approval_sends_its_request() -> None:
    chunks = mapped(start(), call("c1", "refund", {"order": 7}, approval_id="ap_1"))
    assert chunks[-1] == {"type": "tool-approval-request", "approvalId": "ap_1", "toolCallId": "c1"}


def test_arguments_that_are_not_json_are_an_input_error() -> None:
    chunks = mapped(start(), call("c1", arguments='{"a": 2,'), result("c1", "error", error="cut"))
    assert chunks[2:] == [
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "add", **SERVER},
        {
            "type": "tool-input-error",
            "toolCallId": "c1",
            "toolName": "add",
            **SERVER,
            "input": '{"a": 2,',
            "errorText": NOT_JSON_TEXT,
        },
        {"type": "tool-output-error", "toolCallId": "c1", "errorText": "cut"},
    ]


@pytest.mark.parametrize(
    ("status", "error", "last"),
    [
        (
            "error",
            "the order is closed",
            {"type": "tool-output-error", "errorText": "the order is closed"},
        ),
        ("error", None, {"type": "tool-output-error", "errorText": "The tool failed."}),
        ("in_doubt", None, {"type": "tool-output-error", "errorText": IN_DOUBT_TEXT}),
    ],
)
def test_failed_and_in_doubt_results_are_output_errors(status: str, error: Any, last: dict) -> None:
    chunks = mapped(start(), call("c1"), result("c1", status, error=error))
    assert chunks[-1] == {**last, "toolCallId": "c1"}
    assert IN_DOUBT_TEXT.startswith("in_doubt: ")


def test_a_decided_call_answers_its_request_before_its_result() -> None:
    approved = mapped(start(), call("c1", approval_id="ap"), result("c1", output=1))
    assert approved[-2:] == [
        {"type": "tool-approval-response", "approvalId": "ap", "approved": True},
        {"type": "tool-output-available", "toolCallId": "c1", "output": 1},
    ]
    denied = mapped(start(), call("c1", approval_id="ap"), result("c1", "denied", error="no"))
    assert denied[-2:] == [
        {"type": "tool-approval-response", "approvalId": "ap", "approved": False, "reason": "no"},
        {"type": "tool-output-denied", "toolCallId": "c1"},
    ]


def test_each_step_is_framed_and_closes_its_part() -> None:
    chunks = mapped(
        start(),
        chunk("Adding.", 0),
        call("c1"),
        result("c1", output=5),
        reasoning("So 5.", 1),
        chunk("It is 5.", 1),
        end(steps=2, tool_calls=1),
    )
    assert types(chunks) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        *REASONED_TEXT,
        "finish-step",
        "finish",
    ]


def test_waiting_ends_the_response_as_pending_tool_calls_do() -> None:
    ui = UIMessageStream(MID)
    chunks = mapped(start(), chunk("Shall I?"), call("c1", approval_id="ap"), ui=ui)
    assert ui.feed(*waiting(("c1", "approval"))) == [
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "tool-calls"},
    ]
    assert ui.finished and "abort" not in types(chunks)
    assert ui.feed(*start(2)) == ui.feed(*result("c1")) == []


# --- new attempts and continuations ----------------------------------------------------


def test_a_new_attempt_from_the_shown_step_resets_only_that_step() -> None:
    ui = UIMessageStream(MID)
    mapped(start(), chunk("A", 0), call("c1"), result("c1"), chunk("lost", 1), ui=ui)
    assert ui.feed(*start(2, from_step=1)) == [{"type": "reset-step"}]
    # The step goes on in place: no new start-step for it.
    assert types(ui.feed(*chunk("kept", 1))) == ["text-start", "text-delta"]


def test_a_new_attempt_from_a_later_step_drops_nothing() -> None:
    ui = UIMessageStream(MID)
    mapped(start(), call("c1"), ui=ui)
    assert ui.feed(*start(2, from_step=1)) == []
    assert types(ui.feed(*chunk("Next", 1))) == [
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
    ]


def test_a_step_sent_again_after_a_lost_worker_does_not_run_a_client_tool_twice() -> None:
    """A re-sent call whose input is known shows that input, not a call to run again."""
    given = {
        "c1": Given("output", {"output": {"color": "red"}}),
        "c2": Given("approval", {"approved": True, "reason": None}),
    }
    ui = UIMessageStream(MID, given=given)
    ui.feed(*start())
    chunks = mapped(
        call("c1", "pick_color", {"for": "car"}, runs_on="client"),
        call("c2", "refund", approval_id="ap"),
        ui=ui,
    )
    assert "tool-input-available" not in types(chunks[:3])  # onToolCall does not run c1
    assert chunks[:3] == [
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "pick_color"},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"for": "car"}'},
        {"type": "tool-output-available", "toolCallId": "c1", "output": {"color": "red"}},
    ]
    assert chunks[-2:] == [
        {"type": "tool-approval-request", "approvalId": "ap", "toolCallId": "c2"},
        {"type": "tool-approval-response", "approvalId": "ap", "approved": True},
    ]
    # Its result then needs no second response.
    assert ui.feed(*result("c2", output="done")) == [
        {"type": "tool-output-available", "toolCallId": "c2", "output": "done"}
    ]


def continuation(**given: Given) -> UIMessageStream:
    return UIMessageStream(MID, given=given, shown_step=0, resume_attempt=2)


def test_a_continuation_skips_the_paused_attempts_entries_until_its_attempt_starts() -> None:
    ui = continuation(c1=Given("approval", {"approved": True}))
    assert ui.phase is Phase.AWAITING
    assert mapped(chunk("old"), call("c1"), waiting(("c1", "approval")), start(1), ui=ui) == []
    assert ui.feed(*start(2, from_step=0)) == [{"type": "start", "messageId": MID}]
    # The step the client shows whole is sent again: skipped, only its results are new.
    resent = mapped(chunk("Shall I?"), call("c1", approval_id="ap"), ui=ui)
    assert resent == [] and ui.phase is Phase.REPLAYED
    assert ui.feed(*result("c1", output="refunded")) == [
        {"type": "tool-output-available", "toolCallId": "c1", "output": "refunded"}
    ]
    assert types(mapped(chunk("Done.", 1), end(steps=2, tool_calls=1), ui=ui)) == [
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]


def test_a_continuation_cancelled_before_its_attempt_starts_aborts() -> None:
    ui = continuation()
    assert mapped(waiting(("c1", "approval")), end("cancelled"), ui=ui) == [
        {"type": "start", "messageId": MID},
        {"type": "abort"},
    ]


def test_a_continuation_whose_attempt_is_lost_resets_the_step_and_shows_it_again() -> None:
    ui = continuation(c1=Given("approval", {"approved": False, "reason": "no"}))
    mapped(start(2), chunk("Shall I?"), call("c1", approval_id="ap"), ui=ui)
    chunks = mapped(start(3), chunk("Shall I?"), call("c1", approval_id="ap"), ui=ui)
    assert types(chunks) == ["reset-step", *TEXT, *DECIDED_CALL]
    assert chunks[-1]["approved"] is False and chunks[-1]["reason"] == "no"


def test_a_result_for_a_call_the_client_does_not_show_is_skipped() -> None:
    ui = UIMessageStream(MID)
    assert mapped(start(), result("ghost"), ui=ui) == OPEN


# --- catching up from a snapshot ------------------------------------------------------


def tool_part(call_id: str, status: str, step: int = 0, **fields: Any) -> dict:
    part = {
        "type": "tool",
        "step": step,
        "call_id": call_id,
        "name": "add",
        "arguments": {"a": 2, "b": 3},
        "runs_on": "server",
        "status": status,
        "output": None,
        "error": None,
    }
    return {**part, **fields}


ALL_STATUSES = [
    {"type": "reasoning", "step": 0, "text": "Let me add."},
    {"type": "text", "step": 0, "text": "Adding."},
    tool_part("ok1", "ok", output=5),
    tool_part("err1", "error", error="boom"),
    tool_part("bad1", "error", arguments="{oops", error="not JSON"),
    tool_part("doubt1", "in_doubt"),
    tool_part("deny1", "denied", error="too much"),
    tool_part("cli1", "ok", runs_on="client", name="pick_color", output={"color": "red"}),
    {"type": "text", "step": 1, "text": "It is 5."},
]


def snapshot_answer(parts: list[dict], status: str = "done", **fields: Any) -> dict:
    content = "".join(p["text"] for p in parts if p["type"] == "text")
    message = {"id": MID, "role": "assistant", "content": content, "status": status}
    return {**message, "reasoning": "", "parts": parts, "finish_reason": "stop", **fields}


def test_catch_up_replays_every_step_and_result() -> None:
    chunks = UIMessageStream(MID).catch_up(snapshot_answer(ALL_STATUSES))
    assert types(chunks).count("start-step") == 2
    assert {c["type"] for c in chunks} >= {
        "tool-input-error",
        "tool-output-available",
        "tool-output-error",
        "tool-output-denied",
        "tool-approval-response",
    }
    # The client call settled already: shown with its input as a delta, never to run again.
    client = [c for c in chunks if c.get("toolCallId") == "cli1"]
    assert types(client) == ["tool-input-start", "tool-input-delta", "tool-output-available"]
    assert chunks[-2:] == [{"type": "finish-step"}, {"type": "finish", "finishReason": "stop"}]


def test_catch_up_of_a_waiting_answer_ends_as_waiting_did() -> None:
    parts = [{"type": "text", "step": 0, "text": "Shall I?"}, tool_part("c1", "waiting_approval")]
    chunks = UIMessageStream(MID).catch_up(snapshot_answer(parts, "waiting"))
    assert chunks[-3:] == [
        {"type": "tool-approval-request", "approvalId": "c1", "toolCallId": "c1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "tool-calls"},
    ]


def test_a_continuation_that_is_not_due_shows_its_step_again_from_the_snapshot() -> None:
    """The answer went on already (or waits for another input): its last step again."""
    parts = [
        {"type": "text", "step": 0, "text": "Shall I?"},
        tool_part("c1", "ok", output=1),
        {"type": "text", "step": 1, "text": "Done"},
    ]
    ui = UIMessageStream(MID, given={"c1": Given("approval", {"approved": True})}, shown_step=0)
    chunks = ui.catch_up(snapshot_answer(parts, "streaming"))
    assert types(chunks) == [
        "start",
        "reset-step",
        *TEXT,
        *DECIDED_CALL,
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
    ]


def test_an_awaiting_continuation_catches_up_only_once_its_answer_goes_on() -> None:
    parts = [tool_part("c1", "waiting_approval")]
    ui = continuation()
    assert ui.catch_up(snapshot_answer(parts, "waiting")) == []
    assert ui.phase is Phase.AWAITING
    assert types(ui.catch_up(snapshot_answer(parts, "streaming")))[:2] == ["start", "reset-step"]


# --- GET /api/chat/{sid}/messages -----------------------------------------------------


def test_messages_give_tool_answers_in_the_protocols_shape() -> None:
    waiting_parts = [
        {"type": "text", "step": 0, "text": "Shall I?"},
        tool_part("a1", "waiting_approval"),
        tool_part("a2", "waiting_approval"),
        tool_part("o1", "waiting_output", runs_on="client", name="pick_color"),
    ]
    messages = [
        {"id": "u1", "role": "user", "content": "Add", "status": "done"},
        snapshot_answer(ALL_STATUSES) | {"id": "a_done"},
        {"id": "u2", "role": "user", "content": "Refund", "status": "done"},
        snapshot_answer(waiting_parts, "waiting") | {"id": "a_wait"},
    ]
    given = {"a2": Given("approval", {"approved": False, "reason": "no"})}
    listed = ui_messages(messages, None, given)  # as if no longer active: its parts
    assert [m["id"] for m in listed] == ["u1", "a_done", "u2", "a_wait"]
    done = listed[1]["parts"]
    assert [p["type"] for p in done].count("step-start") == 2
    states = {p["toolCallId"]: p["state"] for p in done if "toolCallId" in p}
    assert states == {
        "ok1": "output-available",
        "err1": "output-error",
        "bad1": "output-error",
        "doubt1": "output-error",
        "deny1": "output-denied",
        "cli1": "output-available",
    }
    tools = {p["toolCallId"]: p for p in listed[3]["parts"] if "toolCallId" in p}
    assert tools["a1"]["state"] == "approval-requested" and tools["a1"]["approval"] == {"id": "a1"}
    assert tools["a2"]["state"] == "approval-responded"
    assert tools["a2"]["approval"] == {"id": "a2", "approved": False, "reason": "no"}
    assert tools["o1"] == {
        "type": "tool-pick_color",
        "toolCallId": "o1",
        "input": {"a": 2, "b": 3},
        "state": "input-available",
    }


def test_messages_leave_out_the_active_answer_streaming_or_waiting() -> None:
    """API.md: the resume route replays the active answer, so it is never listed twice."""
    streaming = snapshot_answer([tool_part("c1", "running")], "streaming")
    assert ui_messages([streaming], MID) == []
    assert ui_messages([streaming | {"status": "waiting"}], MID) == []
    assert len(ui_messages([streaming | {"status": "waiting"}], None)) == 1


# --- the real AI SDK reads them -------------------------------------------------------


@pytest.fixture()
def server() -> Iterator[tuple[str, Routes]]:
    with serve() as served:
        yield served


def test_sdk_reads_every_tool_shape_and_the_message_validates(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    evs = [
        start(),
        reasoning("Let me add."),
        chunk("Adding."),
        call("ok1"),
        call("err1"),
        call("bad1", arguments="{oops"),
        call("doubt1"),
        call("deny1", "refund", approval_id="ap_deny"),
        call("yes1", "refund", approval_id="ap_yes"),
        result("ok1", output=5),
        result("err1", "error", error="boom"),
        result("bad1", "error", error="not JSON"),
        result("doubt1", "in_doubt"),
        result("deny1", "denied", error="too much"),
        result("yes1", output={"refunded": True}),
        chunk("It is 5.", 1),
        end(steps=2, tool_calls=6),
    ]
    routes.stream("/api/chat", wire(*evs, ui=UIMessageStream(MID)))
    result_ = ai_sdk.chat(f"{base}/api/chat", SID, text="Add")
    assert (result_.status, result_.error) == ("finished", None)
    parts = result_.message["parts"]
    assert [p["type"] for p in parts].count("step-start") == 2
    tools = {p["toolCallId"]: p for p in parts if "toolCallId" in p}
    assert {k: p["state"] for k, p in tools.items()} == {
        "ok1": "output-available",
        "err1": "output-error",
        "bad1": "output-error",
        "doubt1": "output-error",
        "deny1": "output-denied",
        "yes1": "output-available",
    }
    assert tools["bad1"]["input"] == "{oops" and tools["bad1"]["errorText"] == "not JSON"
    assert tools["doubt1"]["errorText"].startswith("in_doubt: ")
    assert tools["deny1"]["approval"] == {"id": "ap_deny", "approved": False, "reason": "too much"}
    assert tools["yes1"]["approval"] == {"id": "ap_yes", "approved": True}
    assert result_.text == "Adding.It is 5."
    assert ai_sdk.validate([result_.message]) is None


def test_sdk_validates_the_listed_messages(ai_sdk: AiSdk) -> None:
    waiting_parts = [
        tool_part("a1", "waiting_approval"),
        tool_part("a2", "waiting_approval"),
        tool_part("o1", "waiting_output", runs_on="client"),
        tool_part("o2", "waiting_output", runs_on="client"),
    ]
    given = {
        "a2": Given("approval", {"approved": True, "reason": "fine"}),
        "o2": Given("output", {"error": "closed the dialog"}),
    }
    messages = [
        {"id": "u1", "role": "user", "content": "Add", "status": "done"},
        snapshot_answer(ALL_STATUSES) | {"id": "a_done"},
        {"id": "u2", "role": "user", "content": "More", "status": "done"},
        snapshot_answer(waiting_parts, "waiting") | {"id": "a_wait"},
    ]
    assert ai_sdk.validate(ui_messages(messages, None, given)) is None


def waits_for_approval(*, reason_ok: bool = True) -> list[tuple[str, dict]]:
    return [
        start(),
        chunk("I can refund order 7."),
        call("c_refund", "refund", {"order": 7}, approval_id="ap_refund"),
        waiting(("c_refund", "approval")),
    ]


def goes_on(*step0_results: tuple[str, dict], attempt: int = 2) -> list[tuple[str, dict]]:
    """The resumed attempt: it sends its step again, then the results and the next step."""
    return [
        waiting(("c_refund", "approval")),  # the paused attempt's, before the cursor moved on
        start(attempt, from_step=0),
        chunk("I can refund order 7."),
        call("c_refund", "refund", {"order": 7}, approval_id="ap_refund"),
        *step0_results,
        chunk("Done.", 1),
        end(steps=2, tool_calls=1),
    ]


@pytest.mark.parametrize(
    ("decide", "step0_result", "state"),
    [
        (
            {"approved": True, "reason": "fine"},
            result("c_refund", output="refunded"),
            "output-available",
        ),
        (
            {"approved": False, "reason": "no"},
            result("c_refund", "denied", error="no"),
            "output-denied",
        ),
    ],
)
def test_sdk_approves_or_denies_and_the_same_answer_goes_on(
    ai_sdk: AiSdk, server, decide: dict, step0_result: tuple[str, dict], state: str
) -> None:
    base, routes = server
    given = {"c_refund": Given("approval", decide)}
    routes.stream(
        "/api/chat",
        wire(*waits_for_approval(), ui=UIMessageStream(MID)),
        wire(*goes_on(step0_result), ui=continuation(**given)),
    )
    chat = ai_sdk.tool_chat(f"{base}/api/chat", SID, text="Refund order 7", decide=decide)
    assert (chat.status, chat.error) == ("ready", None)
    first, resubmit = routes.bodies("/api/chat")
    assert parse_chat_request(resubmit) == ChatRequest(
        SID,
        CONTINUE,
        "",
        MID,
        (
            ToolInput(
                "c_refund",
                "approval",
                (
                    {"approved": decide["approved"], "reason": decide["reason"]},
                    "approved" if decide["approved"] else "denied",
                ),
            ),
        ),
    )
    assert resubmit["trigger"] == "submit-message" and resubmit["messageId"] == MID
    # One answer: the same message, grown by a step; the approval kept on its part.
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]
    assert chat.answer["id"] == MID
    (refund,) = chat.tools()
    assert refund["state"] == state
    assert refund["approval"] == {"id": "ap_refund", **decide}
    assert [p["type"] for p in chat.answer["parts"]].count("step-start") == 2
    assert chat.responses[1]["chunkTypes"][:2] == [
        "start",
        "tool-output-available" if decide["approved"] else "tool-output-denied",
    ]
    assert ai_sdk.validate(chat.messages) is None


def test_sdk_gives_a_client_tools_output_once_and_it_never_runs_again(
    ai_sdk: AiSdk, server
) -> None:
    base, routes = server
    asks = [
        start(),
        call("c_color", "pick_color", {"for": "car"}, runs_on="client"),
        waiting(("c_color", "output")),
    ]
    output = {"color": "red"}
    given = {"c_color": Given("output", {"output": output})}
    resent = call("c_color", "pick_color", {"for": "car"}, runs_on="client")
    went_on = [
        start(2),
        resent,
        result("c_color", output=output),
        start(3),  # a worker lost mid-step: the step is sent again, the call with it
        resent,
        result("c_color", output=output),
        chunk("Red it is.", 1),
        end(steps=2, tool_calls=1),
    ]
    routes.stream(
        "/api/chat",
        wire(*asks, ui=UIMessageStream(MID)),
        wire(*went_on, ui=UIMessageStream(MID, given=given, shown_step=0, resume_attempt=2)),
    )
    chat = ai_sdk.tool_chat(
        f"{base}/api/chat", SID, text="Pick a color", outputs={"pick_color": output}
    )
    assert (chat.status, chat.error) == ("ready", None)
    assert chat.tool_calls == ["c_color"]  # onToolCall ran it once, not again on the re-sent step
    _, resubmit = routes.bodies("/api/chat")
    (given_input,) = parse_chat_request(resubmit).inputs
    assert (given_input.call_id, given_input.kind, given_input.given[0]) == (
        "c_color",
        "output",
        {"output": output},
    )
    (color,) = chat.tools()
    assert (color["state"], color["output"]) == ("output-available", output)
    assert ai_sdk.validate(chat.messages) is None


def test_sdk_gives_a_client_tools_error(ai_sdk: AiSdk, server) -> None:
    base, routes = server
    pick = call("c_color", "pick_color", {}, runs_on="client")
    error = "closed the dialog"
    given = {"c_color": Given("output", {"error": error})}
    went_on = [start(2), pick, result("c_color", "error", error=error), chunk("Ok.", 1), end()]
    routes.stream(
        "/api/chat",
        wire(start(), pick, waiting(("c_color", "output")), ui=UIMessageStream(MID)),
        wire(*went_on, ui=UIMessageStream(MID, given=given, shown_step=0, resume_attempt=2)),
    )
    chat = ai_sdk.tool_chat(
        f"{base}/api/chat", SID, text="Pick", outputs={"pick_color": {"errorText": error}}
    )
    _, resubmit = routes.bodies("/api/chat")
    (given_input,) = parse_chat_request(resubmit).inputs
    assert given_input.given == ({"error": error}, '{"error":"closed the dialog"}')
    (color,) = chat.tools()
    assert (chat.status, color["state"], color["errorText"]) == ("ready", "output-error", error)


def test_sdk_approves_after_a_reload_from_the_listed_messages(ai_sdk: AiSdk, server) -> None:
    """A page that holds the waiting answer (as its resumed stream left it): Approve resubmits it."""
    base, routes = server
    parts = [
        {"type": "text", "step": 0, "text": "I can refund order 7."},
        tool_part("c_refund", "waiting_approval", name="refund", arguments={"order": 7}),
        tool_part("c_lookup", "ok", name="lookup", output={"order": 7}),
    ]
    listed = ui_messages(
        [
            {"id": "u1", "role": "user", "content": "Refund order 7", "status": "done"},
            snapshot_answer(parts, "waiting"),
        ],
        None,
    )
    routes.stream("/api/chat", wire(*goes_on(result("c_refund", output="ok")), ui=continuation()))
    chat = ai_sdk.tool_chat(f"{base}/api/chat", SID, messages=listed, decide={"approved": True})
    (resubmit,) = routes.bodies("/api/chat")
    # The server tool's result in the same step is not an input: only the decision is.
    assert parse_chat_request(resubmit).inputs == (
        ToolInput("c_refund", "approval", ({"approved": True, "reason": None}, "approved")),
    )
    assert (chat.status, chat.answer["id"], chat.tools()[0]["state"]) == (
        "ready",
        MID,
        "output-available",
    )
