"""The AI SDK's chat routes (API.md, AI SDK front ends): relay as `useChat`'s backend.

- `POST /api/chat`: the body `DefaultChatTransport` sends (chat_request.py);
  a prompt post (`submit-message`), a regenerate (`regenerate-message`), or
  a continuation (a submit whose last message is an answer that waits for
  tool inputs: continuations.py), answered with that answer as a UI message
  stream.
- `GET /api/chat/{sid}/stream`: the active answer from its beginning
  (`204` when none streams), or, with `Last-Event-ID`, after that entry.
- `GET /api/chat/{sid}/messages`: the stored conversation as UI messages
  (ui_messages.py).
- `POST /api/chat/{sid}/stop`: cancel the active answer.

Each has the checks of its relay twin: access control (auth.py's hook has
authenticated the caller; here the session's owner is checked), CORS
(cors.py covers `/api/`), Idempotency-Key, RATE_LIMIT, the open-stream caps
and SSE_MAX_SECONDS. The bytes are ui_stream.py's; the streaming body is
chat_stream.py's. Everything that can fail with JSON happens before the
stream starts, so the transport throws it with its status and body.

Deliberate choices:
- The stream cap is taken before the prompt is accepted: a client at its
  cap gets `429 too_many_streams` and no answer is queued that it cannot read.
- A retried post (the same Idempotency-Key and prompt) streams the first
  post's answer, from its beginning, with `Idempotent-Replayed: true`
  (prompts.py: the one way to ask for a new answer, the relay routes' too).
- A continuation's response goes on from the step the client shows last:
  once the inputs made the answer due to go on, it follows the stream from
  before they were given and starts at that attempt's `start`; otherwise
  (it went on already, or still waits for another input) it shows that
  step again from a snapshot taken after them, and follows on.
- A waiting answer is still the session's active generation (API.md): `GET
  .../stream` replays it from its beginning, ending as its `waiting` ends a
  response, with the inputs already given shown as given, and `GET
  .../messages` leaves it out, like any active answer, so that it never
  shows twice. A page reloaded while an answer waits (`resume: true`) shows
  its Approve and Deny from the replay.
- The body's `messages` are read for the last message only: relay's stored
  history is the conversation (chat_request.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from webapp.exceptions import ApiError
from webapp.http import auth, chat_stream, continuations, limits, params, prompts, sessions
from webapp.http.chat_request import CONTINUE, SUBMIT, ChatRequest, parse_chat_request
from webapp.http.tool_inputs import given_inputs
from webapp.http.ui_messages import ui_messages
from webapp.http.ui_stream import UIMessageStream, encode
from webapp.http.ui_tools import Given
from webapp.read.hub import hub
from webapp.read.snapshot import snapshot
from webapp.storage import models, parts
from webapp.storage.events import id_key
from webapp.storage.extensions import redis_store

bp = Blueprint("chat", __name__)


def check_session(session_id: str) -> None:
    """404 session_not_found for an unknown session or one the caller may not use."""
    sessions.find_for(auth.current_caller(), session_id)


@bp.post("/api/chat")
def chat() -> Response:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the chat request as application/json.")
    asked = parse_chat_request(params.json_body())
    check_session(asked.session_id)
    release = limits.acquire_stream(request, current_app.config)
    try:
        if asked.trigger == CONTINUE:
            return continued_stream(asked, release)
        submitted = prompts.submit(asked.session_id, submission(asked))
        headers = {"Idempotent-Replayed": "true"} if submitted.replayed else None
        return answer_stream(asked.session_id, submitted.message_id, release, headers=headers)
    except BaseException:
        release()
        raise


def continued_stream(asked: ChatRequest, release: Callable[[], None]) -> Response:
    """Give a waiting answer its inputs; the rest of that answer as a UI message stream."""
    went_on = continuations.go_on(asked.session_id, asked)
    ui = UIMessageStream(
        went_on.message_id,
        given=went_on.given,
        shown_step=went_on.shown_step,
        resume_attempt=went_on.resume_attempt,
    )
    # Due to go on: its attempt's start comes after the cursor from before the inputs.
    after = went_on.cursor if went_on.resume_attempt is not None else None
    return answer_stream(asked.session_id, went_on.message_id, release, ui=ui, after=after)


def submission(asked: ChatRequest) -> prompts.Submission:
    """What the chat request asks for: its last user message's text, or a regenerate."""
    if asked.trigger == SUBMIT:
        return prompts.Prompt(
            params.checked_prompt(asked.prompt, current_app.config["MAX_PROMPT_CHARS"])
        )
    return prompts.Regenerate(asked.message_id)


