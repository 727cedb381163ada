"""A continuation: the inputs a waiting answer needs, given through `POST /api/chat`.

`useChat` sends one after `addToolApprovalResponse` or `addToolOutput`: a
`submit-message` whose last message is the answer, its last step's tool
parts carrying the decisions and outputs (chat_request.py reads them).
`go_on(session_id, asked)` gives each to relay exactly as the tool input
routes would (tool_inputs.give: stored before the response, the same
answer's next attempt queued when the last one came), and returns a plain
`Continued`, which the chat route turns into the rest of the same answer's
stream (chat_api.py).

Why beside prompts.submit, not a kind of it: a submission asks for a *new*
answer. Its kinds share what only a new answer needs: claiming the session
(a second one is `409 generation_active`), storing rows, RATE_LIMIT, and an
Idempotency-Key record that replays the first answer. A continuation asks
none of that: the answer it goes on with already holds the session's claim
(as a kind it would always be "busy"), it stores no row, and each input is
idempotent by itself (the same decision again is accepted, another is
`409 tool_call_settled`), so a retried post gives the same inputs and
streams the same answer without a key. It is exactly the tool input routes'
work, once per input, so that is what it calls.

Deliberate choices:
- A tool part in `output-available` or `output-error` gives an output only
  for a call that runs on the client (the stored part says where it runs):
  a server tool's result in the same step is history the message carries
  back, not an input.
- Every input is checked for its shape before any is given (a malformed one
  changes nothing). Then they are given in order, each as its route would;
  a refusal (`404 tool_call_not_found`, `409 tool_call_settled`,
  `409 not_waiting`) stops there, and the inputs before it stay given, as if
  each had been posted on its own.
- A message that gives no input for the answer to go on with is
  `409 not_waiting`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from webapp.exceptions import ApiError
from webapp.http import sessions, tool_inputs
from webapp.http.chat_request import ChatRequest, ToolInput
from webapp.http.ui_tools import Given
from webapp.storage import events, parts
from webapp.storage.extensions import redis_store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Continued:
    """What a continuation did: the answer, where its stream goes on, what it was given."""

    message_id: str
    shown_step: int  # the step the client shows last: the one whose calls got the inputs
    resume_attempt: int | None  # the attempt the answer goes on as, once it begins; None: as it is
    cursor: str  # a snapshot's cursor from before the inputs were given
    given: dict[str, Given]  # every input the answer's calls have now


def go_on(session_id: str, asked: ChatRequest) -> Continued:
    """Give the inputs `asked` carries to the waiting answer (module docstring)."""
    client, message_id = redis_store.client, str(asked.message_id)
    answer, cursor = sessions.find_message(client, session_id, message_id)
    calls = {
        part["call_id"]: part for part in answer.get("parts") or [] if part["type"] == parts.TOOL
    }
    inputs = [item for item in asked.inputs if _is_input(item, calls.get(item.call_id))]
    if not inputs:
        raise ApiError(
            409, "not_waiting", "The last message gives no tool input for its answer to go on with."
        )
    due = None
    for item in inputs:
        outcome = tool_inputs.give(
            client, session_id, message_id, item.call_id, item.kind, item.given
        )
        if outcome.resume_attempt is not None:
            due = outcome.resume_attempt
    steps = [calls[item.call_id]["step"] for item in inputs if item.call_id in calls]
    shown = max(steps or [part["step"] for part in answer.get("parts") or [{"step": 0}]])
    log.info(
        "answer continued session=%s message=%s inputs=%d resume_attempt=%s",
        session_id,
        message_id,
        len(inputs),
        due,
    )
    given = tool_inputs.given_inputs(client, session_id, message_id)
    return Continued(message_id, int(shown), due, cursor, given)


def _is_input(item: ToolInput, stored: dict[str, Any] | None) -> bool:
    """Whether `item` is an input to give: a decision, or a client call's output.

    A call relay has no part for is given too: its route refuses it (404).
    """
    if item.kind == events.WAIT_APPROVAL or stored is None:
        return True
    return stored.get("runs_on") == events.RUNS_ON_CLIENT
