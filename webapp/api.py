"""JSON endpoints: sessions, prompts, messages, cancellation.

Each view parses its request (params.py), calls the domain (sessions.py,
idempotency.py, the hub), and answers.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from . import idempotency, limits, models, params, sessions
from .exceptions import ApiError
from .extensions import db, redis_store
from .hub import hub
from .snapshot import snapshot

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)
bp.before_app_request(params.refuse_malformed_json)


@bp.post("/api/sessions")
def create_session() -> tuple[Response, int, dict[str, str]]:
    session_id = sessions.create()
    location = url_for("api.get_session", session_id=session_id)
    return jsonify({"session_id": session_id}), 201, {"Location": location}


@bp.get("/api/sessions/<session_id>")
def get_session(session_id: str) -> Response:
    sessions.find(session_id)
    return jsonify(snapshot(redis_store.client, session_id))


@bp.post("/api/sessions/<session_id>/messages")
def post_message(session_id: str) -> Response:
    sessions.ensure(session_id)
    content = params.prompt(current_app.config["MAX_PROMPT_CHARS"])
    retried = idempotency.post(session_id, params.idempotency_key(), content)
    client = redis_store.client
    if earlier := idempotency.earlier_answer(client, retried):
        return replayed(earlier)
    config = current_app.config
    address = limits.client_address(request, config["PROXY_HOPS"])
    limits.check_prompt_rate(client, address, config["RATE_LIMIT"])
    accepted = sessions.accept_prompt(client, session_id, content)
    if accepted.message_id is None:
        if earlier := idempotency.earlier_answer(client, retried):
            return replayed(earlier)  # the same request, sent twice at once
        raise ApiError(
            409,
            "generation_active",
            "An answer is still being generated.",
            message_id=accepted.active,
        )
    answer = queued(session_id, accepted.message_id)
    idempotency.remember(client, retried, answer)
    return Response(
        answer.body, 202, mimetype="application/json", headers={"Location": answer.location}
    )


def queued(session_id: str, message_id: str) -> idempotency.StoredAnswer:
    """A prompt post's answer: where the queued message will stream."""
    body = json.dumps(
        {
            "session_id": session_id,
            "message_id": message_id,
            "status": models.QUEUED,
            "events_url": url_for("stream.events", session_id=session_id),
            "poll_url": url_for("stream.poll", session_id=session_id),
        }
    )
    location = url_for("api.get_message", session_id=session_id, message_id=message_id)
    return idempotency.StoredAnswer(body, location)


def replayed(answer: idempotency.StoredAnswer) -> Response:
    """The answer a first post with this Idempotency-Key got, again."""
    headers = {"Idempotent-Replayed": "true", "Location": answer.location}
    return Response(answer.body, 202, mimetype="application/json", headers=headers)


@bp.get("/api/sessions/<session_id>/messages/<message_id>")
def get_message(session_id: str, message_id: str) -> Response:
    """One message; with ?wait=, once it is finished or the wait runs out."""
    sessions.find(session_id)
    params.valid_id(message_id, "message")
    wait = params.wait_seconds()
    client = redis_store.client
    message, cursor = sessions.find_message(client, session_id, message_id)
    if wait and message["status"] in (models.QUEUED, models.STREAMING):
        db.session.close()  # hold no pooled SQL connection while waiting
        release = limits.acquire_stream(request, current_app.config)
        try:
            hub.wait_for_final(session_id, message_id, cursor, wait)
        finally:
            release()
        message, _ = sessions.find_message(client, session_id, message_id)
    return jsonify(message)


@bp.post("/api/sessions/<session_id>/messages/<message_id>/cancel")
def cancel_message(session_id: str, message_id: str) -> tuple[Response, int]:
    sessions.find(session_id)
    status = sessions.cancel(redis_store.client, session_id, message_id)
    return jsonify({"session_id": session_id, "message_id": message_id, "status": status}), 202
