"""What a person or the front end gives a waiting tool call: a decision, or a client tool's output.

    POST /api/sessions/{sid}/messages/{mid}/tools/{call_id}/approval  {"approved", "reason"?}
    POST /api/sessions/{sid}/messages/{mid}/tools/{call_id}/output    {"output"} or {"error"}

Both store the input in the answer's journal before their 202 (journal.py),
and queue the answer's next attempt when it was the last input the answer
waited for. `/api/chat` gives the AI SDK's approval responses and tool
outputs the same way (`give`), and shows the inputs given so far
(`given_inputs`).

Deliberate choices:
- Two inputs are the same when they say the same thing: the same
  `approved` (whatever the reason), or the same output or error. The same
  again is a 202, another is `409 tool_call_settled`, and nothing changes.
- Everything is checked before the journal is written, so a malformed body
  changes nothing. A body of the wrong shape is `400 invalid_tool_input`.
- The log line names the session, message and call, never the output: a
  tool's output may hold personal data.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from flask import Blueprint, Response, jsonify

from webapp.exceptions import ApiError
from webapp.http import auth, params, sessions
from webapp.http.ui_tools import Given
from webapp.storage import events, jobs, journal
from webapp.storage.extensions import redis_store

log = logging.getLogger(__name__)

bp = Blueprint("tool_inputs", __name__)

MAX_REASON_CHARS = 1000
MAX_ERROR_CHARS = 10_000

_REFUSALS = {
    "unknown": (404, "tool_call_not_found", "No tool call with that id in this answer."),
    "not_waiting": (409, "not_waiting", "That tool call is not waiting for this input."),
    "settled": (409, "tool_call_settled", "That tool call was already given another input."),
}


def _shape(message: str) -> ApiError:
    return ApiError(400, "invalid_tool_input", message)


def approval_of(body: Any) -> tuple[dict[str, Any], str]:
    """A decision from `{"approved": bool, "reason"?: str}`, and its verdict."""
    if not isinstance(body, dict) or set(body) - {"approved", "reason"}:
        raise _shape('The body must be {"approved": true or false, "reason": "optional text"}.')
    approved, reason = body.get("approved"), body.get("reason")
    if not isinstance(approved, bool):
        raise _shape('"approved" must be true or false.')
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
        raise _shape(f'"reason" must be text of at most {MAX_REASON_CHARS} characters.')
    return {"approved": approved, "reason": reason}, "approved" if approved else "denied"


def output_of(body: Any) -> tuple[dict[str, Any], str]:
    """A client tool's result from `{"output": any JSON}` or `{"error": "text"}`, and its verdict."""
    if not isinstance(body, dict) or len(body) != 1 or not set(body) <= {"output", "error"}:
        raise _shape('The body must be {"output": any JSON} or {"error": "text"}.')
    if "error" in body and (
        not isinstance(body["error"], str) or not 0 < len(body["error"]) <= MAX_ERROR_CHARS
    ):
        raise _shape(f'"error" must be text of 1 to {MAX_ERROR_CHARS} characters.')
    verdict = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return dict(body), verdict


def give(
    client: redis.Redis,
    session_id: str,
    message_id: str,
    call_id: str,
    kind: str,
    given: tuple[dict[str, Any], str],
) -> journal.InputOutcome:
    """Store an input for a waiting call and queue the answer's next attempt when it is due.

    Returns what the journal did: `resume_attempt` is the attempt the answer
    goes on as when this input (or an earlier one) made it due, else None.
    """
    value, verdict = given
    outcome = journal.give_input(client, session_id, message_id, call_id, kind, value, verdict)
    if outcome.verdict in _REFUSALS:
        raise ApiError(*_REFUSALS[outcome.verdict])
    log.info(
        "tool input %s session=%s message=%s call=%s kind=%s",
        outcome.verdict,
        session_id,
        message_id,
        call_id,
        kind,
    )
    if outcome.resume_attempt is not None:
        jobs.enqueue_resume(client, session_id, message_id, outcome.resume_attempt)
    return outcome


def given_inputs(client: redis.Redis, session_id: str, message_id: str) -> dict[str, Given]:
    """The inputs the answer's calls were given, by call id (none once its journal is gone)."""
    found = journal.read(client, session_id, message_id)
    if found is None:
        return {}
    return {
        call.call_id: Given(call.waits_for, call.input)
        for call in found.calls.values()
        if call.input is not None and call.waits_for is not None
    }


def _answer(session_id: str, message_id: str, call_id: str, kind: str) -> tuple[Response, int]:
    sessions.find_for(auth.current_caller(), session_id)
    params.valid_id(message_id, "message")
    body = params.require_json("input")
    given = approval_of(body) if kind == events.WAIT_APPROVAL else output_of(body)
    give(redis_store.client, session_id, message_id, call_id, kind, given)
    accepted = {"session_id": session_id, "message_id": message_id, "call_id": call_id}
    return jsonify({**accepted, "status": "accepted"}), 202


@bp.post("/api/sessions/<session_id>/messages/<message_id>/tools/<call_id>/approval")
def approval(session_id: str, message_id: str, call_id: str) -> tuple[Response, int]:
    return _answer(session_id, message_id, call_id, events.WAIT_APPROVAL)


@bp.post("/api/sessions/<session_id>/messages/<message_id>/tools/<call_id>/output")
def output(session_id: str, message_id: str, call_id: str) -> tuple[Response, int]:
    return _answer(session_id, message_id, call_id, events.WAIT_OUTPUT)
