"""JSON endpoints: sessions (create, list, delete), prompts, messages, cancel, regenerate.

Each view parses its request (params.py), checks access (auth.py: every
view on a session answers 404 to a caller who may not use it), calls the
domain (sessions.py; prompts.py for every new answer; the hub), and answers.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify, request, url_for

from webapp.exceptions import ApiError
from webapp.http import auth, limits, params, prompts, sessions
from webapp.read.hub import hub
from webapp.read.snapshot import snapshot
from webapp.storage import models, session_list
from webapp.storage.extensions import db, redis_store

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)
bp.before_app_request(params.refuse_malformed_json)


@bp.post("/api/sessions")
def create_session() -> tuple[Response, int, dict[str, str]]:
    caller = auth.current_caller()
    auth.require_unscoped(caller)
    config = current_app.config
    address = limits.client_address(request, config["PROXY_HOPS"])
    subject = auth.rate_limit_subject(caller, address)
    limits.check_session_rate(redis_store.client, subject, config["SESSION_RATE_LIMIT"])
    session_id = sessions.create(caller.sub if caller else None)
    location = url_for("api.get_session", session_id=session_id)
    return jsonify({"session_id": session_id}), 201, {"Location": location}


@bp.get("/api/sessions")
def list_sessions() -> Response:
    """The caller's sessions, newest first (access control on only: nobody owns one otherwise)."""
    caller = auth.current_caller()
    if caller is None:
        raise ApiError(404, "not_found", "No such resource.")
    auth.require_unscoped(caller)
    return jsonify(session_list.list_sessions(caller.sub, request.args.get("before")).to_json())


@bp.get("/api/sessions/<session_id>")
def get_session(session_id: str) -> Response:
    sessions.find_for(auth.current_caller(), session_id)
    return jsonify(snapshot(redis_store.client, session_id))


@bp.delete("/api/sessions/<session_id>")
def delete_session(session_id: str) -> tuple[str, int]:
    sessions.find_for(auth.current_caller(), session_id)
    sessions.delete_session(current_app._get_current_object(), session_id)
    return "", 204


@bp.post("/api/sessions/<session_id>/messages")
def post_message(session_id: str) -> Response:
    sessions.ensure(session_id, auth.current_caller())
    content = params.prompt(current_app.config["MAX_PROMPT_CHARS"])
    return accepted(prompts.submit(session_id, prompts.Prompt(content)))


def accepted(submitted: prompts.Submitted) -> Response:
    """202 with the queued answer's body and its message as the Location (a retry: the first's)."""
    headers = {"Location": submitted.answer.location}
    if submitted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(submitted.answer.body, 202, mimetype="application/json", headers=headers)


@bp.get("/api/sessions/<session_id>/messages/<message_id>")
def get_message(session_id: str, message_id: str) -> Response:
    """One message; with ?wait=, once it is finished or waiting, or the wait runs out (or the token does)."""
    caller = auth.current_caller()
    sessions.find_for(caller, session_id)
    params.valid_id(message_id, "message")
    wait = params.wait_seconds()
    if wait:
        wait = auth.cap_seconds(caller, wait)
    client = redis_store.client
    message, cursor = sessions.find_message(client, session_id, message_id)
    if wait and message["status"] in (models.QUEUED, models.STREAMING):
        db.session.close()  # hold no pooled SQL connection while waiting
        release = limits.acquire_stream(request, current_app.config)
        try:
            hub.wait_until_at_rest(session_id, message_id, cursor, wait)
        finally:
            release()
        message = message_after_wait(client, session_id, message)
    return jsonify(message)


def message_after_wait(
    client: redis.Redis, session_id: str, before: dict[str, Any]
) -> dict[str, Any]:
    """The message as it is now; as it was, when the session was deleted during the wait."""
    try:
        return sessions.find_message(client, session_id, before["id"])[0]
    except ApiError as exc:
        if exc.code != "message_not_found":
            raise
        return before  # API.md: a wait ends with what it has


@bp.post("/api/sessions/<session_id>/messages/<message_id>/cancel")
def cancel_message(session_id: str, message_id: str) -> tuple[Response, int]:
    sessions.find_for(auth.current_caller(), session_id)
    status = sessions.cancel(redis_store.client, session_id, message_id)
    return jsonify({"session_id": session_id, "message_id": message_id, "status": status}), 202


@bp.post("/api/sessions/<session_id>/messages/<message_id>/regenerate")
def regenerate_message(session_id: str, message_id: str) -> Response:
    """Answer the last prompt again: 202 as a prompt post, for the new answer."""
    sessions.find_for(auth.current_caller(), session_id)
    params.valid_id(message_id, "message")
    return accepted(prompts.submit(session_id, prompts.Regenerate(message_id)))
