"""Request parameters, read and checked in one place for both blueprints (api.py, stream.py).

Each function reads one thing from the current request and returns a plain
value, or raises `ApiError` with API.md's code: views never look at raw
input themselves, and nothing unchecked names a Redis key or an SQL row.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import g, request

from webapp.exceptions import ApiError, InvalidCursor
from webapp.settings.config import WAIT_MAX_SECONDS
from webapp.storage.events import ZERO_ID, parse_cursor

ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{8,64}\Z")
IDEMPOTENCY_KEY_PATTERN = re.compile(r"\A[\x21-\x7e]{1,255}\Z")


def valid_id(raw: str, kind: str) -> str:
    """Check an id's shape before it names any key or row."""
    if not ID_PATTERN.match(raw):
        raise ApiError(400, f"invalid_{kind}_id", f"That is not a valid {kind} id.")
    return raw


def cursor(raw: str | None) -> str:
    """A stream entry id from the client; absent or empty means the start of the stream."""
    if raw is None or raw == "":
        return ZERO_ID
    try:
        parse_cursor(raw)
    except InvalidCursor:
        raise ApiError(
            400, "invalid_cursor", "A cursor is a stream entry id like 1700000000000-0."
        ) from None
    return raw


def sse_cursor() -> str:
    """Last-Event-ID header, else ?last_event_id=, else the retained stream's start."""
    header = request.headers.get("Last-Event-ID")
    if header is not None and header.strip():
        return cursor(header.strip())
    return cursor(request.args.get("last_event_id"))


def sse_resumed() -> bool:
    """Whether an SSE request carries a cursor (a reconnect, counted in metrics)."""
    return bool(
        request.headers.get("Last-Event-ID", "").strip() or request.args.get("last_event_id")
    )


def seconds(name: str, maximum: float) -> float | None:
    """A query parameter in seconds, clamped to 0..maximum; None when absent.

    Anything that is not a finite number is a 400 `invalid_<name>`.
    """
    return seconds_of(name, request.args.get(name), maximum)


def seconds_of(name: str, raw: str | None, maximum: float) -> float | None:
    """`seconds` for a raw value of the parameter `name`."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ApiError(400, f"invalid_{name}", f"{name} must be a number of seconds.")
    return min(max(value, 0.0), maximum)


def wait_seconds() -> float | None:
    """A message's ?wait=, clamped to 0..WAIT_MAX_SECONDS; None when absent."""
    return seconds("wait", WAIT_MAX_SECONDS)


def poll_timeout_of(raw: str | None, default_seconds: float) -> float:
    """A long-poll's ?timeout= (None when absent), clamped to 0..WAIT_MAX_SECONDS.

    Absent: POLL_TIMEOUT_SECONDS (`default_seconds`), within the same bounds.
    """
    given = seconds_of("timeout", raw, WAIT_MAX_SECONDS)
    return min(default_seconds, WAIT_MAX_SECONDS) if given is None else given


_NO_BODY = object()


def json_body() -> Any:
    """The request's JSON body, parsed once; 400 invalid_json when it is not JSON.

    Parsed here rather than by `request.get_json()`: Python's parser raises
    RecursionError, not ValueError, on a body nested deeper than it allows
    (`[[[[...` 5,000 deep), which werkzeug would let through as a 500.
    """
    body = g.get("relay_json_body", _NO_BODY)
    if body is _NO_BODY:
        try:
            body = json.loads(request.get_data(cache=True))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
        g.relay_json_body = body
    return body


def refuse_malformed_json() -> None:
    """Every endpoint refuses a malformed JSON body alike, those that read none too.

    Registered as a before-request hook of the app (api.py).
    """
    if request.is_json and request.content_length != 0 and request.get_data(cache=True):
        json_body()


def require_json(what: str) -> Any:
    """The JSON body of a POST; 415 when it is not sent as JSON (a cross-site form)."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", f"Send the {what} as application/json.")
    return json_body()


def prompt(max_chars: int) -> str:
    """The prompt of a POST body, validated as API.md says."""
    body = require_json("prompt")
    if not isinstance(body, dict) or not isinstance(body.get("content"), str):
        raise ApiError(400, "invalid_json", 'The body must be an object with a "content" string.')
    return checked_prompt(body["content"], max_chars)


def checked_prompt(content: str, max_chars: int) -> str:
    """A prompt from any body (a prompt post's, or POST /api/chat's), checked as API.md says."""
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:  # JSON's \ud800 escapes can smuggle in lone surrogates
        raise ApiError(400, "invalid_json", "The prompt is not valid Unicode text.") from None
    if not content.strip():
        raise ApiError(400, "empty_prompt", "The prompt is empty.")
    if len(content) > max_chars:
        raise ApiError(413, "prompt_too_large", f"The prompt is over {max_chars} characters.")
    if "\x00" in content:
        raise ApiError(400, "invalid_prompt", "The prompt contains a NUL character.")
    return content


def idempotency_key() -> str | None:
    """The Idempotency-Key header (1 to 255 visible ASCII characters), if sent."""
    raw = request.headers.get("Idempotency-Key")
    if raw is not None and not IDEMPOTENCY_KEY_PATTERN.match(raw):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
        )
    return raw
