"""webapp/http/chat_request.py: the body `DefaultChatTransport` POSTs, as relay reads it.

Hand-written bodies here pin the shapes and the 400s; the bodies the real
SDK builds (a prompt, a regenerate, and the resubmits after
`addToolApprovalResponse` and `addToolOutput`) are parsed in
tests/test_ui_stream.py and tests/test_ui_tools.py, as the SDK sent them.
"""

from __future__ import annotations

from typing import Any

import pytest

from webapp.exceptions import ApiError
from webapp.http.chat_request import CONTINUE, ChatRequest, ToolInput, parse_chat_request

# --- POST /api/chat's body ------------------------------------------------------------


def body(**fields: Any) -> dict[str, Any]:
    user = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}
    return {"id": "sess_abcdefgh", "messages": [user], "trigger": "submit-message", **fields}


def test_submit_takes_the_text_parts_of_the_last_user_message() -> None:
    parts = [
        {"type": "text", "text": "one"},
        {"type": "file", "url": "data:,x", "mediaType": "text/plain"},
        {"type": "text", "text": "two"},
    ]
    earlier = {"id": "m0", "role": "user", "parts": [{"type": "text", "text": "ignored"}]}
    request = parse_chat_request(
        body(messages=[earlier, {"id": "m1", "role": "user", "parts": parts}], messageId="m1")
    )
    assert request == ChatRequest("sess_abcdefgh", "submit-message", "one\n\ntwo", None)


def test_regenerate_names_the_answer_or_none() -> None:
    assert parse_chat_request(
        body(trigger="regenerate-message", messages=[], messageId="a1")
    ) == ChatRequest("sess_abcdefgh", "regenerate-message", "", "a1")
    assert parse_chat_request(body(trigger="regenerate-message")).message_id is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (None, "invalid_json"),
        ([], "invalid_json"),
        ({"messages": []}, "invalid_session_id"),
        (body(id=12345678), "invalid_session_id"),
        (body(trigger="resume-stream"), "invalid_json"),
        (body(messages=[]), "invalid_json"),
        (body(messages="Hi"), "invalid_json"),
        (body(messages=[{"role": "system", "parts": []}]), "invalid_prompt"),
        (body(messages=[{"role": "assistant", "parts": []}]), "invalid_message_id"),
        (body(messages=[{"role": "user", "parts": "Hi"}]), "invalid_json"),
        (body(messages=[{"role": "user", "parts": ["Hi"]}]), "invalid_json"),
        (body(messages=[{"role": "user", "parts": [{"type": "text", "text": 1}]}]), "invalid_json"),
        (body(messages=[{"role": "user", "parts": [{"type": "file"}]}]), "empty_prompt"),
        (body(trigger="regenerate-message", messageId=7), "invalid_message_id"),
    ],
)
def test_malformed_bodies_are_400_with_api_codes(raw: Any, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_chat_request(raw)
    assert (caught.value.status, caught.value.code) == (400, code)


def answer(*parts: dict[str, Any], mid: str = "a1") -> dict[str, Any]:
    return {"id": mid, "role": "assistant", "parts": list(parts)}


def tool(call_id: str, state: str, **fields: Any) -> dict[str, Any]:
    return {"type": "tool-refund", "toolCallId": call_id, "state": state, "input": {}, **fields}


def test_a_continuation_gives_the_inputs_of_its_last_step_only() -> None:
    earlier = tool("old", "output-available", output=1)
    request = parse_chat_request(
        body(
            messages=[
                answer(
                    {"type": "step-start"},
                    earlier,
                    {"type": "step-start"},
                    {"type": "text", "text": "Shall I?", "state": "done"},
                    tool("c1", "approval-responded", approval={"id": "x", "approved": True}),
                    tool(
                        "c2",
                        "approval-responded",
                        approval={"id": "y", "approved": False, "reason": "no"},
                    ),
                    tool("c3", "output-available", output={"ok": True}),
                    tool("c4", "output-error", errorText="closed"),
                    tool("c5", "output-available", output=7, providerExecuted=True),
                    tool("c6", "approval-requested", approval={"id": "z"}),
                    tool("c7", "input-available"),
                    {
                        "type": "dynamic-tool",
                        "toolName": "t",
                        "toolCallId": "c8",
                        "state": "output-available",
                    },
                )
            ]
        )
    )
    assert (request.trigger, request.message_id, request.prompt) == (CONTINUE, "a1", "")
    assert request.inputs == (
        ToolInput("c1", "approval", ({"approved": True, "reason": None}, "approved")),
        ToolInput("c2", "approval", ({"approved": False, "reason": "no"}, "denied")),
        ToolInput("c3", "output", ({"output": {"ok": True}}, '{"output":{"ok":true}}')),
        ToolInput("c4", "output", ({"error": "closed"}, '{"error":"closed"}')),
        # An output the app left undefined arrives without the key: null.
        ToolInput("c8", "output", ({"output": None}, '{"output":null}')),
    )


def test_a_continuation_that_gives_nothing_parses_to_no_inputs() -> None:
    request = parse_chat_request(body(messages=[answer({"type": "text", "text": "Hi"})]))
    assert request == ChatRequest("sess_abcdefgh", CONTINUE, "", "a1", ())


@pytest.mark.parametrize(
    "part",
    [
        tool("c1", "approval-responded"),
        tool("c1", "approval-responded", approval="yes"),
        tool("c1", "approval-responded", approval={"id": "x", "approved": "yes"}),
        tool("c1", "approval-responded", approval={"id": "x", "approved": True, "reason": 5}),
        tool(
            "c1", "approval-responded", approval={"id": "x", "approved": True, "reason": "x" * 1001}
        ),
        tool("c1", "output-error"),
        tool("c1", "output-error", errorText=""),
        tool("", "output-available", output=1),
        {"type": "tool-refund", "state": "output-available", "output": 1},
    ],
)
def test_a_malformed_tool_part_is_invalid_tool_input(part: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as caught:
        parse_chat_request(body(messages=[answer({"type": "step-start"}, part)]))
    assert (caught.value.status, caught.value.code) == (400, "invalid_tool_input")