def answer_stream(
    session_id: str,
    message_id: str,
    release: Callable[[], None],
    *,
    ui: UIMessageStream | None = None,
    after: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The answer as a UI message stream: from its beginning (or `ui`'s step), or after `after`."""
    if after is None:
        answer, cursor = chat_stream.answer_now(session_id, message_id)
        if answer is None:
            raise ApiError(404, "message_not_found", "No message with that id in this session.")
        ui = ui or UIMessageStream(message_id, given=inputs_of(session_id, answer))
        opening = encode(ui.catch_up(answer), cursor)
    else:
        ui = ui or UIMessageStream(message_id)
        cursor, opening = after, b""
    seconds = auth.cap_seconds(auth.current_caller(), current_app.config["SSE_MAX_SECONDS"])
    return chat_stream.response(
        current_app._get_current_object(),
        hub.follow(session_id, cursor),
        ui,
        session_id=session_id,
        opening=opening,
        release=release,
        seconds=seconds,
        headers=headers,
    )


def inputs_of(session_id: str, answer: dict[str, Any]) -> dict[str, Given]:
    """The inputs an answer's tool calls were given (none to read for an answer without any)."""
    if not any(part["type"] == parts.TOOL for part in answer.get("parts") or []):
        return {}
    return given_inputs(redis_store.client, session_id, answer["id"])


@bp.get("/api/chat/<session_id>/stream")
def resume(session_id: str) -> Response:
    """The active answer's stream; 204 when nothing is active (the transport's null)."""
    check_session(session_id)
    resumed = bool(request.headers.get("Last-Event-ID", "").strip())
    after = params.sse_cursor() if resumed else None
    state = snapshot(redis_store.client, session_id)
    message_id = streaming_id(state)
    if message_id is None and after is not None:
        message_id = unfinished_for(state, after)
    if message_id is None:
        return Response(status=204)
    release = limits.acquire_stream(request, current_app.config)
    try:
        return answer_stream(session_id, message_id, release, after=after)
    except BaseException:
        release()
        raise


def streaming_id(state: dict) -> str | None:
    """The active answer, waiting for tool inputs or not: its stream is the one to resume."""
    return state["active_message_id"]


def unfinished_for(state: dict, after: str) -> str | None:
    """The last answer, when a client resuming after `after` has not seen its end yet.

    A generic SSE client that lost its connection just before the end
    reconnects once the answer is no longer active: it still gets the rest.
    """
    answers = [m for m in state["messages"] if m["role"] == models.ASSISTANT]
    if answers and id_key(after) < id_key(state["cursor"]):
        return answers[-1]["id"]
    return None


@bp.get("/api/chat/<session_id>/messages")
def messages(session_id: str) -> Response:
    check_session(session_id)
    state = snapshot(redis_store.client, session_id)
    return jsonify(ui_messages(state["messages"], state["active_message_id"]))


@bp.post("/api/chat/<session_id>/stop")
def stop(session_id: str) -> tuple[Response, int]:
    """Cancel the active answer (useChat's stop() only aborts its own request)."""
    check_session(session_id)
    client = redis_store.client
    message_id = snapshot(client, session_id)["active_message_id"]
    status = sessions.cancel(client, session_id, message_id) if message_id else None
    return jsonify({"session_id": session_id, "message_id": message_id, "status": status}), 202
