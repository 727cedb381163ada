"""JSON endpoints: sessions, prompts, messages, cancellation, health."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from sqlalchemy import text

from . import jobs, keys, limits, models
from .errors import error_response
from .exceptions import ApiError
from .extensions import db, redis_store
from .hub import hub
from .models import ChatSession
from .snapshot import live_messages, snapshot

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{8,64}\Z")
# Long enough for most answers, short enough for Heroku's 30 s router window.
WAIT_MAX_SECONDS = 25.0
IDEMPOTENCY_KEY_PATTERN = re.compile(r"\A[\x21-\x7e]{1,255}\Z")


def valid_id(raw: str, kind: str) -> str:
    """Check an id's shape before it names any key or row."""
    if not ID_PATTERN.match(raw):
        raise ApiError(400, f"invalid_{kind}_id", f"That is not a valid {kind} id.")
    return raw


def load_session(session_id: str) -> ChatSession:
    chat = db.session.get(ChatSession, valid_id(session_id, "session"))
    if chat is None:
        raise ApiError(404, "session_not_found", "No session with that id.")
    return chat


def ensure_session(session_id: str) -> None:
    """404 for an unknown session, without SQL when this process's hub follows it.

    Sessions are never deleted, so one that has a channel here was found in
    SQL before. A chat page posts while its stream is open, often here.
    """
    if not hub.follows(valid_id(session_id, "session")):
        load_session(session_id)


def prompt_from_request() -> str:
    """The prompt of a POST body, validated as API.md says."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the prompt as application/json.")
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "invalid_json", "The body is not valid JSON.")
    if not isinstance(body, dict) or not isinstance(body.get("content"), str):
        raise ApiError(400, "invalid_json", 'The body must be an object with a "content" string.')
    content: str = body["content"]
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:  # JSON's \ud800 escapes can smuggle in lone surrogates
        raise ApiError(400, "invalid_json", "The prompt is not valid Unicode text.") from None
    if not content.strip():
        raise ApiError(400, "empty_prompt", "The prompt is empty.")
    limit = current_app.config["MAX_PROMPT_CHARS"]
    if len(content) > limit:
        raise ApiError(413, "prompt_too_large", f"The prompt is over {limit} characters.")
    if "\x00" in content:
        raise ApiError(400, "invalid_prompt", "The prompt contains a NUL character.")
    return content


@bp.post("/api/sessions")
def create_session() -> tuple[Response, int, dict[str, str]]:
    chat = ChatSession(id=models.new_session_id())
    db.session.add(chat)
    db.session.commit()
    log.info("session created session=%s", chat.id)
    location = url_for("api.get_session", session_id=chat.id)
    return jsonify({"session_id": chat.id}), 201, {"Location": location}


@bp.get("/api/sessions/<session_id>")
def get_session(session_id: str) -> Response:
    load_session(session_id)
    return jsonify(snapshot(redis_store.client, session_id))


def idempotency_key(session_id: str, content: str) -> tuple[str, str] | None:
    """(redis key, content digest) for a prompt post with an Idempotency-Key header."""
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    if not IDEMPOTENCY_KEY_PATTERN.match(raw):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
        )
    key_digest = hashlib.sha256(raw.encode()).hexdigest()[:32]
    content_digest = hashlib.sha256(content.encode()).hexdigest()
    return keys.idempotency(session_id, key_digest), content_digest


def replay(stored: str, content_digest: str) -> Response:
    """The answer given to the first request with this Idempotency-Key."""
    record = json.loads(stored)
    if record["content_sha256"] != content_digest:
        raise ApiError(
            422, "idempotency_key_reused", "This Idempotency-Key was used with a different prompt."
        )
    return Response(
        record["body"],
        202,
        mimetype="application/json",
        headers={"Idempotent-Replayed": "true", "Location": record["location"]},
    )


@bp.post("/api/sessions/<session_id>/messages")
def post_message(session_id: str) -> tuple[Response, int, dict[str, str]] | Response:
    ensure_session(session_id)
    content = prompt_from_request()
    client = redis_store.client
    idempotency = idempotency_key(session_id, content)
    if idempotency and (stored := client.get(idempotency[0])):
        return replay(stored, idempotency[1])
    config = current_app.config
    address = limits.client_address(request, config["PROXY_HOPS"])
    limits.check_prompt_rate(client, address, limits.parse_rate(config["RATE_LIMIT"]))
    message_id = models.new_message_id()
    claimed = jobs.claim(client, session_id, message_id)
    if claimed.active is not None:
        if idempotency and (stored := client.get(idempotency[0])):
            return replay(stored, idempotency[1])  # the same request, sent twice at once
        raise ApiError(
            409,
            "generation_active",
            "An answer is still being generated.",
            message_id=claimed.active,
        )
    try:
        if claimed.previous_unfinished and (orphans := models.fail_orphans(session_id)):
            log.warning("unfinished answer failed session=%s count=%d", session_id, orphans)
        models.add_prompt(session_id, content, message_id)
        db.session.commit()
        jobs.enqueue(client, session_id, message_id)
    except Exception:
        db.session.rollback()
        jobs.release(client, session_id, message_id)
        raise
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
    if idempotency:
        record = {"content_sha256": idempotency[1], "body": body, "location": location}
        client.set(idempotency[0], json.dumps(record), ex=keys.IDEMPOTENCY_TTL_SECONDS)
    return Response(body, 202, mimetype="application/json", headers={"Location": location})


def find_live_message(session_id: str, message_id: str) -> tuple[dict[str, Any], str]:
    """The message as a snapshot shows it, and the snapshot's cursor."""
    valid_id(message_id, "message")
    messages, cursor = live_messages(redis_store.client, session_id)
    for message in messages:
        if message.id == message_id:
            return message.to_json(), cursor
    raise ApiError(404, "message_not_found", "No message with that id in this session.")


