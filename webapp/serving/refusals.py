"""Requests gunicorn refuses before the app sees them, answered in API.md's JSON.

A request gunicorn cannot parse (a malformed request line or header: 400; a
request line over limit_request_line: 414; headers over
limit_request_fields or limit_request_field_size: 431) is answered by the
worker's `handle_error` before the app sees it, through
`gunicorn.util.write_error`, which writes an HTML page that quotes the
client's bytes back: gunicorn has no setting or hook for that answer.
`handle_error` looks the function up on the module at each call, so
`install()` replacing it (gunicorn.conf.py, in the arbiter, before it
forks the workers) makes every such answer API.md's JSON, with a fixed
sentence.

This is a reliance on gunicorn's internals: handover.py, item 7, pinned by
tests/test_gunicorn_edges.py. gunicorn's arbiter imports this module, so it
imports gunicorn and the standard library only.
"""

from __future__ import annotations

import json
from typing import Any

import gunicorn.util

# status -> (API.md code, message); any other status is `http_error` with gunicorn's reason.
REFUSALS = {
    400: ("bad_request", "The request is malformed."),
    403: ("forbidden", "The request is not allowed."),
    414: ("uri_too_long", "The request line is too long."),
    417: ("expectation_failed", "The Expect header cannot be met."),
    431: ("request_headers_too_large", "The request headers are too many or too large."),
    500: ("internal_error", "Something went wrong on our side."),
    501: ("not_implemented", "That transfer coding is not supported."),
}


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, with API.md's JSON; `mesg` (the client's bytes) unused."""
    code, message = REFUSALS.get(status_int, ("http_error", reason))
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    gunicorn.util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    """Answer every request gunicorn refuses with `write_json_error` (handover.py, item 7)."""
    gunicorn.util.write_error = write_json_error
