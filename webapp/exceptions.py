"""Every exception relay defines, in one flat tree; the only module every layer may import.

It imports nothing of relay's and no third-party package: gunicorn's arbiter
loads the settings, which raise SettingError, before any worker forks.

    Exception
     ├── ApiError          an error answer: HTTP status, API.md code, a sentence for
     │    │                people (http/errors.py turns it into the JSON body)
     │    ├── Unauthorized 401: no token, or one that does not verify (http/auth.py)
     │    └── Forbidden    403: a session-scoped token creating or listing sessions
     ├── InvalidCursor     a cursor that is not a Redis stream entry id (storage/events.py);
     │   (ValueError)      the views answer it with 400 invalid_cursor
     ├── ModelError        the model could not produce (the rest of) an answer
     │                     (write/llm.py); `code` is upstream_error or upstream_timeout
     ├── Reset             a reader's cursor is older than the retained stream;
     │                     `floor` is the oldest cursor that is still whole
     ├── TimedOut          a tool, or a wait on the worker's asyncio thread, outlived
     │                     its timeout (write/tools/); its own TimeoutError would not
     │                     say whose timeout it was
     ├── Fenced            a write of a generation was refused: a newer attempt owns
     │                     the answer (or its session is gone), so this attempt writes
     │                     nothing more (write/); raised where the refusal is seen,
     │                     caught by the generation
     ├── HubClosed         the web process is shutting down: end the stream, the
     │    │                client resumes elsewhere
     │    └── SessionDeleted  the session was deleted: its readers end the same way
     └── IllegalMove       a move that a state table does not allow (a generation,
         (RuntimeError)    a channel's refresh, a parked poll's life): a bug in
                           relay, never caught

    ValueError
     ├── SettingError      a malformed setting: its text is the one line the process
     │                     stops with (settings/config.py)
     └── Invalid           a setting parser's refusal, with a detail for that line

    BrokenPipeError        what gunicorn closes a connection on, quietly (serving/handover.py)
     ├── SlowClient        an SSE client stopped taking our writes
     ├── HandedOver        raised out of an SSE body whose connection the hub holds now
     └── CutShort          raised out of a chat stream that must end without its
                           end of body, so that the AI SDK resumes (http/chat_stream.py)

    BaseException          so that no `except Exception` swallows them
     └── Interrupt         raised into a running generation by its worker
          ├── Cancelled    the client asked to stop: end with finish_reason "cancelled"
          └── HandedBack   the worker is shutting down and returns the job to the
                           queue: write nothing more, the next attempt takes over

Redis, SQL and HTTP client errors are the libraries' own; http/errors.py maps the
ones a request can meet to 503.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer: HTTP status, API.md code, a sentence for people."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


REALM = "relay"  # the Bearer challenge's realm (RFC 6750)


class Unauthorized(ApiError):
    """401: no token, or one that does not verify; says so in WWW-Authenticate."""

    def __init__(self, message: str, *, token_sent: bool = True) -> None:
        # RFC 6750 section 3.1: `error="invalid_token"` only when a token came.
        challenge = f'Bearer realm="{REALM}"'
        if token_sent:
            challenge += ', error="invalid_token"'
        super().__init__(401, "unauthorized", message, {"WWW-Authenticate": challenge})


class Forbidden(ApiError):
    """403: a valid token that may not do this (a `sid` token creating or listing sessions)."""

    def __init__(self, message: str) -> None:
        super().__init__(403, "forbidden", message)


class InvalidCursor(ValueError):
    """A cursor that is not a Redis stream entry id."""


class ModelError(Exception):
    """The model could not produce (the rest of) an answer.

    `retryable` says whether trying again before any text was sent may help;
    `retry_after_seconds` is what the server asked for (429 and 503 answers).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_seconds = retry_after_seconds


class Reset(Exception):
    """The cursor is older than the retained stream; `floor` is whole again."""

    def __init__(self, floor: str) -> None:
        super().__init__(floor)
        self.floor = floor


class TimedOut(Exception):
    """A tool, or a wait on the worker's asyncio thread, outlived the timeout it was given."""


class Fenced(Exception):
    """A write of this attempt was refused: a newer attempt owns the answer, or its session is gone."""


class HubClosed(Exception):
    """The web process is shutting down: end the stream, the client resumes elsewhere."""


class SessionDeleted(HubClosed):
    """The session was deleted: every reader of it ends, as on a shutdown (API.md, DELETE)."""


class IllegalMove(RuntimeError):
    """A move that a state table does not allow: a bug in relay, raised where it happens."""

    def __init__(self, what: str, current: object, to: object) -> None:
        super().__init__(f"{what}: no move from {current} to {to}")
        self.current = current
        self.to = to


class SlowClient(BrokenPipeError):
    """A client stopped taking our writes; gunicorn closes its socket quietly (EPIPE)."""


class HandedOver(BrokenPipeError):
    """Raised out of an SSE body whose connection the hub now holds.

    An EPIPE to gunicorn: it closes its descriptor (ours is a duplicate) and
    logs nothing.
    """


class CutShort(BrokenPipeError):
    """Raised out of a chat stream to close its connection without the end of body.

    An EPIPE to gunicorn: it closes the socket and writes nothing more, so the
    client sees the body cut, not finished (chat_stream.py says why).
    """


class Interrupt(BaseException):
    """Raised into a running generation by its worker."""


class Cancelled(Interrupt):
    """The client asked to stop this answer."""


class HandedBack(Interrupt):
    """The worker returns this job to the queue; another attempt will run it."""


class SettingError(ValueError):
    """A malformed setting. Its text is the one line the process stops with."""


class Invalid(ValueError):
    """A parser's refusal with a detail worth adding to "expected ..."."""
