"""Every exception the client raises, in one flat tree.

    RelayError                 anything this package raises on purpose
     ├── ApiError              an error answer (API.md, Errors): `status`, `code`,
     │    │                    `message`, `retry_after` (seconds or None), `body`
     │    ├── InvalidRequest   400: malformed input (`invalid_cursor`, `empty_prompt`...)
     │    ├── Unauthorized     401: the token was refused, also after one refresh;
     │    │                    nothing retries past it
     │    ├── Forbidden        403: a session-scoped token used to create or list
     │    ├── NotFound         404: no such session, message or tool call (or not yours)
     │    ├── Conflict         409: `generation_active` (its `message_id` names the
     │    │                    running answer), `not_regenerable`, `tool_call_settled`...
     │    ├── PromptTooLarge   413
     │    ├── UnsupportedMediaType  415
     │    ├── IdempotencyKeyReused  422: one Idempotency-Key, two prompts
     │    ├── RateLimited      429: `rate_limited`, `too_many_streams`
     │    ├── Unavailable      503: still so after the retries
     │    └── ServerError      any other 5xx, or a status API.md does not list
     ├── ConnectionLost        no answer came, after the retries (`__cause__` is httpx's)
     ├── ProtocolError         the server broke the wire contract (not SSE, bad JSON)
     ├── IncompleteAnswer      `end`'s counts disagree with the answer, even after
     │                         reloading it from the server
     └── AnswerFailed          the answer ended with an `error` event (`code`, `message`);
                               raised by `Answer.raise_for_status()` only

An error answer that is not relay's JSON (a gateway's HTML page) still maps
by its status, with `code` None and the start of its text as `message`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from .retry import retry_after_seconds


class RelayError(Exception):
    """Base of every exception this package raises."""


class ApiError(RelayError):
    """An error answer: HTTP status, API.md's code and message."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code or 'error'}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.body = body

    @property
    def message_id(self) -> str | None:
        """The message an error names (a 409 `generation_active`: the running answer)."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        found = error.get("message_id") if isinstance(error, dict) else None
        return found if isinstance(found, str) else None


class InvalidRequest(ApiError):
    """400: malformed input."""


class Unauthorized(ApiError):
    """401: the token was refused, also after one refresh."""


class Forbidden(ApiError):
    """403: a token scoped to one session used to create or list sessions."""


class NotFound(ApiError):
    """404: no such session, message or tool call, or not the caller's."""


class Conflict(ApiError):
    """409: a generation runs, or the request contradicts the session's state."""


class PromptTooLarge(ApiError):
    """413: the prompt is over the server's limit."""


class UnsupportedMediaType(ApiError):
    """415: the body was not JSON."""


class IdempotencyKeyReused(ApiError):
    """422: an Idempotency-Key sent again with another prompt."""


class RateLimited(ApiError):
    """429: too many prompts, sessions or streams; `retry_after` says when to try again."""


class Unavailable(ApiError):
    """503: the server cannot answer now, and did not after the retries."""


class ServerError(ApiError):
    """Any other error status."""


class ConnectionLost(RelayError):
    """No answer came, after the retries; `__cause__` is the network error."""


class ProtocolError(RelayError):
    """The server broke the wire contract."""


class IncompleteAnswer(RelayError):
    """`end`'s counts disagree with the answer, even after reloading it."""


class AnswerFailed(RelayError):
    """The answer ended with an `error` event."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PromptTooLarge,
    415: UnsupportedMediaType,
    422: IdempotencyKeyReused,
    429: RateLimited,
    503: Unavailable,
}


def error_from(response: httpx.Response) -> ApiError:
    """The exception for an error answer, relay's JSON or anything else."""
    try:
        body = response.json()
        error = body["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        body, code = None, None
        message = response.text[:200].strip() or response.reason_phrase
    kind = BY_STATUS.get(response.status_code, ServerError)
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    return kind(response.status_code, code, message, retry_after=retry_after, body=body)


def json_body(response: httpx.Response) -> Any:
    """The JSON of a success answer; ProtocolError when it is not JSON."""
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{response.request.url.path}: the answer is not JSON") from exc
