"""Tool calls in the AI SDK's shapes: the chunks that show one, and its part in a UI message.

API.md, "AI SDK mapping". ui_stream.py streams a call with `call_chunks` and
`result_chunks`; ui_messages.py lists it with `tool_part`. Both read a call
as relay's `tool_call` event data (a stored tool part is turned into that
shape by `stored_call`), and `Given`: the input a person or the front end
gave the call, as the answer's journal holds it (tool_inputs.given_inputs).

The protocol's states, from relay's:

| relay (event, or stored `status`) | chunks | part `state` |
| --- | --- | --- |
| `tool_call` (`running`) | `tool-input-start`, `tool-input-available` | `input-available` |
| arguments that are not JSON | `tool-input-start`, `tool-input-error` | `output-error` |
| `approval_id` (`waiting_approval`) | ... then `tool-approval-request` | `approval-requested` |
| a decision given, not yet acted on | ... then `tool-approval-response` | `approval-responded` |
| a client call (`waiting_output`) | as `running` | `input-available` |
| `ok` | `tool-output-available` | `output-available` |
| `error` | `tool-output-error` | `output-error` |
| `denied` | `tool-output-denied` | `output-denied` |
| `in_doubt` | `tool-output-error` (`IN_DOUBT_TEXT`) | `output-error` |

Deliberate choices:
- A server tool's chunks and part say `providerExecuted: true`: the backend
  runs it, so `useChat` never calls the app's `onToolCall` for it, and
  `lastAssistantMessageIsCompleteWithToolCalls` waits only for the client's
  calls. A client tool's do not: `onToolCall` is how the app runs it.
- `in_doubt` is `tool-output-error` with a text that starts `in_doubt:`:
  the protocol has no "maybe" state, and an error is what it is to the
  model, which was told the call may or may not have happened. An app
  tells it from other errors by that prefix.
- A client call that is settled when it is shown (a replay of a stored
  result, or an output given before a step is sent again after a lost
  worker) gets its input as one `tool-input-delta` of its JSON, never
  `tool-input-available`: that chunk runs `onToolCall`, and a client tool
  must not run twice. Its result follows at once.
- A decision is shown as `tool-approval-request` then `tool-approval-response`
  when it is known: so is a call's approval that ran or was denied, which
  the protocol's message schema wants (`approval.approved`). A stored part
  has no approval id of its own: its call id stands in.
- Tool parts are static (`tool-<name>`), as an app's own tools are typed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from webapp.storage import events

Chunk = dict[str, Any]

# The text of an `in_doubt` result; its prefix is how an app tells it apart.
IN_DOUBT_TEXT = (
    "in_doubt: the call was interrupted while it ran, so it may or may not have happened."
)
# Shown when a call's arguments are not JSON; its `error` result says more.
NOT_JSON_TEXT = "The model's arguments are not valid JSON: the tool did not run."
# An `error` result without a text of its own.
FAILED_TEXT = "The tool failed."


@dataclass(frozen=True, slots=True)
class Given:
    """What a waiting call was given: `kind` approval or output, and the input as stored."""

    kind: str  # events.WAIT_APPROVAL or events.WAIT_OUTPUT
    value: dict[str, Any]  # {"approved", "reason"}, or {"output"} or {"error"}

    @property
    def approved(self) -> bool:
        return self.kind == events.WAIT_APPROVAL and bool(self.value.get("approved"))


def _is_server(call: dict[str, Any]) -> bool:
    return call.get("runs_on", events.RUNS_ON_SERVER) != events.RUNS_ON_CLIENT


def _ids(call: dict[str, Any]) -> Chunk:
    """The fields a call's input chunks share."""
    ids: Chunk = {"toolCallId": call["call_id"], "toolName": call["name"]}
    if _is_server(call):
        ids["providerExecuted"] = True
    return ids


def approval_id_of(call: dict[str, Any], given: Given | None) -> str | None:
    """The call's approval id: the event's, or its call id when a decision is known."""
    if call.get("approval_id"):
        return str(call["approval_id"])
    if given is not None and given.kind == events.WAIT_APPROVAL:
        return str(call["call_id"])
    return None


def approval_response(approval_id: str, approved: bool, reason: Any) -> Chunk:
    chunk: Chunk = {
        "type": "tool-approval-response",
        "approvalId": approval_id,
        "approved": approved,
    }
    if isinstance(reason, str) and reason:
        chunk["reason"] = reason
    return chunk