def seconds_arg(name: str, maximum: float) -> float | None:
    """A query parameter in seconds, clamped to 0..maximum; None when absent.

    Anything that is not a finite number is a 400 `invalid_<name>`.
    """
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise ApiError(400, f"invalid_{name}", f"{name} must be a number of seconds.")
    return min(max(seconds, 0.0), maximum)


def wait_until_final(session_id: str, message_id: str, cursor: str, seconds: float) -> None:
    """Hold the request on the hub (not on a Redis connection) until the message ends."""

    release = limits.acquire_stream(request, current_app.config)
    try:
        hub.wait_for_final(session_id, message_id, cursor, seconds)
    finally:
        release()


@bp.get("/api/sessions/<session_id>/messages/<message_id>")
def get_message(session_id: str, message_id: str) -> Response:
    """One message; with ?wait=, once it is finished or the wait runs out."""
    load_session(session_id)
    valid_id(message_id, "message")
    wait = seconds_arg("wait", WAIT_MAX_SECONDS)
    message, cursor = find_live_message(session_id, message_id)
    if wait and message["status"] in (models.QUEUED, models.STREAMING):
        db.session.close()  # hold no pooled SQL connection while waiting
        wait_until_final(session_id, message_id, cursor, wait)
        message, _ = find_live_message(session_id, message_id)
    return jsonify(message)


@bp.post("/api/sessions/<session_id>/messages/<message_id>/cancel")
def cancel_message(session_id: str, message_id: str) -> tuple[Response, int]:
    load_session(session_id)
    message, _ = find_live_message(session_id, message_id)
    if message["role"] != models.ASSISTANT:
        raise ApiError(409, "not_cancellable", "Only an assistant answer can be cancelled.")
    requested = jobs.request_cancel(redis_store.client, session_id, message_id)
    if requested:
        log.info("cancel requested session=%s message=%s", session_id, message_id)
    status = "cancelling" if requested else message["status"]
    return jsonify({"session_id": session_id, "message_id": message_id, "status": status}), 202


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = {"redis": "ok", "database": "ok"}
    try:
        redis_store.client.ping()
    except Exception as exc:  # any failure means not ready
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        return error_response(
            503,
            "unavailable",
            "Redis or the database does not answer.",
            {"Retry-After": "1"},
            checks=checks,
        ), 503
    return jsonify({"status": "ok", "checks": checks}), 200
