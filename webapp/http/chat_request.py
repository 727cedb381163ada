"""The body `DefaultChatTransport` POSTs to `/api/chat`: what it asks relay for.

`parse_chat_request(body)` reads `{id, messages, trigger, messageId}` into
a `ChatRequest`, one of three:

- `submit-message` whose last message is the user's: a new prompt, the
  text parts of that message joined by blank lines (other parts, files,
  are ignored).
- `regenerate-message`: a new answer to the last prompt; `messageId` names
  the answer to replace (None: the last).
- `submit-message` whose last message is an answer (relay's `continue`):
  what `useChat` sends after `addToolApprovalResponse` or `addToolOutput`
  (by itself with `sendAutomaticallyWhen`, or on the next send). The tool
  parts of that message's last step carry the inputs: a part in
  `approval-responded` gives its decision (`approval.approved`,
  `approval.reason`), one in `output-available` or `output-error` gives its
  output (`output`) or error (`errorText`), unless it is a server tool's
  result (relay marks those `providerExecuted`; the route checks the stored
  parts too, continuations.py).

Only the last message is read: relay's stored history is the conversation.
The body's `messageId` of a submit (an edit of an earlier message) is not
supported and is ignored. Everything raises ApiError with API.md's 400
codes, before anything is stored; the caller checks the ids' shape and the
prompt as a prompt post does (`valid_id`, the prompt rules and
MAX_PROMPT_CHARS), so those rules keep one home. An input of the wrong
shape is `invalid_tool_input`, as on the tool input routes (tool_inputs.py
checks both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from webapp.exceptions import ApiError
from webapp.http.tool_inputs import approval_of, output_of
from webapp.storage import events, models

SUBMIT = "submit-message"
REGENERATE = "regenerate-message"
CONTINUE = "continue"  # relay's own: a submit whose last message is the answer that waits

# A tool part's states that carry an input the app gave.
APPROVAL_RESPONDED = "approval-responded"
OUTPUT_STATES = ("output-available", "output-error")


@dataclass(frozen=True, slots=True)
class ToolInput:
    """One input a continuation gives: a call, its kind (approval or output), as tool_inputs checks it."""

    call_id: str
    kind: str  # events.WAIT_APPROVAL or events.WAIT_OUTPUT
    given: tuple[dict[str, Any], str]  # tool_inputs.approval_of / output_of


@dataclass(frozen=True)
class ChatRequest:
    """What a `POST /api/chat` asks for, its ids still unchecked in shape."""

    session_id: str  # the body's `id`: the chat id given to useChat
    trigger: Literal["submit-message", "regenerate-message", "continue"]
    prompt: str  # submit: the last user message's text; otherwise ""
    message_id: (
        str | None
    )  # regenerate: the answer to replace (None: the last); continue: the answer
    inputs: tuple[ToolInput, ...] = ()  # continue: the approvals and outputs it gives


def parse_chat_request(body: Any) -> ChatRequest:
    """Read the body `DefaultChatTransport` sends (module docstring); raises ApiError (400)."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    session_id = body.get("id")
    if not isinstance(session_id, str):
        raise ApiError(400, "invalid_session_id", 'The body\'s "id" must be a session id.')
    trigger = body.get("trigger", SUBMIT)
    if trigger == REGENERATE:
        message_id = body.get("messageId")
        if message_id is not None and not isinstance(message_id, str):
            raise ApiError(400, "invalid_message_id", '"messageId" must be a message id.')
        return ChatRequest(session_id, REGENERATE, "", message_id)
    if trigger != SUBMIT:
        raise ApiError(400, "invalid_json", f'"trigger" must be "{SUBMIT}" or "{REGENERATE}".')
    last = _last_message(body.get("messages"))
    if last.get("role") == models.ASSISTANT:
        return _continuation(session_id, last)
    if last.get("role") != models.USER:
        raise ApiError(400, "invalid_prompt", "The last message must be the user's.")
    return ChatRequest(session_id, SUBMIT, _text_of(last), None)


def _last_message(messages: Any) -> dict[str, Any]:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "invalid_json", '"messages" must be a non-empty array.')
    last = messages[-1]
    if not isinstance(last, dict):
        raise ApiError(400, "invalid_prompt", "The last message must be the user's.")
    parts = last.get("parts")
    if not isinstance(parts, list):
        raise ApiError(400, "invalid_json", 'A message\'s "parts" must be an array.')
    if not all(isinstance(part, dict) for part in parts):
        raise ApiError(400, "invalid_json", "A message part must be an object.")
    return last


def _text_of(message: dict[str, Any]) -> str:
    texts = []
    for part in message["parts"]:
        if part.get("type") == "text":
            if not isinstance(part.get("text"), str):
                raise ApiError(400, "invalid_json", 'A text part\'s "text" must be a string.')
            texts.append(part["text"])
    if not texts:
        raise ApiError(400, "empty_prompt", "The last user message has no text.")
    return "\n\n".join(texts)


def _continuation(session_id: str, answer: dict[str, Any]) -> ChatRequest:
    """The inputs the tool parts of the answer's last step give."""
    message_id = answer.get("id")
    if not isinstance(message_id, str):
        raise ApiError(400, "invalid_message_id", 'The last message\'s "id" must be a message id.')
    parts = answer["parts"]
    starts = [i for i, part in enumerate(parts) if part.get("type") == "step-start"]
    last_step = parts[starts[-1] + 1 :] if starts else parts
    inputs = tuple(
        given for part in last_step if _is_tool(part) and (given := _input_of(part)) is not None
    )
    return ChatRequest(session_id, CONTINUE, "", message_id, inputs)


def _is_tool(part: dict[str, Any]) -> bool:
    kind = part.get("type")
    return isinstance(kind, str) and (kind.startswith("tool-") or kind == "dynamic-tool")


def _input_of(part: dict[str, Any]) -> ToolInput | None:
    """The input a tool part gives, or None when its state gives none."""
    state = part.get("state")
    server_result = state in OUTPUT_STATES and part.get("providerExecuted") is True
    if server_result or (state != APPROVAL_RESPONDED and state not in OUTPUT_STATES):
        return None
    call_id = part.get("toolCallId")
    if not isinstance(call_id, str) or not call_id:
        raise ApiError(400, "invalid_tool_input", 'A tool part\'s "toolCallId" must be a call id.')
    if state == APPROVAL_RESPONDED:
        approval = part.get("approval")
        if not isinstance(approval, dict):
            raise ApiError(400, "invalid_tool_input", 'A responded tool part needs its "approval".')
        decision = {"approved": approval.get("approved")}
        if approval.get("reason") is not None:
            decision["reason"] = approval["reason"]
        return ToolInput(call_id, events.WAIT_APPROVAL, approval_of(decision))
    if state == "output-error":
        return ToolInput(call_id, events.WAIT_OUTPUT, output_of({"error": part.get("errorText")}))
    # JSON has no undefined: an output the app left undefined arrives without the key.
    return ToolInput(call_id, events.WAIT_OUTPUT, output_of({"output": part.get("output")}))