def call_chunks(call: dict[str, Any], given: Given | None) -> tuple[list[Chunk], str | None]:
    """A `tool_call` as chunks, and the approval id it leaves waiting for a response (or None)."""
    ids, arguments = _ids(call), call.get("arguments")
    chunks: list[Chunk] = [{"type": "tool-input-start", **ids}]
    if isinstance(arguments, str):
        return [
            *chunks,
            {"type": "tool-input-error", **ids, "input": arguments, "errorText": NOT_JSON_TEXT},
        ], None
    output_known = given is not None and given.kind == events.WAIT_OUTPUT
    settled = output_known or call.get("status") in events.TOOL_RESULT_STATUSES
    if settled and not _is_server(call):
        text = json.dumps(arguments, ensure_ascii=False)
        chunks.append(
            {"type": "tool-input-delta", "toolCallId": call["call_id"], "inputTextDelta": text}
        )
    else:
        chunks.append({"type": "tool-input-available", **ids, "input": arguments})
    approval_id = approval_id_of(call, given)
    if approval_id is not None:
        chunks.append(
            {
                "type": "tool-approval-request",
                "approvalId": approval_id,
                "toolCallId": call["call_id"],
            }
        )
        if given is not None and given.kind == events.WAIT_APPROVAL:
            chunks.append(approval_response(approval_id, given.approved, given.value.get("reason")))
            approval_id = None
    if output_known and given is not None:
        chunks += result_chunks(call["call_id"], _given_result(given), None)
    return chunks, approval_id


def _given_result(given: Given) -> dict[str, Any]:
    """A client's output as the `tool_result` it becomes."""
    if "error" in given.value:
        return {"status": events.TOOL_ERROR, "output": None, "error": given.value["error"]}
    return {"status": events.TOOL_OK, "output": given.value.get("output"), "error": None}


def result_chunks(
    call_id: str, result: dict[str, Any], pending_approval: str | None
) -> list[Chunk]:
    """A `tool_result` as chunks; a decision still shown as requested is answered first."""
    status = result.get("status")
    chunks: list[Chunk] = []
    if pending_approval is not None:
        denied = status == events.TOOL_DENIED
        reason = result.get("error") if denied else None
        chunks.append(approval_response(pending_approval, not denied, reason))
    if status == events.TOOL_OK:
        return [
            *chunks,
            {
                "type": "tool-output-available",
                "toolCallId": call_id,
                "output": result.get("output"),
            },
        ]
    if status == events.TOOL_DENIED:
        return [*chunks, {"type": "tool-output-denied", "toolCallId": call_id}]
    return [
        *chunks,
        {"type": "tool-output-error", "toolCallId": call_id, "errorText": error_text(result)},
    ]


def error_text(result: dict[str, Any]) -> str:
    if result.get("status") == events.TOOL_IN_DOUBT:
        return IN_DOUBT_TEXT
    return result.get("error") or FAILED_TEXT


def stored_call(part: dict[str, Any]) -> dict[str, Any]:
    """A stored tool part as the `tool_call` that made it (approval id: its call id).

    Its `status` is kept: a client call shown from storage with a result is
    settled, and is shown so that `onToolCall` does not run it.
    """
    waited = part.get("status") in (events.TOOL_WAITING_APPROVAL, events.TOOL_DENIED)
    return {
        "step": part.get("step", 0),
        "call_id": part["call_id"],
        "name": part["name"],
        "arguments": part.get("arguments"),
        "runs_on": part.get("runs_on", events.RUNS_ON_SERVER),
        "approval_id": part["call_id"] if waited else None,
        "status": part.get("status"),
    }


def stored_result(part: dict[str, Any]) -> dict[str, Any] | None:
    """A stored tool part's result as its `tool_result`, or None while it has none."""
    if part.get("status") not in events.TOOL_RESULT_STATUSES:
        return None
    fields = ("step", "call_id", "status", "output", "error")
    return {name: part.get(name) for name in fields}


def tool_part(part: dict[str, Any], given: Given | None) -> dict[str, Any]:
    """A stored tool part as the protocol's tool part in a UI message (its state as the table says)."""
    call_id, status = part["call_id"], part.get("status")
    ui: dict[str, Any] = {
        "type": f"tool-{part['name']}",
        "toolCallId": call_id,
        "input": part.get("arguments"),
    }
    if _is_server(part):
        ui["providerExecuted"] = True
    approval = _approval(call_id, status, part.get("error"), given)
    result = stored_result(part)
    if result is None and given is not None and given.kind == events.WAIT_OUTPUT:
        result = _given_result(given)
    if result is not None:
        return {**ui, **_settled(result), **({"approval": approval} if approval else {})}
    if status == events.TOOL_WAITING_APPROVAL:
        state = (
            "approval-responded" if approval.get("approved") is not None else "approval-requested"
        )
        return {**ui, "state": state, "approval": approval}
    return {**ui, "state": "input-available"}


def _settled(result: dict[str, Any]) -> dict[str, Any]:
    status = result["status"]
    if status == events.TOOL_OK:
        return {"state": "output-available", "output": result.get("output")}
    if status == events.TOOL_DENIED:
        return {"state": "output-denied"}
    return {"state": "output-error", "errorText": error_text(result)}


def _approval(call_id: str, status: Any, error: Any, given: Given | None) -> dict[str, Any]:
    """The part's `approval`, as far as it is known ({} for a call that needed none)."""
    if given is not None and given.kind == events.WAIT_APPROVAL:
        approval = {"id": call_id, "approved": given.approved}
        reason = given.value.get("reason")
        return {**approval, "reason": reason} if reason else approval
    if status == events.TOOL_DENIED:
        return {"id": call_id, "approved": False, **({"reason": error} if error else {})}
    if status == events.TOOL_WAITING_APPROVAL:
        return {"id": call_id}
    return {}
