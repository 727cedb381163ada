"""Every error leaves as API.md's JSON: `{"error": {"code", "message"}}`.

ApiError              raised by views with a status and a code (exceptions.py)
werkzeug HTTPException  mapped by status (404, 405, 413, ...)
redis / SQL outages   503 unavailable, retryable, logged on one line
a missing schema      503 unavailable naming the command that fixes it (readiness.py)
anything else         500 internal_error, logged with its traceback
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, current_app, jsonify
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from webapp.exceptions import ApiError
from webapp.ops import readiness

log = logging.getLogger(__name__)

# Codes for errors werkzeug raises before our views run.
_HTTP_CODES = {
    400: ("bad_request", "The request is malformed."),
    404: ("not_found", "No such resource."),
    405: ("method_not_allowed", "That method is not allowed here."),
    413: ("prompt_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "The body must be JSON."),
    429: ("rate_limited", "Too many requests."),
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    response = jsonify({"error": {"code": code, "message": message, **extra}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def register(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    for unavailable in (redis.RedisError, OperationalError, InterfaceError, PoolTimeout):
        app.register_error_handler(unavailable, _unavailable)
    app.register_error_handler(ProgrammingError, _programming_error)
    app.register_error_handler(Exception, _internal_error)


def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code, message = _HTTP_CODES.get(status, ("http_error", exc.description or ""))
    headers = {}
    if status == 405 and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return error_response(status, code, message, headers)


def _unavailable(exc: Exception) -> Response:
    if readiness.is_schema_error(exc):
        return _schema_missing(exc)
    log.warning("backing service unavailable: %s", readiness.one_line(exc))
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        message = "Redis (REDIS_URL) does not answer; retry shortly."
    elif isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        message = "The database (DATABASE_URL) does not answer; retry shortly."
    else:
        message = "A backing service is unavailable; retry shortly."
    return error_response(503, "unavailable", message, {"Retry-After": "1"})


def _programming_error(exc: ProgrammingError) -> Response:
    # PostgreSQL reports a missing table as a programming error; any other is a bug of ours.
    if readiness.is_schema_error(exc):
        return _schema_missing(exc)
    return _internal_error(exc)


def _schema_missing(exc: Exception) -> Response:
    problem = readiness.schema_missing(current_app, readiness.one_line(exc))
    log.error("%s", problem.detail)
    return error_response(
        503, "unavailable", problem.message, {"Retry-After": str(problem.retry_after_seconds)}
    )


def _internal_error(exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal_error", "Something went wrong on our side.")
